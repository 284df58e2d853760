"""Fixtures for the J-LIS sandbox: one CA hierarchy per session, a fresh state dir per test."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tsunagu.sandbox.jlis import JlisSandbox, create_app
from tsunagu.sandbox.jlis.pki import create_hierarchy, new_rsa_key, save_hierarchy
from tsunagu.sandbox.jlis.schemas import CardIssued

# 2026-04-01 10:00 JST: certificates, CRLs and OCSP answers are all stamped with this instant
NOW = datetime(2026, 4, 1, 1, 0, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hierarchy's key and certificate files, generated once per session (≈ 0.3 s)."""
    directory = tmp_path_factory.mktemp("jlis-pki")
    save_hierarchy(create_hierarchy(NOW), directory)
    return directory


class KeyPool:
    """Card keys from a pool made once per session: RSA-2048 generation (≈ 50–100 ms) dominated
    the suite. Consecutive keys are distinct, so a test using fewer than ``size`` keys never sees
    one twice."""

    def __init__(self, size: int = 24) -> None:
        self._keys = [new_rsa_key() for _ in range(size)]
        self._next = 0

    def __call__(self) -> rsa.RSAPrivateKey:
        self._next = (self._next + 1) % len(self._keys)
        return self._keys[self._next]


@pytest.fixture(scope="session")
def key_pool() -> KeyPool:
    return KeyPool()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path, pki_dir: Path) -> Path:
    """A state directory that already holds the session's hierarchy (loaded, not regenerated)."""
    directory = tmp_path / "jlis"
    shutil.copytree(pki_dir, directory / "pki")
    return directory


@pytest.fixture
def jlis(state_dir: Path, clock: FakeClock, key_pool: KeyPool) -> JlisSandbox:
    return JlisSandbox(state_dir, clock, card_key_factory=key_pool)


@pytest.fixture
async def client(jlis: JlisSandbox) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API over ASGI, on the same sandbox object as ``jlis`` (no background push task)."""
    app = create_app(None, sandbox=jlis, push_interval_s=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://jlis") as http:
        yield http


CardFactory = Callable[..., CardIssued]


@pytest.fixture
def issue_card(jlis: JlisSandbox) -> CardFactory:
    """Builder: a card for a default person, any field overridable."""

    def issue(**overrides: object) -> CardIssued:
        person: dict[str, object] = {
            "name": "山田 太郎",
            "address": "東京都千代田区千代田1番1号",
            "birth_date": date(1989, 1, 8),
            "sex": "1",
        }
        person.update(overrides)
        return jlis.create_card(**person)  # type: ignore[arg-type]

    return issue
