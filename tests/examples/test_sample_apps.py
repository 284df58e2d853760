"""The sample relying parties, driven as a citizen's browser and wallet drive them: what each app
sees, what the broker refuses it, and what the apps refuse (a forged callback, a forged push)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jws
from joserfc.jwk import ECKey

from tests.examples.conftest import Apps

NEW_ADDRESS = "北海道江別市野幌町10番地"


async def until_notices(apps: Apps, browser: Any, app: str, timeout_s: float = 45.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        notices: list[dict[str, Any]] = (await browser.me(apps.urls[app]))["notices"]
        if notices:
            return notices
        await asyncio.sleep(0.2)
    raise AssertionError(f"no notice reached {app} in {timeout_s} s")


async def test_a_hospital_sees_allergies_only_with_consent_and_each_app_its_own_sub(apps: Apps):
    resident = await apps.resident()
    browser = apps.browser()
    try:
        a = await browser.login(apps.urls["hospital-a"], resident.enrolled, {"health.allergy": True})
        b = await browser.login(apps.urls["hospital-b"], resident.enrolled, {"health.allergy": False})
        page_a = (await browser.http.get(apps.urls["hospital-a"])).text
        page_b = (await browser.http.get(apps.urls["hospital-b"])).text
    finally:
        await browser.aclose()

    assert not a["sso"] and not b["sso"]  # a data-access login always asks the wallet
    assert a["me"]["status"] == 200 and a["me"]["data"] == {
        "health.allergy": {"allergens": ["そば", "ペニシリン"], "recorded_on": "2026-04-01"}
    }
    assert a["me"]["grant"]["items"] == ["health.allergy"] and a["me"]["grant"]["refused_items"] == []
    assert a["me"]["grant"]["grant_id"] == a["receipt"]["decision_id"]
    assert b["me"]["status"] == 403 and b["me"]["refused"] == "consent-required" and b["me"]["data"] == {}
    assert b["me"]["grant"]["items"] == [] and b["me"]["grant"]["refused_items"] == ["health.allergy"]
    assert a["me"]["client_id"] == apps.client_id("hospital-a")
    assert a["me"]["sub"] != b["me"]["sub"]  # pairwise: one sector per app
    assert resident.enrolled.user_number not in (a["me"]["sub"], b["me"]["sub"])
    assert "ペニシリン" in page_a and "ペニシリン" not in page_b and "consent-required" in page_b


async def test_a_withdrawal_refuses_the_next_visit(apps: Apps):
    from tsunagu.wallet import consent as wallet

    resident = await apps.resident()
    browser = apps.browser()
    try:
        a = await browser.login(apps.urls["hospital-a"], resident.enrolled, {"health.allergy": True})
        assert a["me"]["status"] == 200
        await wallet.withdraw(apps.consent, resident.enrolled, a["receipt"]["decision_id"])
        deadline = time.monotonic() + 10
        view = await browser.me(apps.urls["hospital-a"])
        while view["status"] == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            view = await browser.me(apps.urls["hospital-a"])
    finally:
        await browser.aclose()
    assert view["status"] == 403 and view["refused"] == "consent-required" and view["data"] == {}


async def test_a_move_reaches_the_consenting_bank_only(apps: Apps):
    resident = await apps.resident()
    browser = apps.browser()
    try:
        bank = await browser.login(apps.urls["bank"], resident.enrolled, {"resident.address": True})
        market = await browser.login(
            apps.urls["ebetsu-market"], resident.enrolled, {"resident.address": False}
        )
        moved = await apps.jlis.post(f"/persons/{resident.person_id}/move", json={"address": NEW_ADDRESS})
        assert moved.status_code == 200, moved.text
        notices = await until_notices(apps, browser, "bank")
        await asyncio.sleep(1.0)  # time enough for a wrong delivery to the market to arrive too
        market_view = await browser.me(apps.urls["ebetsu-market"])
        bank_page = (await browser.http.get(apps.urls["bank"])).text
    finally:
        await browser.aclose()
    assert bank["me"]["data"] is None  # the bank only listens (push), it never pulls
    assert [(n["item"], n["value"], n["purpose"], n["sequence"]) for n in notices] == [
        ("resident.address", {"address": NEW_ADDRESS}, "kyc", 1)
    ]
    assert NEW_ADDRESS in bank_page
    assert market["me"]["grant"]["refused_items"] == ["resident.address"]
    assert market_view["notices"] == []


async def test_the_callback_refuses_another_issuer_and_an_error_and_logs_nobody_in(apps: Apps):
    url = apps.urls["hospital-a"]
    async with httpx.AsyncClient(timeout=30) as browser:
        started = await browser.get(f"{url}/login")
        assert started.status_code == 302
        authorize = urlsplit(started.headers["location"])
        assert authorize.geturl().startswith(apps.stack.urls["idp"] + "/authorize?")
        query = parse_qs(authorize.query)
        assert query["code_challenge_method"] == ["S256"] and "nonce" in query
        assert "tsunagu_data_access" in query["authorization_details"][0]
        state = query["state"][0]

        mixed_up = await browser.get(
            f"{url}/callback", params={"code": "c0de", "state": state, "iss": "https://idp.attacker.example"}
        )
        assert mixed_up.status_code == 400 and "invalid_request" in mixed_up.text
        assert "content-security-policy" in mixed_up.headers
        denied = await browser.get(f"{url}/callback", params={"error": "access_denied", "state": state})
        assert denied.status_code == 400 and "access_denied" in denied.text
        me = await browser.get(f"{url}/me")
        assert me.status_code == 401


async def test_the_webhook_refuses_what_the_broker_did_not_sign(apps: Apps):
    hook = f"{apps.urls['bank']}/webhooks/tsunagu"
    forger = ECKey.generate_key("P-256", private=True)
    forger.ensure_kid()
    now = int(time.time())
    claims = {
        "iss": apps.stack.urls["broker"],
        "aud": apps.client_id("bank"),
        "sub": "someone",
        "jti": f"dl_{secrets.token_hex(8)}",
        "iat": now,
        "exp": now + 300,
        "item": "resident.address",
        "value": {"address": "偽の住所"},
        "purpose": "kyc",
        "sequence": 1,
    }
    header = {"alg": "ES256", "typ": "tsunagu-data-push+jwt", "kid": forger.kid}
    forged = jws.serialize_compact(header, httpx.Response(200, json=claims).content, forger)
    async with httpx.AsyncClient(timeout=30) as client:
        answers = [
            await client.post(hook, content=forged, headers={"content-type": "application/jwt"}),
            await client.post(hook, content=b"not a jwt", headers={"content-type": "application/jwt"}),
            await client.post(hook, content=b"x" * 80_000, headers={"content-type": "application/jwt"}),
        ]
    assert [answer.status_code for answer in answers] == [400, 400, 400]


async def test_the_story_ends_cleanly_saying_what_failed_when_an_app_is_down(apps: Apps):
    from pathlib import Path

    from tsunagu.devstack.demo_apps import run_apps_chapter
    from tsunagu.devstack.ports import free_port

    said: list[str] = []
    down = {**apps.urls, "hospital-a": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
    ok = await run_apps_chapter(
        apps.stack.urls,
        down,
        Path(apps.stack.records_file),
        apps.stack.config.state_dir / "credentials",
        jlis_url=apps.stack.jlis_url,
        say=said.append,
    )
    assert ok is False
    assert any(line.startswith("19. ") for line in said)  # the chapters before it ran
    assert said[-1].startswith("   ✗ ConnectError")
