"""Signing keys: purposes, lifecycle (next → active → retired → destroyed), ACL, public forms."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tsunagu.signer.domain.algorithms import SPECS, Algorithm
from tsunagu.signer.domain.errors import (
    AlgorithmMismatch,
    GracePeriodRunning,
    InvalidKeySpec,
    InvalidTransition,
    KeyNotActive,
    KeyNotAllowed,
)
from tsunagu.signer.store.repository import KeyRecord

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class Purpose(StrEnum):
    CA_ROOT = "ca-root"
    CA_ISSUING = "ca-issuing"
    OCSP = "ocsp"
    ID_TOKEN = "id-token"  # noqa: S105 - a purpose name, not a secret
    RECEIPT = "receipt"
    EXCHANGE = "exchange"  # the broker's signed provider requests and webhooks
    LOG = "log"


class KeyState(StrEnum):
    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    DESTROYED = "destroyed"


ALL_SERVICES = ("signer", "ca", "idp", "consent", "broker", "jlis-sync")
DEFAULT_CALLERS: dict[Purpose, tuple[str, ...]] = {
    Purpose.CA_ROOT: ("ca",),
    Purpose.CA_ISSUING: ("ca",),
    Purpose.OCSP: ("ca",),
    Purpose.ID_TOKEN: ("idp",),
    Purpose.RECEIPT: ("consent",),
    Purpose.EXCHANGE: ("broker",),
    Purpose.LOG: ALL_SERVICES,
}
PUBLISHED_STATES = (KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED)
# Purposes with one active key per algorithm (relying parties choose ES256 or RS256 ID tokens);
# every other purpose has one active key, whatever its algorithm (a CA rollover to another
# algorithm retires the previous CA key).
ACTIVE_PER_ALGORITHM = frozenset({Purpose.ID_TOKEN})
# A retired CA key no longer issues, but it must keep signing revocation information (CRLs, OCSP
# answers) for the certificates it issued until the last of them expires (RFC 5280 §5.1: a CRL is
# signed by the issuer's key). Such keys sign when named by key id — never chosen by purpose —
# until they are destroyed. Token, receipt and log keys stop signing when retired.
SIGNS_WHEN_RETIRED = frozenset({Purpose.CA_ROOT, Purpose.CA_ISSUING, Purpose.OCSP})


@dataclass(frozen=True)
class SigningKey:
    kid: str
    purpose: Purpose
    algorithm: Algorithm
    key_size: int | None
    state: KeyState
    hsm_label: str
    public_key_der: bytes
    allowed_callers: tuple[str, ...]
    created_at: datetime
    activated_at: datetime | None = None
    retired_at: datetime | None = None
    destroyed_at: datetime | None = None

    @classmethod
    def from_record(cls, record: KeyRecord) -> SigningKey:
        return cls(
            kid=record.kid,
            purpose=Purpose(record.purpose),
            algorithm=Algorithm(record.algorithm),
            key_size=record.key_size,
            state=KeyState(record.state),
            hsm_label=record.hsm_label,
            public_key_der=record.public_key_der,
            allowed_callers=record.allowed_callers,
            created_at=record.created_at,
            activated_at=record.activated_at,
            retired_at=record.retired_at,
            destroyed_at=record.destroyed_at,
        )

    def to_record(self) -> KeyRecord:
        return KeyRecord(
            kid=self.kid,
            purpose=self.purpose.value,
            algorithm=self.algorithm.value,
            key_size=self.key_size,
            state=self.state.value,
            hsm_label=self.hsm_label,
            public_key_der=self.public_key_der,
            allowed_callers=self.allowed_callers,
            created_at=self.created_at,
            activated_at=self.activated_at,
            retired_at=self.retired_at,
            destroyed_at=self.destroyed_at,
        )

    def public_key(self) -> PublicKey:
        key = serialization.load_der_public_key(self.public_key_der)
        assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey)
        return key

    def public_key_pem(self) -> str:
        return (
            self.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, str]:
        return {
            **public_jwk_members(self.public_key()),
            "kid": self.kid,
            "alg": self.algorithm.value,
            "use": "sig",
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def public_jwk_members(key: PublicKey) -> dict[str, str]:
    """The required members of the JWK of ``key`` (RFC 7517/7518/8037), nothing else."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": _b64(point.x.to_bytes(32, "big")),
            "y": _b64(point.y.to_bytes(32, "big")),
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        return {"e": _b64(_unsigned(rsa_numbers.e)), "kty": "RSA", "n": _b64(_unsigned(rsa_numbers.n))}
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}


