"""Service identities: one EC P-256 key pair per service, plus the trust file of public keys."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

ALGORITHM = "ES256"
TRUST_FILE_NAME = "trust.json"
# Names become file names: keep them to a safe alphabet so "../x" can never escape the directory.
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _check_p256_private(key: object) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("service keys must be EC P-256 private keys")
    return key


def _check_p256_public(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("service keys must be EC P-256 public keys")
    return key


def load_private_key(path: Path | str) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM (PKCS#8) service private key; reject anything but EC P-256."""
    data = Path(path).read_bytes()
    return _check_p256_private(serialization.load_pem_private_key(data, password=None))


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of a public key: its ``kid``."""
    return ECKey.import_key(_check_p256_public(public_key)).thumbprint()


def public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of a service key with ``kid`` (default: the thumbprint), ``alg`` and ``use``."""
    jwk = ECKey.import_key(_check_p256_public(public_key)).as_dict(private=False)
    return {
        "kty": jwk["kty"],
        "crv": jwk["crv"],
        "x": jwk["x"],
        "y": jwk["y"],
        "kid": kid or key_id(public_key),
        "alg": ALGORITHM,
        "use": "sig",
    }


@dataclass(frozen=True)
class ProvisionedCredentials:
    """Where :func:`provision_service_credentials` put the key files and the trust file."""

    directory: Path
    trust_file: Path
    key_files: Mapping[str, Path]


def _write_new_private_key(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL + mode at creation: the key is never readable by others, not even for an instant,
    # and a concurrent provisioning run cannot clobber a key already handed out.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)  # public keys only: every service may read it
    os.replace(tmp, path)  # readers never see a half-written trust file


def provision_service_credentials(directory: Path, names: Iterable[str]) -> ProvisionedCredentials:
    """Create ``<name>.key.pem`` (0600, PKCS#8) for each name and write ``trust.json``.

    Idempotent: existing keys are kept (their mode is tightened to 0600). The trust file is
    rewritten to list exactly ``names``, each with the public JWK of its current key.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_files: dict[str, Path] = {}
    services: dict[str, Any] = {}
    for name in dict.fromkeys(names):  # de-duplicate, keep order
        if not _NAME_RE.match(name):
            raise ValueError(f"invalid service name {name!r}")
        path = directory / f"{name}.key.pem"
        try:
            _write_new_private_key(path)
        except FileExistsError:
            os.chmod(path, 0o600)
        key = load_private_key(path)
        key_files[name] = path
        services[name] = {"keys": [public_jwk(key.public_key())]}
    trust_file = directory / TRUST_FILE_NAME
    _write_atomically(trust_file, json.dumps({"services": services}, indent=2, sort_keys=True) + "\n")
    return ProvisionedCredentials(directory=directory, trust_file=trust_file, key_files=key_files)
