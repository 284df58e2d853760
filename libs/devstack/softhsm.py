"""SoftHSM2 as the dev/test stand-in for the production HSM.

:func:`init_token` creates a self-contained SoftHSM2 configuration (its own token directory and
``softhsm2.conf``) and initialises a token in it with ``softhsm2-util``. The process that will use
the token must have ``SOFTHSM2_CONF`` (see :meth:`SoftHsmToken.env`) in ``os.environ`` before the
PKCS#11 module is first loaded: SoftHSM reads it once, in ``C_Initialize``.

PINs are passed to ``softhsm2-util`` on its command line (the tool has no other way) but are never
printed, logged or included in an error message or ``repr``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MODULE_ENV = "TSUNAGU_PKCS11_MODULE"
CANDIDATE_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
INSTALL_HINT = "install SoftHSM2 (Debian/Ubuntu: `apt-get install softhsm2`)"


class SoftHsmNotInstalled(RuntimeError):
    """The SoftHSM2 module or ``softhsm2-util`` cannot be found."""


class SoftHsmError(RuntimeError):
    """``softhsm2-util`` failed."""


def find_softhsm_module() -> str:
    """Path of ``libsofthsm2.so``: ``$TSUNAGU_PKCS11_MODULE`` if set, else the usual install paths.

    Raises :class:`SoftHsmNotInstalled` (naming ``apt-get install softhsm2``) when none exists.
    """
    configured = os.environ.get(MODULE_ENV)
    if configured:
        if Path(configured).is_file():
            return configured
        raise SoftHsmNotInstalled(f"{MODULE_ENV}={configured!r} does not exist; {INSTALL_HINT} or fix it")
    for candidate in CANDIDATE_MODULES:
        if Path(candidate).is_file():
            return candidate
    raise SoftHsmNotInstalled(
        f"SoftHSM2 PKCS#11 module not found (looked in {', '.join(CANDIDATE_MODULES)}); "
        f"{INSTALL_HINT} or set {MODULE_ENV}"
    )


def _softhsm2_util() -> str:
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise SoftHsmNotInstalled(f"`softhsm2-util` is not on PATH; {INSTALL_HINT}")
    return tool


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised SoftHSM2 token and how to reach it (the PINs are left out of ``repr``)."""

    conf_path: Path
    module_path: str
    label: str
    user_pin: str = field(repr=False)
    so_pin: str = field(repr=False)

    def env(self) -> dict[str, str]:
        """Environment variables a process needs to see this token (``SOFTHSM2_CONF``)."""
        return {"SOFTHSM2_CONF": str(self.conf_path)}


def _run_util(args: list[str], conf_path: Path, secrets: tuple[str, ...]) -> str:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf_path)}
    proc = subprocess.run(
        [_softhsm2_util(), *args], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        output = f"{proc.stdout}\n{proc.stderr}".strip()
        for secret in secrets:
            if secret:
                output = output.replace(secret, "***")
        raise SoftHsmError(f"softhsm2-util {args[0]} failed (exit {proc.returncode}): {output}")
    return proc.stdout


def _token_labels(conf_path: Path, module_path: str) -> list[str]:
    out = _run_util(["--show-slots", "--module", module_path], conf_path, ())
    labels: list[str] = []
    for line in out.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and key.strip() == "Label" and value.strip():
            labels.append(value.strip())
    return labels


def write_config(directory: Path) -> Path:
    """Create ``directory/tokens`` and ``directory/softhsm2.conf`` (file object store, ERROR logging)."""
    directory = directory.resolve()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf_path = directory / "softhsm2.conf"
    conf_path.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
        encoding="utf-8",
    )
    return conf_path


def init_token(directory: Path, label: str, user_pin: str, so_pin: str) -> SoftHsmToken:
    """Initialise a SoftHSM2 token labelled ``label`` in its own config under ``directory``.

    Idempotent: when ``directory`` already holds a token with that label it is reused as is (its
    PINs are assumed to be the ones given). Several labels may share one directory.
    """
    module_path = find_softhsm_module()
    conf_path = write_config(directory)
    token = SoftHsmToken(
        conf_path=conf_path, module_path=module_path, label=label, user_pin=user_pin, so_pin=so_pin
    )
    if label in _token_labels(conf_path, module_path):
        return token
    _run_util(
        [
            "--init-token",
            "--free",
            "--module",
            module_path,
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            user_pin,
        ],
        conf_path,
        (user_pin, so_pin),
    )
    return token


__all__ = [
    "CANDIDATE_MODULES",
    "MODULE_ENV",
    "SoftHsmError",
    "SoftHsmNotInstalled",
    "SoftHsmToken",
    "find_softhsm_module",
    "init_token",
    "write_config",
]