def key_id_for(key: PublicKey) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members, sorted, no whitespace."""
    canonical = json.dumps(public_jwk_members(key), sort_keys=True, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def check_key_spec(purpose: Purpose, algorithm: Algorithm, key_size: int | None) -> int | None:
    """The key size to use for ``algorithm`` (RSA: 2048 or 3072; none for EC and Ed25519)."""
    sizes = SPECS[algorithm].key_sizes
    if sizes:
        size = key_size or sizes[0]
        if size not in sizes:
            raise InvalidKeySpec(f"{algorithm.value} keys are {' or '.join(map(str, sizes))} bits")
        return size
    if key_size is not None:
        raise InvalidKeySpec(f"{algorithm.value} keys have no selectable size")
    return None


def check_callers(callers: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(callers) - set(ALL_SERVICES))
    if unknown or not callers:
        raise InvalidKeySpec(
            f"allowed callers must be platform services (unknown: {', '.join(unknown) or 'none given'})"
        )
    return tuple(sorted(set(callers)))


def is_revocation_information(payload: bytes) -> bool:
    """A to-be-signed CRL (``TBSCertList``) or OCSP ``ResponseData``, never a ``TBSCertificate``.

    All three are a DER SEQUENCE; what tells them apart is the first element: a v3 certificate
    opens with its explicit ``[0]`` version, a CRL with its INTEGER version (or, v1, the signature
    AlgorithmIdentifier SEQUENCE), ResponseData with the responderID ``[1]``/``[2]`` (its
    default version is never encoded by our responder).
    """
    if len(payload) < 4 or payload[0] != 0x30:
        return False
    length = payload[1]
    offset = 2 + (length & 0x7F if length & 0x80 else 0)
    return offset < len(payload) and payload[offset] in (0x02, 0x30, 0xA1, 0xA2)


def ensure_can_sign(
    key: SigningKey,
    caller: str,
    algorithm: Algorithm | None,
    *,
    by_key_id: bool = False,
    payloads: Sequence[bytes | None] = (),
) -> None:
    """``payloads``: the data to be signed (None for a pre-computed digest, which cannot be read)."""
    if caller not in key.allowed_callers:
        raise KeyNotAllowed(f"{caller} may not sign with this key")
    if key.state is KeyState.ACTIVE:
        pass
    elif key.state is KeyState.RETIRED and key.purpose in SIGNS_WHEN_RETIRED and by_key_id:
        if not payloads or not all(p is not None and is_revocation_information(p) for p in payloads):
            raise KeyNotActive("a retired CA key signs only CRLs and OCSP responses (given as data)")
    else:
        raise KeyNotActive(f"the key is {key.state.value}")
    if algorithm is not None and algorithm is not key.algorithm:
        raise AlgorithmMismatch(f"the key signs {key.algorithm.value}, not {algorithm.value}")


def replaced_by(key: SigningKey, active: Sequence[SigningKey]) -> list[SigningKey]:
    """The active keys that activating ``key`` retires."""
    if key.purpose in ACTIVE_PER_ALGORITHM:
        return [k for k in active if k.algorithm is key.algorithm and k.kid != key.kid]
    return [k for k in active if k.kid != key.kid]


def preferred(active: Sequence[SigningKey], algorithm: Algorithm | None) -> SigningKey | None:
    """The key that signs for a purpose: of ``algorithm`` when named, else the first in the order
    of :class:`Algorithm` (ES256 first), so a caller naming no algorithm keeps getting the same
    algorithm when others are activated or rotated beside it. None of ``algorithm`` → the
    preferred one anyway, which :func:`ensure_can_sign` then refuses as an algorithm mismatch."""
    order = list(Algorithm)
    candidates = [k for k in active if k.algorithm is algorithm] or list(active)
    return min(candidates, key=lambda k: order.index(k.algorithm), default=None)


def activated(key: SigningKey, now: datetime) -> SigningKey:
    if key.state is not KeyState.NEXT:
        raise InvalidTransition(f"only a next key can be activated; this one is {key.state.value}")
    return replace(key, state=KeyState.ACTIVE, activated_at=now)


def retired(key: SigningKey, now: datetime) -> SigningKey:
    if key.state is not KeyState.ACTIVE:
        raise InvalidTransition(f"only an active key can be retired; this one is {key.state.value}")
    return replace(key, state=KeyState.RETIRED, retired_at=now)


def destroyed(key: SigningKey, now: datetime, grace: timedelta) -> SigningKey:
    if key.state is not KeyState.RETIRED:
        raise InvalidTransition(f"only a retired key can be destroyed; this one is {key.state.value}")
    assert key.retired_at is not None
    if now < key.retired_at + grace:
        raise GracePeriodRunning(f"the grace period ends at {(key.retired_at + grace).isoformat()}")
    return replace(key, state=KeyState.DESTROYED, destroyed_at=now)
