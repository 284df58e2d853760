"""The port to the HSM. ``tsunagu.signer.hsm`` implements it (PKCS#11; software for unit tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from tsunagu.signer.domain.algorithms import Algorithm
from tsunagu.signer.domain.keys import PublicKey


class Payload(NamedTuple):
    """What to sign: the data itself, or (``prehashed``) its SHA-256 digest."""

    value: bytes
    prehashed: bool


class KeyBackend(Protocol):
    async def generate(self, label: str, algorithm: Algorithm, key_size: int | None) -> PublicKey:
        """Create a key pair inside the HSM under ``label``; return its public key."""

    async def sign(self, label: str, algorithm: Algorithm, payloads: Sequence[Payload]) -> list[bytes]:
        """Sign every payload with the key ``label``; ECDSA signatures come back raw (r‖s)."""

    async def destroy(self, label: str) -> None:
        """Delete both halves of the key pair from the HSM."""

    async def healthy(self) -> bool:
        """Whether the HSM answers right now."""
