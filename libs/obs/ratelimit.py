"""Per-client request rate limit (token bucket), answered with 429 problem+json and Retry-After.

A first line of defence in each process (a flood from one address cannot starve the others); a
gateway or ingress in front enforces the cluster-wide limits. Health, readiness and metrics routes
are never limited, so probes keep working under load.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_CLIENTS = 10_000


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, *, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, last refill)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.rate <= 0 or scope.get("path") in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self._take(client)
        if wait > 0:
            await self._refuse(send, wait)
            return
        await self.app(scope, receive, send)

    def _take(self, client: str) -> float:
        """Spend one token; 0 if allowed, else seconds until a token is available."""
        now = self.clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            if len(self._buckets) >= _MAX_CLIENTS and client not in self._buckets:
                self._buckets.clear()  # bounded memory; a reset only ever lets clients in
            self._buckets[client] = (tokens - 1, now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate

    @staticmethod
    async def _refuse(send: Send, wait: float) -> None:
        body = json.dumps(
            {
                "type": "urn:tsunagu:problem:too-many-requests",
                "title": "Too many requests",
                "status": 429,
                "detail": "slow down and retry after the indicated delay",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
