"""Token endpoint, PAR, CIBA, authorization and the login transactions have their own, tighter
per-address budget on top of the service-wide one; the rest of the idp is unaffected."""

from __future__ import annotations

from typing import Any


async def test_sensitive_endpoints_have_their_own_budget(make_idp: Any) -> None:
    async with make_idp(sensitive_rate_per_s=0.5, sensitive_burst=2) as idp:
        statuses = [
            (await idp.client.post("/token", data={"grant_type": "client_credentials"})).status_code
            for _ in range(3)
        ]
        assert statuses[:2] == [401, 401] and statuses[2] == 429
        # Each sensitive prefix has its own bucket.
        lookups = [(await idp.client.get("/v1/login-transactions/whatever")).status_code for _ in range(3)]
        assert lookups[:2] == [404, 404] and lookups[2] == 429
        refused = await idp.client.get("/v1/login-transactions/whatever")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"] == "urn:tsunagu:problem:too-many-requests"
        # Discovery and keys are not in the sensitive budget.
        for _ in range(5):
            assert (await idp.client.get("/.well-known/openid-configuration")).status_code == 200
