"""Metering on the real stack: a tenant's month — a login (idp event), pulls completed and denied,
the party's API calls, active citizens — in JSON and CSV, matching what the test did; refusals."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.broker.conftest import ALLERGY, BrokerHarness
from tests.broker.push_support import until
from tests.fixtures.services import enroll_test_citizen
from tests.idp.rp import Pkce, authorization_parameters, browser_login
from tsunagu.broker.domain.usage import month_of
from tsunagu.wallet import Enrolled

RECORD = {"allergens": ["そば"], "recorded_on": "2026-04-01"}


async def _usage(broker: BrokerHarness, tenant: str, month: str, **extra: Any) -> httpx.Response:
    return await broker.broker.get(
        "/internal/v1/usage",
        params={"tenant": tenant, "month": month, **extra.pop("params", {})},
        auth=extra.pop("auth", broker.auth("operator", "broker")),
        **extra,
    )


async def test_a_months_usage_matches_what_happened(broker: BrokerHarness, citizen: Enrolled):
    tenant = f"usage-{secrets.token_hex(3)}"
    month = month_of(datetime.now(UTC))
    records, provider, endpoint = await broker.provider("records-usage")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: RECORD}
    app = await broker.party("city-app", tenant=tenant)
    empty = (await _usage(broker, tenant, month)).json()
    assert empty["active_citizens"] == 0 and empty["logins"] == 0 and empty["api_calls"]["total"] == 0

    # one login of the citizen to the tenant's app
    async with (
        httpx.AsyncClient(base_url=broker.stack.urls["idp"], timeout=30) as browser,
        httpx.AsyncClient(base_url=broker.stack.urls["idp"], timeout=30) as wallet,
    ):
        answer = await browser_login(browser, wallet, citizen, authorization_parameters(app.rp, Pkce()))
        assert "code" in answer
    # two pulls allowed for the citizen, one refused for another citizen: three API calls
    await broker.decide(citizen, app, {ALLERGY: True})
    sub = await broker.sub_of(app, citizen)
    for _ in range(2):
        assert (await broker.pull(app, sub, [ALLERGY])).status_code == 200
    other = await enroll_test_citizen(
        broker.stack, f"他 人{secrets.token_hex(2)}", birth_date="1970-01-01", sex="1"
    )
    assert (await broker.pull(app, await broker.sub_of(app, other), [ALLERGY])).status_code == 403

    async def login_counted() -> bool:
        return bool((await _usage(broker, tenant, month)).json()["logins"] == 1)

    await until(login_counted, "the login event")
    report = (await _usage(broker, tenant, month)).json()
    assert report == {
        "tenant": tenant,
        "month": month,
        "timezone": "Asia/Tokyo",
        "active_citizens": 2,
        "logins": 1,
        "exchanges": {"total": 3, "pull": {"completed": 2, "denied": 1}},
        "api_calls": {"total": 3, "by_client": {app.client_id: 3}},
    }

    for options in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
        response = await _usage(broker, tenant, month, **options)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        table = {(r["metric"], r["client_id"]): int(r["count"]) for r in rows}
        assert {r["tenant"] for r in rows} == {tenant} and {r["month"] for r in rows} == {month}
        assert table == {
            ("active_citizens", ""): 2,
            ("logins", ""): 1,
            ("exchanges", ""): 3,
            ("exchanges.pull.completed", ""): 2,
            ("exchanges.pull.denied", ""): 1,
            ("api_calls", ""): 3,
            ("api_calls", app.client_id): 3,
        }
    # another month of the same tenant is empty
    year, number = (int(x) for x in month.split("-"))
    other_month = f"{year - 1}-{number:02d}"
    past = (await _usage(broker, tenant, other_month)).json()
    assert past["active_citizens"] == 0 and past["exchanges"] == {"total": 0} and past["logins"] == 0


async def test_usage_refusals(broker: BrokerHarness):
    for params, code in (
        ({"month": "2026-13"}, "invalid-usage-query"),
        ({"month": "2026-1x"}, "invalid-usage-query"),
        ({"tenant": "Not A Slug"}, "invalid-usage-query"),
        ({"format": "xml"}, "invalid-usage-query"),
    ):
        query = {"tenant": "ebetsu", "month": "2026-11", **params}
        response = await broker.broker.get(
            "/internal/v1/usage", params=query, auth=broker.auth("operator", "broker")
        )
        assert response.status_code == 400, (params, response.text)
        assert response.json()["type"] == f"urn:tsunagu:problem:{code}"
    query = {"tenant": "ebetsu", "month": "2026-11"}
    assert (await broker.broker.get("/internal/v1/usage", params=query)).status_code == 401
    not_operator = await broker.broker.get(
        "/internal/v1/usage", params=query, auth=broker.auth("consent", "broker")
    )
    assert not_operator.status_code == 403
