"""Every bad input of a pull gets its own 4xx/5xx problem, and a refusal forwards nothing: unknown
sub, item or party, bad tokens and scopes, malformed bodies, a slow, failing or lying provider."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.broker.conftest import ALLERGY, BrokerHarness
from tsunagu.wallet import Enrolled

RECORD = {"allergens": ["えび"]}


async def _setup(broker: BrokerHarness, citizen: Enrolled):  # type: ignore[no-untyped-def]
    records, provider, endpoint = await broker.provider("records-refusals")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: RECORD}
    hospital = await broker.party("hospital-refusals")
    await broker.decide(citizen, hospital, {ALLERGY: True})
    return records, provider, hospital, await broker.sub_of(hospital, citizen)


def _problem(response: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == f"urn:tsunagu:problem:{code}", body
    return dict(body)


async def test_unknown_subject_item_and_malformed_bodies(broker: BrokerHarness, citizen: Enrolled):
    _, provider, hospital, sub = await _setup(broker, citizen)
    _problem(await broker.pull(hospital, "never-issued-sub", [ALLERGY]), 404, "unknown-subject")
    _problem(await broker.pull(hospital, sub, ["health.no_such_item"]), 400, "unknown-item")
    _problem(await broker.pull(hospital, sub, [ALLERGY, ALLERGY]), 400, "invalid-exchange")
    _problem(await broker.pull(hospital, sub, [ALLERGY], purpose="Not A Code!"), 400, "invalid-exchange")
    for body in ({"sub": sub}, {"sub": sub, "items": [], "purpose": "treatment"}, {"extra": 1}, [1, 2]):
        response = await broker.broker.post("/v1/exchanges", json=body, headers=hospital.bearer)
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    huge = await broker.broker.post(
        "/v1/exchanges",
        content=b'{"sub":"' + b"x" * 400_000 + b'"}',
        headers={**hospital.bearer, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    # Another party's subject names nobody for this one (pairwise: no cross-party lookups).
    other = await broker.party("hospital-refusals-2")
    _problem(await broker.pull(other, sub, [ALLERGY]), 404, "unknown-subject")
    assert provider.seen == []  # nothing was ever fetched
    assert await broker.exchange_log(citizen) == []  # refused before an exchange began


async def test_tokens_scopes_and_parties(broker: BrokerHarness, citizen: Enrolled):
    _, provider, hospital, sub = await _setup(broker, citizen)
    body = {"sub": sub, "items": [ALLERGY], "purpose": "treatment"}
    missing = await broker.broker.post("/v1/exchanges", json=body)
    _problem(missing, 401, "invalid-token")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    garbage = await broker.broker.post(
        "/v1/exchanges", json=body, headers={"Authorization": "Bearer abc.def.ghi"}
    )
    _problem(garbage, 401, "invalid-token")
    # A token for another resource (the idp's default audience: the client itself).
    elsewhere = await broker.token(hospital, "broker:exchange", resource="https://other.example/api")
    wrong_aud = await broker.broker.post(
        "/v1/exchanges", json=body, headers={"Authorization": f"Bearer {elsewhere}"}
    )
    _problem(wrong_aud, 401, "invalid-token")
    # A tampered token (payload changed, signature kept).
    header, payload, signature = hospital.token.split(".")
    tampered = f"{header}.{payload[:-4]}AAAA.{signature}"
    _problem(
        await broker.broker.post("/v1/exchanges", json=body, headers={"Authorization": f"Bearer {tampered}"}),
        401,
        "invalid-token",
    )
    # The right audience without the scope.
    reader = await broker.party("reader-only", scopes="broker:subscribe")
    reader_sub = await broker.sub_of(reader, citizen)
    insufficient = await broker.pull(reader, reader_sub, [ALLERGY])
    _problem(insufficient, 403, "insufficient-scope")
    assert 'error="insufficient_scope"' in insufficient.headers["www-authenticate"]
    # A deleted (disabled) client is no party any more, even with a live token.
    gone = await broker.party("hospital-gone")
    deleted = await broker.idp.delete(
        f"/admin/v1/clients/{gone.client_id}", auth=broker.auth("operator", "idp")
    )
    assert deleted.status_code == 204
    started = time.monotonic()
    while True:  # the client event reaches the broker's party view; its cache lasts ≤ 30 s
        refused = await broker.pull(gone, "any-sub", [ALLERGY])
        if refused.status_code == 403:
            break
        assert time.monotonic() - started < 40, refused.text
        await asyncio.sleep(0.5)
    _problem(refused, 403, "unknown-party")
    assert provider.seen == []


@pytest.mark.parametrize(
    ("behaviour", "status", "code"),
    [
        (
            {"answer_override": {"items": {ALLERGY: {"allergens": "not a list"}}}},
            502,
            "provider-data-invalid",
        ),
        ({"answer_override": ["not", "an", "object"]}, 502, "provider-failed"),
        ({"delay_s": 8.0}, 504, "provider-timeout"),
    ],
)
async def test_provider_failures_forward_nothing(
    broker: BrokerHarness, citizen: Enrolled, behaviour: dict, status: int, code: str
):  # type: ignore[type-arg]
    _, provider, hospital, sub = await _setup(broker, citizen)
    for name, value in behaviour.items():
        setattr(provider, name, value)
    response = await broker.pull(hospital, sub, [ALLERGY])
    problem = _problem(response, status, code)
    assert "not a list" not in response.text  # the path may be named, never a value
    assert problem["status"] == status
    log = await broker.exchange_log(citizen)
    assert [(e["outcome"], e["reason"], e["released"]) for e in log] == [("failed", code, [])]


async def test_extra_fields_from_the_provider_are_not_forwarded(broker: BrokerHarness, citizen: Enrolled):
    records, provider, hospital, sub = await _setup(broker, citizen)
    provider.records[await broker.sub_of(records, citizen)] = {
        ALLERGY: {"allergens": ["そば"], "doctor_notes": "not part of the item"},
        "health.medication": {"drugs": ["x"]},
    }
    response = await broker.pull(hospital, sub, [ALLERGY])
    assert response.status_code == 200, response.text
    assert response.json()["items"] == {ALLERGY: {"allergens": ["そば"]}}
