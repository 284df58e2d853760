"""The request id of the work in progress, carried across HTTP calls and events."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_request_id: ContextVar[str | None] = ContextVar("tsunagu_request_id", default=None)
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")


def current_request_id() -> str | None:
    return _request_id.get()


def accept_or_new_request_id(candidate: str | None) -> str:
    """Keep an incoming id only if it is well formed (it ends up in logs); otherwise mint one."""
    if candidate and _WELL_FORMED.match(candidate):
        return candidate
    return uuid.uuid4().hex


@contextmanager
def request_id_scope(request_id: str | None) -> Iterator[str]:
    value = accept_or_new_request_id(request_id)
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)
