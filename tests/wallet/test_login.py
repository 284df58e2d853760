"""Logins through the CLI against the stack's idp process: the app link of a real login
transaction approved (or denied) with the device's authentication key, with a per-app key, with
data access decided item by item, a CIBA request from the inbox; links that are not ours refused."""

from __future__ import annotations

import json

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.idp.rp import (
    Pkce,
    RelyingParty,
    authorization_parameters,
    complete,
    exchange,
    query_of,
    start_login,
)
from tests.wallet.conftest import Wallet, relying_party

CIBA = "urn:openid:params:grant-type:ciba"
SECTOR = "https://rp.example/sector.json"


def link(wallet: Wallet, tx: str) -> str:
    return f"tsunagu://login?tx={tx}&issuer={wallet.stack.urls['idp']}"


async def sub_of(admin: httpx.AsyncClient, issuer: str, rp: RelyingParty, code: str, pkce: Pkce) -> str:
    tokens = await exchange(admin, issuer, rp, code, pkce)
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set((await admin.get("/jwks")).json())
    return str(jwt.decode(tokens.json()["id_token"], keys).claims["sub"])


async def login(
    wallet: Wallet, admin: httpx.AsyncClient, rp: RelyingParty, *wallet_args: str, device: str | None = None
) -> dict[str, str]:
    """authorize in a browser → the wallet CLI approves the app link → complete; the RP's query."""
    pkce = Pkce()
    async with httpx.AsyncClient(base_url=wallet.stack.urls["idp"], timeout=30) as browser:
        tx = await start_login(browser, authorization_parameters(rp, pkce))
        answer = await wallet.ok("login", "approve", link(wallet, tx), *wallet_args, device=device)
        assert answer["tx"] == tx and answer["state"] == "approved"
        done = await complete(browser, tx)
    assert done.status_code == 303, done.text
    query = query_of(done.headers["location"])
    query["sub"] = await sub_of(admin, wallet.stack.urls["idp"], rp, query["code"], pkce)
    return query


async def test_approve_deny_and_a_second_device_is_the_same_person(
    wallet: Wallet, idp_admin: httpx.AsyncClient
) -> None:
    card = await wallet.new_card()
    await wallet.enroll("phone-1", card)
    await wallet.ok("device", "add", "--card", card, "--token", "phone-2", device="phone-2")
    rp = await relying_party(wallet.stack, idp_admin)

    first = await login(wallet, idp_admin, rp)
    second = await login(wallet, idp_admin, rp, device="phone-2")
    assert first["sub"] == second["sub"]

    # What the citizen sees before deciding, in both languages; then a denial.
    async with httpx.AsyncClient(base_url=wallet.stack.urls["idp"], timeout=30) as browser:
        tx = await start_login(browser, authorization_parameters(rp, Pkce()))
        shown = await wallet.run("login", "show", link(wallet, tx))
        assert shown.code == 0 and "江別市 健康アプリ" in shown.stdout and "確認コード" in shown.stdout
        shown_en = await wallet.run("login", "show", link(wallet, tx), "--lang", "en")
        assert "Ebetsu health app" in shown_en.stdout and "display code" in shown_en.stdout
        denied = await wallet.ok("login", "deny", link(wallet, tx))
        assert denied["state"] == "denied"
        done = await complete(browser, tx)
        assert query_of(done.headers["location"])["error"] == "access_denied"
        # Decided once: a second answer is refused by the idp, and said so.
        error = await wallet.fails(
            "login", "approve", link(wallet, tx), exit_code=4, code="login-transaction-closed"
        )
        assert error["problem"]["type"] == "urn:tsunagu:problem:login-transaction-closed"


async def test_per_app_certificate_login(wallet: Wallet, idp_admin: httpx.AsyncClient) -> None:
    await wallet.enroll("phone-1")
    await wallet.ok("app-cert", "add", "clinic-app")
    rp = await relying_party(wallet.stack, idp_admin, tsunagu_app_id="clinic-app")
    assert (await login(wallet, idp_admin, rp, "--app", "clinic-app"))["code"]
    async with httpx.AsyncClient(base_url=wallet.stack.urls["idp"], timeout=30) as browser:
        tx = await start_login(browser, authorization_parameters(rp, Pkce()))
        await wallet.fails(
            "login", "approve", link(wallet, tx), "--app", "nope", exit_code=2, code="unknown-app"
        )
        # Nothing was signed: the transaction is still pending for the right key.
        assert (await wallet.ok("login", "approve", link(wallet, tx), "--app", "clinic-app"))[
            "state"
        ] == "approved"
    await wallet.fails("login", "approve", "abcdefghijkl", exit_code=4, code="login-transaction-not-found")


