"""Pairwise subject identifiers (OIDC Core §8.1).

``sub`` = base64url(HMAC-SHA-256(secret, sector_identifier || 0x00 || user_number)): stable for
one person and one sector whatever phone or certificate they log in with (the user number
survives re-enrollment), different between sectors, and not reversible without the secret. The
user identification number itself goes out only as the ``user_number`` claim, to clients
registered with a legal basis.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


class PairwiseSubjects:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the pairwise secret must have at least 32 bytes")
        self._secret = secret

    def subject(self, sector_identifier: str, user_number: str) -> str:
        mac = hmac.new(
            self._secret, sector_identifier.encode() + b"\x00" + user_number.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
