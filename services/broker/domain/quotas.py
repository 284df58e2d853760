"""Each party's own request budget (per client id), on top of the per-address limit."""

from __future__ import annotations

import time
from collections.abc import Callable

from tsunagu.broker.domain.errors import QuotaExceeded
from tsunagu.obs.ratelimit import TokenBuckets


class ClientQuotas:
    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets = TokenBuckets(rate_per_s, burst, clock)

    def spend(self, client_id: str) -> None:
        """One call of ``client_id``; :class:`QuotaExceeded` (429, ``Retry-After``) when spent."""
        wait = self.buckets.take(client_id)
        if wait > 0:
            raise QuotaExceeded(
                "this client's request budget is spent", headers={"Retry-After": str(max(1, round(wait)))}
            )
