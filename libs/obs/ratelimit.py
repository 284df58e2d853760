"""Per-client request rate limit (token bucket), answered with 429 problem+json and Retry-After.

A first line of defence in each process (a flood from one address cannot starve the others); a
gateway or ingress in front enforces the cluster-wide limits. Health, readiness and metrics routes
are never limited, so probes keep working under load.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_CLIENTS = 10_000


class TokenBuckets:
    """One token bucket per client address."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, last refill)

    def take(self, client: str) -> float:
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


class RateLimitMiddleware:
    """The service-wide budget per client address, and tighter budgets for sensitive path
    prefixes (``strict``: prefix → (rate per s, burst); a request there spends from both)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rate_per_s: float,
        burst: float,
        strict: Mapping[str, tuple[float, float]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.rate = rate_per_s
        self.clock = clock
        self._all = TokenBuckets(rate_per_s, burst, clock)
        self._strict = [
            (prefix, TokenBuckets(rate, strict_burst, clock))
            for prefix, (rate, strict_burst) in sorted((strict or {}).items(), key=lambda i: -len(i[0]))
            if rate > 0
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in EXEMPT:
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self._all.take(client) if self.rate > 0 else 0.0
        if wait == 0:
            for prefix, buckets in self._strict:
                if path.startswith(prefix):
                    wait = buckets.take(client)
                    break
        if wait > 0:
            await self._refuse(send, wait)
            return
        await self.app(scope, receive, send)

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
