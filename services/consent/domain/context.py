"""What the consent domain needs from outside, built once per app (``app.py``)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tsunagu.clients.ca import CaClient
from tsunagu.consent.domain.effective_cache import EffectiveCache
from tsunagu.consent.domain.receipts import Receipts
from tsunagu.db import Database
from tsunagu.events import Outbox


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return secrets.token_urlsafe(18)


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds, ``Z``: the one way consent writes a time into a signed document."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ConsentPolicy:
    # A decision's signing time may be at most this old (and this far ahead, clock skew).
    max_signature_age_s: int = 300
    skew_s: int = 30
    # A request waits this long for the citizen's answer by default.
    request_ttl_s: int = 30 * 86_400
    max_validity_days: int = 5 * 365


@dataclass
class ConsentContext:
    db: Database
    outbox: Outbox
    ca: CaClient
    receipts: Receipts
    policy: ConsentPolicy = field(default_factory=ConsentPolicy)
    clock: Callable[[], datetime] = utc_now
    ids: Callable[[], str] = new_id
    # Each person's decision items in memory while change notifications are heard (app.py).
    effective: EffectiveCache = field(default_factory=EffectiveCache)
