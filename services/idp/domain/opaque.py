"""Opaque secrets the idp hands out (codes, refresh tokens, client secrets, registration and
initial access tokens, session cookies, login bindings, request references) and what it keeps
of them: only the hex SHA-256."""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    """32 random bytes, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def token_hash(value: str) -> str:
    """What the database keeps of a secret (hex SHA-256)."""
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
