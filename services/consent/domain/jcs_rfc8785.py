"""RFC 8785 JSON Canonicalization Scheme: the bytes a decision's signature covers.

The statement is signed over its canonical form, so any party can recompute the exact signed bytes
from the JSON alone (sorted members, no whitespace, ECMAScript number and string serialisation).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785


def canonical(value: Any) -> bytes:
    """The RFC 8785 serialisation of ``value`` (UTF-8)."""
    return rfc8785.dumps(value)


def is_canonical(payload: bytes) -> bool:
    """Whether ``payload`` is exactly the canonical form of the JSON it holds (§3.2)."""
    try:
        return canonical(json.loads(payload)) == payload
    except (ValueError, rfc8785.CanonicalizationError):
        return False


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
