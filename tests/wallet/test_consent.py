"""Consent through the CLI against the stack's consent process: a platform service asks, the
citizen reviews the request item by item, signs with the device's signing key (in the token),
reads grants, history and receipts, and withdraws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.idp.conftest import service_auth
from tests.wallet.conftest import Wallet

TREATMENT = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}


async def ask(wallet: Wallet, user_number: str, recipient: str, items: dict[str, bool]) -> dict[str, Any]:
    """A consent request as an operator-side service makes it (recipient registered first)."""
    auth = service_auth(wallet.stack, "operator", "consent")
    async with httpx.AsyncClient(base_url=wallet.stack.urls["consent"], timeout=30) as consent:
        registered = await consent.put(
            f"/internal/v1/recipients/{recipient}",
            json={"name_ja": "E病院", "name_en": "Hospital E"},
            auth=auth,
        )
        assert registered.status_code in (200, 201), registered.text
        response = await consent.post(
            "/internal/v1/requests",
            json={
                "user_number": user_number,
                "recipient": recipient,
                "items": [{"item": item, "required": required} for item, required in items.items()],
                "purpose": TREATMENT,
                "validity": {"until": (datetime.now(UTC) + timedelta(days=90)).isoformat()},
            },
            auth=auth,
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_review_decide_grants_history_receipts_withdraw(wallet: Wallet) -> None:
    user_number = (await wallet.enroll("phone-1"))["user_number"]
    asked = await ask(wallet, user_number, "hospital-e", {"health.allergy": True, "resident.name": False})
    request_id = asked["request_id"]

    [pending] = (await wallet.ok("consent", "requests"))["requests"]
    assert pending["request_id"] == request_id and pending["recipient"] == "hospital-e"
    shown = await wallet.run("consent", "requests")
    assert "アレルギー情報" in shown.stdout and "診療のため" in shown.stdout and "必須" in shown.stdout
    shown_en = await wallet.run("consent", "requests", "--lang", "en")
    assert "Allergies" in shown_en.stdout and "For treatment" in shown_en.stdout

    # Bad answers are refused before anything is signed.
    await wallet.fails(
        "consent",
        "decide",
        "no-such-request",
        "--allow",
        "health.allergy",
        exit_code=2,
        code="unknown-request",
    )
    await wallet.fails(
        "consent", "decide", request_id, "--allow", "health.dna", exit_code=2, code="unknown-items"
    )
    await wallet.fails(
        "consent", "decide", request_id, "--allow", "health.allergy", "--deny", "health.allergy",
        exit_code=2, code="allow-and-deny",
    )  # fmt: skip
    assert (await wallet.ok("consent", "requests"))["requests"][0]["request_id"] == request_id

    # Allow one item; the other, not named, is refused — never a silent allow.
    decided = await wallet.ok("consent", "decide", request_id, "--allow", "health.allergy")
    assert decided["items"] == {"health.allergy": "allow", "resident.name": "deny"}
    decision_id = decided["receipt"]["decision_id"]
    assert decided["receipt"]["sequence"] == 1
    assert (await wallet.ok("consent", "requests"))["requests"] == []
    await wallet.fails(
        "consent", "decide", request_id, "--allow", "health.allergy", exit_code=2, code="unknown-request"
    )

    grants = await wallet.ok("grants")
    [recipient] = grants["recipients"]
    assert recipient["recipient"] == "hospital-e"
    assert recipient["purposes"]["treatment"] == {"health.allergy": "allow", "resident.name": "deny"}
    assert "E病院" in (await wallet.run("grants")).stdout

    history = (await wallet.ok("history"))["decisions"]
    assert [(d["decision_id"], d["event"]) for d in history] == [(decision_id, "partially-given")]
    receipts = (await wallet.ok("receipts"))["receipts"]
    assert [(r["decision_id"], r["matches"], r["payload"]["sequence"]) for r in receipts] == [
        (decision_id, True, 1)
    ]
    assert "受領証は署名と一致" in (await wallet.run("receipts")).stdout

    await wallet.fails("withdraw", "no-such-decision", exit_code=2, code="unknown-decision")
    withdrawn = await wallet.ok("withdraw", decision_id)
    assert withdrawn["withdrawn"] == decision_id and withdrawn["receipt"]["sequence"] == 2
    history = (await wallet.ok("history"))["decisions"]
    assert [d["event"] for d in history] == ["partially-given", "withdrawn"]
    assert history[0]["superseded_by"] == withdrawn["receipt"]["decision_id"]
    after = (await wallet.ok("grants"))["recipients"]
    assert all(
        value != "allow"
        for entry in after
        for items in entry["purposes"].values()
        for value in items.values()
    )