async def test_data_access_login_decided_item_by_item(wallet: Wallet, idp_admin: httpx.AsyncClient) -> None:
    await wallet.enroll("phone-1")
    rp = await relying_party(
        wallet.stack,
        idp_admin,
        client_name="Hospital D",
        **{"client_name#ja": "D病院", "client_name#en": "Hospital D"},
    )
    details = [
        {
            "type": "tsunagu_data_access",
            "items": ["health.allergy", "health.medication"],
            "purpose": {"code": "treatment", "ja": "診療のため", "en": "For treatment"},
        }
    ]
    pkce = Pkce()
    parameters = authorization_parameters(rp, pkce, authorization_details=json.dumps(details))
    async with httpx.AsyncClient(base_url=wallet.stack.urls["idp"], timeout=30) as browser:
        tx = await start_login(browser, parameters)
        # An item the login does not ask for is refused before anything is signed.
        await wallet.fails(
            "login",
            "approve",
            link(wallet, tx),
            "--allow",
            "resident.name",
            exit_code=2,
            code="unknown-items",
        )
        answer = await wallet.ok(
            "login", "approve", link(wallet, tx), "--allow", "health.allergy", "--deny", "health.medication"
        )
        assert answer["state"] == "approved" and answer["consent_request_id"]
        receipt = answer["receipt"]
        assert receipt["decision_id"] and receipt["sequence"] == 1
        done = await complete(browser, tx)
    code = query_of(done.headers["location"])["code"]
    tokens = await exchange(idp_admin, wallet.stack.urls["idp"], rp, code, pkce)
    assert tokens.status_code == 200, tokens.text
    [granted] = tokens.json()["authorization_details"]
    assert granted["items"] == ["health.allergy"] and granted["refused_items"] == ["health.medication"]
    assert tokens.json()["grant_id"] == receipt["decision_id"]


async def test_ciba_request_from_the_inbox(wallet: Wallet, idp_admin: httpx.AsyncClient) -> None:
    await wallet.enroll("phone-1")
    issuer = wallet.stack.urls["idp"]
    web = await relying_party(wallet.stack, idp_admin, sector_identifier_uri=SECTOR)
    sub = (await login(wallet, idp_admin, web))["sub"]
    counter = await relying_party(
        wallet.stack,
        idp_admin,
        grant_types=[CIBA],
        redirect_uri="https://rp.example/unused",
        redirect_uris=[],
        sector_identifier_uri=SECTOR,
        backchannel_token_delivery_mode="poll",
    )
    assert (await wallet.ok("login", "inbox"))["requests"] == []
    form = {"scope": "openid", "login_hint": sub, "binding_message": "窓口 3番", **counter.auth_form(issuer)}
    started = await idp_admin.post("/bc-authorize", data=form)
    assert started.status_code == 200, started.text
    auth_req_id = started.json()["auth_req_id"]

    inbox = await wallet.ok("login", "inbox")
    [waiting] = inbox["requests"]
    assert waiting["tx"] == auth_req_id and waiting["binding_message"] == "窓口 3番"
    human = await wallet.run("login", "inbox")
    assert "窓口 3番" in human.stdout and auth_req_id in human.stdout
    assert (await wallet.ok("login", "approve", auth_req_id))["state"] == "approved"
    poll = {"grant_type": CIBA, "auth_req_id": auth_req_id, **counter.auth_form(issuer + "/token")}
    tokens = await idp_admin.post("/token", data=poll)
    assert tokens.status_code == 200, tokens.text
    assert (await wallet.ok("login", "inbox"))["requests"] == []


async def test_links_that_are_not_ours_are_refused(wallet: Wallet) -> None:
    await wallet.enroll("phone-1")
    issuer = wallet.stack.urls["idp"]
    for bad in (
        "tsunagu://login?issuer=" + issuer,  # no transaction
        "tsunagu://login?tx=abc",  # no issuer
        "tsunagu://pay?tx=abcdefghij&issuer=" + issuer,  # not a login
        "https://evil.example/login?tx=abcdefghij&issuer=" + issuer,
        "tsunagu://login?tx=abcdefghij&tx=klmnopqrst&issuer=" + issuer,
        "tsunagu://login?tx=../../admin&issuer=" + issuer,
        "not a link",
    ):
        await wallet.fails("login", "approve", bad, exit_code=2, code="malformed-link")
    error = await wallet.fails(
        "login",
        "approve",
        "tsunagu://login?tx=abcdefghij&issuer=https://evil.example",
        exit_code=2,
        code="unknown-issuer",
    )
    assert "evil.example" in error["message"]
    human = await wallet.run("login", "approve", "not a link")
    assert human.code == 2 and "ログインのリンクが正しくありません" in human.stderr and human.stdout == ""
