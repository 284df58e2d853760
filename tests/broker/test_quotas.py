"""Each party's own request budget: a burst, then the refill rate, per client id."""

from __future__ import annotations

import pytest

from tsunagu.broker.domain.errors import QuotaExceeded
from tsunagu.broker.domain.quotas import ClientQuotas


def test_a_client_spends_its_own_budget_only():
    now = {"t": 100.0}
    quotas = ClientQuotas(rate_per_s=2.0, burst=3.0, clock=lambda: now["t"])
    for _ in range(3):
        quotas.spend("hospital-a")
    with pytest.raises(QuotaExceeded) as refused:
        quotas.spend("hospital-a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    quotas.spend("hospital-b")  # another client's budget is untouched
    now["t"] += 0.5  # refills one call at 2/s
    quotas.spend("hospital-a")
    with pytest.raises(QuotaExceeded):
        quotas.spend("hospital-a")
