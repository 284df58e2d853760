"""RFC 9396 data access through the login, on the real stack: an in-process idp whose CONSENT_URL is
the stack's consent process (signer with the receipt key, CA, as processes). The relying party asks
for ``health.allergy`` in ``authorization_details``; the citizen approves the login with the
authentication key and decides the consent item by item with the signing key; the consent decision
id comes back as the grant id (Grant Management), which the RP can query and revoke."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.idp.conftest import ISSUER, IdpHarness, service_auth
from tests.idp.rp import (
    Pkce,
    RelyingParty,
    authorization_parameters,
    complete,
    exchange,
    query_of,
    register_rp,
    start_login,
)
from tsunagu.wallet import Enrolled, approve_login_with_consent, fetch_login, send_login_decision
from tsunagu.wallet.consent import decide, fetch_requests

TREATMENT = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}
ALLERGY = [{"type": "tsunagu_data_access", "items": ["health.allergy"], "purpose": TREATMENT}]


@pytest.fixture
async def idp(make_idp, idp_platform) -> AsyncIterator[IdpHarness]:  # type: ignore[no-untyped-def]
    async with make_idp(consent_url=idp_platform.urls["consent"]) as harness:
        yield harness


@pytest.fixture
async def consent(idp: IdpHarness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=idp.stack.urls["consent"], timeout=30) as client:
        yield client


async def hospital(idp: IdpHarness, ja: str, en: str) -> RelyingParty:
    return await register_rp(
        idp.client,
        idp.auth(),
        client_name=en,
        **{"client_name#ja": ja, "client_name#en": en},
    )


async def effective(idp: IdpHarness, user_number: str, recipient: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=idp.stack.urls["consent"], timeout=30) as client:
        response = await client.post(
            "/internal/v1/effective",
            json={
                "user_number": user_number,
                "recipient": recipient,
                "items": ["health.allergy"],
                "purpose": "treatment",
            },
            auth=service_auth(idp.stack, "idp", "consent"),
        )
    assert response.status_code == 200, response.text
    return dict(response.json()["decisions"])


def asking(rp: RelyingParty, pkce: Pkce, details: Any = None) -> dict[str, str]:
    return authorization_parameters(
        rp, pkce, authorization_details=json.dumps(ALLERGY if details is None else details)
    )


async def login_with_consent(
    idp: IdpHarness,
    consent: httpx.AsyncClient,
    citizen: Enrolled,
    rp: RelyingParty,
    choices: dict[str, bool],
) -> dict[str, Any]:
    """authorize → wallet approves and signs the consent → complete → tokens (the response body)."""
    pkce = Pkce()
    parameters = asking(rp, pkce)
    async with idp.new_client() as browser, idp.new_client() as wallet:
        tx = await start_login(browser, parameters)
        transaction = await fetch_login(wallet, tx)
        result = await approve_login_with_consent(idp.client, consent, transaction, citizen, choices)
        assert result["state"] == "approved" and result["receipt"]["decision_id"]
        assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "approved"}
        done = await complete(browser, tx)
    assert done.status_code == 303, done.text
    answer = query_of(done.headers["location"])
    assert answer["state"] == parameters["state"], answer
    tokens = await exchange(idp.client, ISSUER, rp, answer["code"], pkce)
    assert tokens.status_code == 200, tokens.text
    body = dict(tokens.json())
    assert body["grant_id"] == result["receipt"]["decision_id"]
    return body


async def query(idp: IdpHarness, grant_id: str, token: str, method: str = "GET") -> httpx.Response:
    return await idp.client.request(
        method, f"/grants/{grant_id}", headers={"Authorization": f"Bearer {token}"}
    )


async def test_the_allergy_example_through_the_login(
    idp: IdpHarness, consent: httpx.AsyncClient, citizen: Enrolled
) -> None:
    metadata = (await idp.client.get("/.well-known/openid-configuration")).json()
    assert metadata["grant_management_endpoint"] == f"{ISSUER}/grants"
    assert metadata["grant_management_actions_supported"] == ["query", "revoke"]
    hospital_a = await hospital(idp, "A病院", "Hospital A")
    hospital_b = await hospital(idp, "B病院", "Hospital B")

    # Hospital A asks for the allergies; step by step the first time.
    pkce = Pkce()
    parameters = asking(hospital_a, pkce)
    async with idp.new_client() as browser, idp.new_client() as wallet:
        tx = await start_login(browser, parameters)
        page = await browser.get(f"/login/{tx}")
        assert "アレルギー情報" in page.text and "診療のため" in page.text and "A病院" in page.text
        seen = await fetch_login(wallet, tx)
        assert seen["authorization_details"][0]["items"] == ["health.allergy"]
        assert seen["authorization_details"][0]["purpose"] == TREATMENT
        answer = await send_login_decision(wallet, seen, citizen.authentication)
        assert answer["state"] == "approved" and answer["consent_request_id"]
        # The browser waits for the citizen's consent decision.
        assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "consent-pending"}
        assert (await complete(browser, tx)).headers["location"] == f"/login/{tx}"
        waiting = await browser.get(f"/login/{tx}")
        assert "ウォレットで同意内容を確認してください" in waiting.text
        pending = await fetch_requests(consent, citizen)
        request = next(r for r in pending if r["request_id"] == answer["consent_request_id"])
        assert request["recipient"] == hospital_a.client_id
        assert request["notice"]["recipient"]["name_ja"] == "A病院"
        receipt = await decide(consent, citizen, request, {"health.allergy": True})
        assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "approved"}
        done = await complete(browser, tx)
    code = query_of(done.headers["location"])["code"]
    tokens = await exchange(idp.client, ISSUER, hospital_a, code, pkce)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    grant_a = body["grant_id"]
    assert grant_a == receipt["decision_id"]
    [granted] = body["authorization_details"]
    assert granted["type"] == "tsunagu_data_access" and granted["consent_id"] == grant_a
    assert granted["items"] == ["health.allergy"] and granted["refused_items"] == []
    assert granted["purpose"] == TREATMENT and granted["validity"]["until"]
    assert await effective(idp, citizen.user_number, hospital_a.client_id) == {"health.allergy": "allow"}
    succeeded = [e for e in await idp.events() if e["type"] == "tsunagu.idp.login.succeeded"]
    assert succeeded[-1]["data"]["consent_id"] == grant_a

    # The grant as hospital A sees it now.
    looked = await query(idp, grant_a, body["access_token"])
    assert looked.status_code == 200, looked.text
    assert looked.json()["status"] == "active"
    assert looked.json()["authorization_details"][0]["decisions"] == {"health.allergy": "allow"}

    # Hospital B asks the same; the citizen refuses: the login succeeds without data access.
    body_b = await login_with_consent(idp, consent, citizen, hospital_b, {})
    [granted_b] = body_b["authorization_details"]
    assert granted_b["items"] == [] and granted_b["refused_items"] == ["health.allergy"]
    assert await effective(idp, citizen.user_number, hospital_b.client_id) == {"health.allergy": "deny"}
    assert await effective(idp, citizen.user_number, hospital_a.client_id) == {"health.allergy": "allow"}
    looked_b = await query(idp, body_b["grant_id"], body_b["access_token"])
    assert looked_b.json()["authorization_details"][0]["decisions"] == {"health.allergy": "deny"}

    # Another client's token cannot query or revoke A's grant; no token at all is a 401.
    assert (await query(idp, grant_a, body_b["access_token"])).status_code == 404
    assert (await query(idp, grant_a, body_b["access_token"], "DELETE")).status_code == 404
    assert (await idp.client.get(f"/grants/{grant_a}")).status_code == 401
    assert (await idp.client.get("/grants")).status_code == 401
    assert (await query(idp, "no-such-grant", body["access_token"])).status_code == 404

    # A revokes its grant: its tokens die here; the citizen's consent record stays in force.
    assert (await query(idp, grant_a, body["access_token"], "DELETE")).status_code == 204
    userinfo = await idp.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 401
    assert await effective(idp, citizen.user_number, hospital_a.client_id) == {"health.allergy": "allow"}


async def test_unknown_items_are_refused_and_an_unanswered_consent_keeps_the_login_waiting(
    idp: IdpHarness, consent: httpx.AsyncClient, citizen: Enrolled
) -> None:
    rp = await hospital(idp, "C病院", "Hospital C")
    cases: list[Any] = [
        [{"type": "tsunagu_data_access", "items": ["health.dna"], "purpose": TREATMENT}],
        [{"type": "tsunagu_data_access", "items": ["health.allergy"], "purpose": "astrology"}],
        [
            {
                "type": "tsunagu_data_access",
                "items": ["health.allergy"],
                "purpose": "treatment",
                "period": "P99Y",
            }
        ],
        [{"type": "payment_initiation", "items": ["health.allergy"], "purpose": TREATMENT}],
        [ALLERGY[0], ALLERGY[0]],
    ]
    async with idp.new_client() as browser:
        for details in cases:
            parameters = asking(rp, Pkce(), details)
            response = await browser.get("/authorize?" + urlencode(parameters))
            assert response.status_code == 303, response.text
            answer = query_of(response.headers["location"])
            assert answer["error"] == "invalid_authorization_details", (details, answer)
            assert answer["state"] == parameters["state"] and answer["iss"] == ISSUER
    # The same at PAR (JSON error); a valid pushed or signed request is accepted.
    pushed = await idp.client.post("/par", data={**asking(rp, Pkce(), cases[0]), **rp.auth_form(ISSUER)})
    assert pushed.status_code == 400 and pushed.json()["error"] == "invalid_authorization_details"
    good = await idp.client.post("/par", data={**asking(rp, Pkce()), **rp.auth_form(ISSUER)})
    assert good.status_code == 201, good.text
    inner = asking(rp, Pkce(), [{**ALLERGY[0], "purpose": "treatment", "period": "P90D"}])
    signed = {"client_id": rp.client_id, "request": rp.request_object(ISSUER, inner)}
    async with idp.new_client() as browser, idp.new_client() as wallet:
        tx = await start_login(browser, signed)
        seen = await fetch_login(wallet, tx)
        assert seen["authorization_details"][0]["purpose"]["ja"] == "診療のため"
        assert seen["authorization_details"][0]["period_days"] == 90

        # Approved but the consent is not answered: the browser keeps waiting …
        answer = await send_login_decision(wallet, seen, citizen.authentication)
        assert answer["state"] == "approved" and answer["consent_request_id"]
        for _ in range(2):
            assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "consent-pending"}
            assert (await complete(browser, tx)).headers["location"] == f"/login/{tx}"
        # … until the transaction expires: access_denied to the RP.
        logins = idp.services.logins
        logins.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
        assert (await browser.get(f"/login/{tx}/status")).json() == {"state": "expired"}
        done = await complete(browser, tx)
    answer = query_of(done.headers["location"])
    assert answer["error"] == "access_denied" and answer["state"] == inner["state"]
