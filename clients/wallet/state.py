"""The wallet's local state: which devices (tokens) it has, their certificates and where the platform
is. Never a private key, never a PIN — keys stay in the tokens, found again by ``CKA_ID``.

One JSON file (``wallet.json`` in the wallet home), replaced atomically: a new file is written,
flushed to disk and renamed over the old one, so a failed or interrupted command leaves the previous
state whole. Commands that change the state hold an exclusive lock on ``wallet.lock`` meanwhile.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

STATE_FILE = "wallet.json"
LOCK_FILE = "wallet.lock"


class KeyRef(BaseModel):
    key_id: str  # CKA_ID, hex
    label: str  # CKA_LABEL
    algorithm: str  # JWS alg


class StoredCredential(BaseModel):
    kind: Literal["signing", "authentication", "app"]
    app_id: str | None = None
    key: KeyRef
    serial: str
    certificate: str  # PEM
    chain: list[str]
    issued_at: str


class StoredDevice(BaseModel):
    name: str
    token_label: str
    module_path: str
    device_id: str
    status: Literal["active", "lost"] = "active"
    enrolled_at: str
    lost_at: str | None = None
    revoked_serials: list[str] = Field(default_factory=list)
    signing: StoredCredential
    authentication: StoredCredential
    apps: dict[str, StoredCredential] = Field(default_factory=dict)

    def credentials(self) -> list[StoredCredential]:
        return [self.signing, self.authentication, *self.apps.values()]


class Services(BaseModel):
    ca: str
    idp: str
    consent: str | None = None
    jlis: str | None = None  # the J-LIS sandbox (card API) in dev


class WalletState(BaseModel):
    version: Literal[1] = 1
    user_number: str | None = None
    services: Services | None = None
    default_device: str | None = None
    devices: dict[str, StoredDevice] = Field(default_factory=dict)

    def active_devices(self) -> list[StoredDevice]:
        return [device for device in self.devices.values() if device.status == "active"]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WalletHome:
    """The wallet's directory (mode 0700): the state file and its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def state_path(self) -> Path:
        return self.path / STATE_FILE

    def load(self) -> WalletState:
        if not self.state_path.exists():
            return WalletState()
        return WalletState.model_validate_json(self.state_path.read_text(encoding="utf-8"))

    def save(self, state: WalletState) -> None:
        """Replace the state file atomically (write, fsync, rename, fsync the directory)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = state.model_dump_json(indent=2).encode("utf-8")
        handle, temporary = tempfile.mkstemp(prefix=".wallet-", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.state_path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive while a command reads, changes and saves the state."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
