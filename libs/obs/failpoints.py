"""Named crash points, for tests that kill a process at an exact step.

Inactive unless ``TSUNAGU_FAILPOINTS`` is set (``name=kill`` or ``name=raise``, comma separated).
``kill`` sends SIGKILL to this very process — no cleanup, no flush, exactly like a crash.
Production never sets the variable; the check is one dictionary lookup.
"""

from __future__ import annotations

import functools
import os
import signal


class FailpointTriggered(RuntimeError):
    pass


@functools.cache
def _armed() -> dict[str, str]:
    spec = os.environ.get("TSUNAGU_FAILPOINTS", "")
    points: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, action = item.partition("=")
        points[name] = action or "kill"
    return points


def failpoint(name: str) -> None:
    action = _armed().get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailpointTriggered(name)
