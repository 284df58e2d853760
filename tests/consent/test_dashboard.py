"""The citizen dashboard on the real stack: the idp process of the dev stack (OpenID Provider),
the stack's CA and signer; the consent app with the dashboard served over real HTTP on the
loopback (its own database, shared with an in-process twin the test uses as the wallet's and the
operator's consent service). A real headless Chromium logs in through the idp while the test
wallet approves the login, reads the grants, asks for a change, and watches the page move on once
the wallet has signed it; httpx drives the bad paths over the same HTTP.

The dashboard is registered at the idp as a confidential client (private_key_jwt) with a
``user_number_legal_basis``: the ID token's ``user_number`` says whose dashboard it is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from tests.consent.conftest import HOSPITAL_A, ConsentHarness, consent_settings, service_auth
from tests.fixtures.browser import BrowserPage, PageOpener, serving
from tests.fixtures.services import build_app
from tsunagu.consent.settings import DashboardSettings
from tsunagu.devstack.ports import free_port
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, decide_login, fetch_login
from tsunagu.wallet import consent as wallet

ALLERGY, NAME = "health.allergy", "resident.name"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
LEGAL_BASIS = "利用者本人の同意状況の表示 (test)"


@dataclass(frozen=True)
class DashboardClient:
    client_id: str
    key_file: Path
    port: int

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/dashboard/callback"


@dataclass
class Board:
    url: str  # the served consent service, e.g. http://127.0.0.1:43125
    consent: ConsentHarness  # the same database, in-process (wallet, operator, row checks)
    idp_url: str

    async def rows(self, table: str) -> list[dict[str, Any]]:
        return await self.consent.rows(table)


async def _register_client(stack: RunningStack, port: int, key: ECKey, **extra: Any) -> str:
    tenant = f"platform-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(
        base_url=stack.urls["idp"], auth=service_auth(stack, "operator", "idp"), timeout=30
    ) as admin:
        created = await admin.post(
            "/admin/v1/tenants", json={"id": tenant, "name_ja": "デジタル庁", "name_en": "Digital Agency"}
        )
        assert created.status_code == 201, created.text
        registered = await admin.post(
            f"/admin/v1/tenants/{tenant}/clients",
            json={
                "redirect_uris": [f"http://127.0.0.1:{port}/dashboard/callback"],
                "client_name": "Tsunagu consent dashboard",
                "client_name#ja": "Tsunagu 同意の管理",
                "client_name#en": "Tsunagu consent dashboard",
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [key.as_dict(private=False)]},
                **extra,
            },
        )
        assert registered.status_code == 201, registered.text
    return str(registered.json()["client_id"])


def _new_key(directory: Path) -> tuple[ECKey, Path]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = directory / "dashboard-client.key.pem"
    path.write_bytes(pem)
    key = ECKey.import_key(pem)
    key.ensure_kid()
    return key, path


@pytest.fixture(scope="module")
async def dashboard_client(
    consent_platform: RunningStack, tmp_path_factory: pytest.TempPathFactory
) -> DashboardClient:
    """The dashboard's registration at the stack's idp (one loopback port for the module)."""
    port = free_port()
    key, path = _new_key(tmp_path_factory.mktemp("dashboard-client"))
    client_id = await _register_client(consent_platform, port, key, user_number_legal_basis=LEGAL_BASIS)
    return DashboardClient(client_id, path, port)


@asynccontextmanager
async def served_board(
    make_consent: Any, stack: RunningStack, client: DashboardClient, tmp_path: Path
) -> AsyncIterator[Board]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'consent.db'}"
    async with make_consent(url) as harness:
        settings = consent_settings(
            stack,
            url,
            dashboard=DashboardSettings(
                issuer=stack.urls["idp"],
                client_id=client.client_id,
                client_key_file=client.key_file,
                redirect_uri=client.redirect_uri,
            ),
        )
        with serving(build_app("consent", settings), port=client.port) as served:
            yield Board(served, harness, stack.urls["idp"])


@pytest.fixture
async def board(
    make_consent: Any, consent_platform: RunningStack, dashboard_client: DashboardClient, tmp_path: Path
) -> AsyncIterator[Board]:
    async with served_board(make_consent, consent_platform, dashboard_client, tmp_path) as found:
        yield found


@pytest.fixture
async def idp_wallet(consent_platform: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=consent_platform.urls["idp"], timeout=30) as client:
        yield client


async def grant(board: Board, citizen: Enrolled, choices: dict[str, bool]) -> dict[str, Any]:
    """Hospital A asks; the citizen's wallet answers item by item (the state the page shows)."""
    asked = await board.consent.ask(citizen.user_number, HOSPITAL_A, dict.fromkeys(choices, False))
    pending = await wallet.fetch_requests(board.consent.client, citizen)
    request = next(entry for entry in pending if entry["request_id"] == asked["request_id"])
    return await wallet.decide(board.consent.client, citizen, request, choices)


async def approve_login(idp_wallet: httpx.AsyncClient, tx: str, citizen: Enrolled) -> None:
    transaction = await fetch_login(idp_wallet, tx)
    await decide_login(idp_wallet, transaction, citizen.authentication)


async def http_login(
    board: Board, idp_wallet: httpx.AsyncClient, citizen: Enrolled, browser: httpx.AsyncClient
) -> None:
    """Log a browser without script (httpx with a cookie jar) in to the dashboard."""
    started = await browser.get(f"{board.url}/dashboard/login")
    assert started.status_code == 303, started.text
    authorize = started.headers["location"]
    assert authorize.startswith(board.idp_url + "/authorize?"), authorize
    at_idp = await browser.get(authorize)
    assert at_idp.status_code == 303, at_idp.text
    tx = at_idp.headers["location"].removeprefix("/login/")
    await approve_login(idp_wallet, tx, citizen)
    completed = await browser.get(f"{board.idp_url}/login/{tx}/complete")
    assert completed.status_code == 303, completed.text
    callback = completed.headers["location"]
    assert callback.startswith(f"{board.url}/dashboard/callback?"), callback
    landed = await browser.get(callback)
    assert landed.status_code == 303 and landed.headers["location"] == "/dashboard", landed.text


# dashboard → idp → login page → wallet → idp → callback → dashboard crosses three servers on a
# shared machine: the browser steps get more than the fixture's 10 s default.
FLOW_TIMEOUT_MS = 30_000


async def open_dashboard(page: BrowserPage, url: str) -> None:
    """Navigate without waiting for "load" of the page at the end of the redirects (the idp's
    login page keeps an event stream open); callers wait for the URL they expect."""
    page.page.set_default_timeout(FLOW_TIMEOUT_MS)
    await page.page.goto(url, wait_until="commit")


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# -- the happy path in a real browser --------------------------------------------------------------
async def test_a_citizen_logs_in_sees_grants_and_changes_one_signed_in_the_wallet(
    board: Board,
    browser_page: BrowserPage,
    idp_wallet: httpx.AsyncClient,
    citizen: Enrolled,
    tmp_path: Path,
) -> None:
    await grant(board, citizen, {ALLERGY: True, NAME: True})
    page = browser_page.page
    # No session: the dashboard sends the browser to the idp's login page (QR code there).
    await open_dashboard(browser_page, f"{board.url}/dashboard")
    login_url = await browser_page.wait_for_url_prefix(f"{board.idp_url}/login/", timeout_s=30)
    authorize = next(url for url in browser_page.navigations if "/authorize?" in url)
    asked = _query(authorize)
    assert asked["code_challenge_method"] == ["S256"] and asked["ui_locales"] == ["ja"]
    assert asked["state"][0] and asked["nonce"][0] and "user_number" in asked["claims"][0]
    await approve_login(idp_wallet, urlsplit(login_url).path.removeprefix("/login/"), citizen)

    # The login page moves on by itself; the dashboard lists what hospital A may receive.
    await page.wait_for_url(f"{board.url}/dashboard")
    assert await page.evaluate("() => document.documentElement.lang") == "ja"
    assert JAPANESE.search(await page.title())
    recipient = page.locator(f'.recipient[data-recipient="{HOSPITAL_A}"]')
    assert "A病院" in await recipient.locator("h3").inner_text()
    for item in (ALLERGY, NAME):
        cell = recipient.locator(f'tr[data-item="{item}"] td[data-value]')
        assert await cell.get_attribute("data-value") == "allow"
    assert "アレルギー情報" in await recipient.inner_text()
    cookie = next(c for c in await browser_page.context.cookies() if c["name"] == "tsunagu_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    await browser_page.screenshot(tmp_path / "grants-ja.png")

    # Stop sharing the allergies: the page shows the signing request (QR code, app link).
    await recipient.locator(f'select[name="item:{ALLERGY}"]').select_option("deny")
    await recipient.get_by_role("button").click()
    await page.wait_for_url(re.compile(r".*/dashboard/requests/[A-Za-z0-9_-]+$"))
    request_id = page.url.rsplit("/", 1)[1]
    link = await page.locator("#app-link").get_attribute("href")
    assert link is not None and link.startswith("tsunagu://consent?")
    assert _query(link) == {"request": [request_id], "issuer": [board.url]}
    qr = page.locator(".qr svg")
    assert await qr.count() == 1 and await qr.locator("path").count() >= 1
    assert await page.locator("#status").get_attribute("data-state") == "pending"
    proposal = page.locator(f'#proposal li[data-item="{ALLERGY}"]')
    assert "提供しない" in await proposal.inner_text()
    await browser_page.screenshot(tmp_path / "sign-ja.png")

    # The request is an ordinary consent request, made by the dashboard for this person.
    stored = next(row for row in await board.rows("consent_request") if row["id"] == request_id)
    assert stored["created_by"] == "dashboard" and stored["user_number"] == citizen.user_number
    assert sorted(entry["item"] for entry in stored["items"]) == [ALLERGY, NAME]

    # The wallet signs what the citizen chose; the page notices and shows the new state.
    pending = await wallet.fetch_requests(board.consent.client, citizen)
    request = next(entry for entry in pending if entry["request_id"] == request_id)
    await wallet.decide(board.consent.client, citizen, request, {ALLERGY: False, NAME: True})
    await page.wait_for_url(f"{board.url}/dashboard", timeout=FLOW_TIMEOUT_MS)
    recipient = page.locator(f'.recipient[data-recipient="{HOSPITAL_A}"]')
    allergy = recipient.locator(f'tr[data-item="{ALLERGY}"] td[data-value]')
    assert await allergy.get_attribute("data-value") == "deny"
    name = recipient.locator(f'tr[data-item="{NAME}"] td[data-value]')
    assert await name.get_attribute("data-value") == "allow"
    assert await board.consent.effective(citizen.user_number, HOSPITAL_A, [ALLERGY, NAME]) == {
        ALLERGY: "deny",
        NAME: "allow",
    }

    # The history: both decisions with their ISO/IEC TS 27560 event type and receipt time.
    await page.locator("#nav-history").click()
    await page.wait_for_url(f"{board.url}/dashboard/history")
    rows = page.locator("#history tbody tr")
    assert await rows.count() == 2
    assert [await rows.nth(i).get_attribute("data-event") for i in range(2)] == [
        "partially-given",
        "given",
    ]
    assert "一部同意" in await rows.nth(0).inner_text()
    browser_page.assert_clean()


async def test_the_dashboard_speaks_english_when_asked(
    board: Board,
    open_page: PageOpener,
    idp_wallet: httpx.AsyncClient,
    citizen: Enrolled,
    tmp_path: Path,
) -> None:
    await grant(board, citizen, {ALLERGY: True})
    asked = await board.consent.ask(citizen.user_number, HOSPITAL_A, {NAME: True})
    english = await open_page(locale="en-US")
    page = english.page
    await open_dashboard(english, f"{board.url}/dashboard")
    login_url = await english.wait_for_url_prefix(f"{board.idp_url}/login/", timeout_s=30)
    assert _query(next(u for u in english.navigations if "/authorize?" in u))["ui_locales"] == ["en"]
    await approve_login(idp_wallet, urlsplit(login_url).path.removeprefix("/login/"), citizen)
    await page.wait_for_url(f"{board.url}/dashboard")
    assert await page.evaluate("() => document.documentElement.lang") == "en"
    assert "Allergies" in await page.locator("#grants").inner_text()
    assert "Hospital A" in await page.locator("#grants").inner_text()

    # A pending request of hospital A: answered from the dashboard, signed in the wallet.
    pending = page.locator(f'#pending li[data-request="{asked["request_id"]}"]')
    assert "Name" in await pending.inner_text()
    await pending.get_by_role("link").click()
    await page.wait_for_url(f"{board.url}/dashboard/requests/{asked['request_id']}")
    assert "Waiting for your signature" in await page.locator("#status").inner_text()
    assert await page.locator(f'#requested li[data-item="{NAME}"]').inner_text() == "Name"
    await english.screenshot(tmp_path / "sign-en.png")
    request = next(
        entry
        for entry in await wallet.fetch_requests(board.consent.client, citizen)
        if entry["request_id"] == asked["request_id"]
    )
    await wallet.decide(board.consent.client, citizen, request, {NAME: True})
    await page.wait_for_url(f"{board.url}/dashboard", timeout=FLOW_TIMEOUT_MS)
    assert "No requests are waiting" in await page.locator("#pending").inner_text()
    assert "Name" in await page.locator("#grants").inner_text()
    # The toggle switches to Japanese and the session remembers it.
    await page.locator("#lang-toggle").click()
    await page.wait_for_load_state()
    assert await page.evaluate("() => document.documentElement.lang") == "ja"
    await english.goto(f"{board.url}/dashboard/history")
    assert await page.evaluate("() => document.documentElement.lang") == "ja"
    english.assert_clean()


# -- bad paths over HTTP ---------------------------------------------------------------------------
async def test_without_a_session_pages_go_to_the_login_and_the_rest_is_401(board: Board) -> None:
    async with httpx.AsyncClient(base_url=board.url, timeout=30) as anonymous:
        for path in ("/dashboard", "/dashboard/history", "/dashboard/requests/abc"):
            response = await anonymous.get(path)
            assert response.status_code == 303 and response.headers["location"] == "/dashboard/login", path
        status = await anonymous.get("/dashboard/requests/abc/status")
        assert status.status_code == 401
        assert status.json()["type"].endswith("dashboard-session-required")
        changed = await anonymous.post(
            "/dashboard/changes", data={"recipient": HOSPITAL_A, "purpose": "treatment", "csrf": "x"}
        )
        assert changed.status_code == 401
    async with httpx.AsyncClient(
        base_url=board.url, timeout=30, cookies={"tsunagu_dashboard": secrets.token_urlsafe(32)}
    ) as forged:
        assert (await forged.get("/dashboard")).status_code == 303
    assert await board.rows("consent_request") == []


async def test_a_callback_with_another_state_is_refused_and_changes_nothing(
    board: Board, idp_wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    async with httpx.AsyncClient(timeout=30) as browser:
        started = await browser.get(f"{board.url}/dashboard/login")
        state = _query(started.headers["location"])["state"][0]
        before = await board.rows("dashboard_session")
        assert len(before) == 1 and before[0]["user_number"] is None and before[0]["oidc_state"] == state

        wrong = await browser.get(f"{board.url}/dashboard/callback", params={"state": "other", "code": "x"})
        assert wrong.status_code == 400 and 'id="error-code">login-state-mismatch<' in wrong.text
        assert "no-store" in wrong.headers["cache-control"]
        assert await board.rows("dashboard_session") == before

        # Another browser (no login cookie) with the right state gets nothing either.
        async with httpx.AsyncClient(timeout=30) as stranger:
            stolen = await stranger.get(
                f"{board.url}/dashboard/callback", params={"state": state, "code": "x"}
            )
        assert stolen.status_code == 400 and "login-state-mismatch" in stolen.text
        declined = await browser.get(f"{board.url}/dashboard/callback", params={"error": "access_denied"})
        assert declined.status_code == 400 and "login-declined" in declined.text
        assert await board.rows("dashboard_session") == before


async def test_a_post_without_the_csrf_token_is_403_and_writes_nothing(
    board: Board, idp_wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    await grant(board, citizen, {ALLERGY: True})
    requests_before = await board.rows("consent_request")
    async with httpx.AsyncClient(timeout=30) as browser:
        await http_login(board, idp_wallet, citizen, browser)
        form = {"recipient": HOSPITAL_A, "purpose": "treatment", f"item:{ALLERGY}": "deny"}
        missing = await browser.post(f"{board.url}/dashboard/changes", data=form)
        assert missing.status_code == 403 and missing.json()["type"].endswith("csrf-token-invalid")
        wrong = await browser.post(f"{board.url}/dashboard/changes", data={**form, "csrf": "not-it"})
        assert wrong.status_code == 403
        logout = await browser.post(f"{board.url}/dashboard/logout", data={})
        assert logout.status_code == 403
        assert await board.rows("consent_request") == requests_before
        assert await board.rows("dashboard_change") == []

        # With the token the same change is made (the token sits in the page's forms).
        page = await browser.get(f"{board.url}/dashboard")
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert re.search(r"script-src 'nonce-[A-Za-z0-9_-]{16,}';", policy) and "unsafe" not in policy
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        csrf = token.group(1)
        for bad, status, code in (
            ({f"item:{ALLERGY}": "allow"}, 409, "nothing-to-change"),
            ({f"item:{NAME}": "deny"}, 400, "invalid-change"),
            ({"recipient": "hospital-b"}, 404, "grant-not-found"),
        ):
            refused = await browser.post(f"{board.url}/dashboard/changes", data={**form, "csrf": csrf, **bad})
            assert refused.status_code == status and f">{code}<" in refused.text, (bad, refused.text)
        assert await board.rows("consent_request") == requests_before
        made = await browser.post(f"{board.url}/dashboard/changes", data={**form, "csrf": csrf})
        assert made.status_code == 303 and made.headers["location"].startswith("/dashboard/requests/")
        assert len(await board.rows("consent_request")) == len(requests_before) + 1

        # The cookie is an opaque id; the row keeps only its SHA-256. Logging out ends it.
        cookie = browser.cookies["tsunagu_dashboard"]
        sessions = await board.rows("dashboard_session")
        assert [row["id_sha256"] for row in sessions if row["user_number"] == citizen.user_number] == [
            hashlib.sha256(cookie.encode()).hexdigest()
        ]
        assert all(cookie not in str(row) for row in sessions)
        out = await browser.post(f"{board.url}/dashboard/logout", data={"csrf": csrf})
        assert out.status_code == 200 and 'id="logged-out"' in out.text
        assert "tsunagu_dashboard" not in browser.cookies
        assert all(row["user_number"] is None for row in await board.rows("dashboard_session"))
    async with httpx.AsyncClient(timeout=30, cookies={"tsunagu_dashboard": cookie}) as replay:
        again = await replay.get(f"{board.url}/dashboard")
        assert again.status_code == 303 and again.headers["location"] == "/dashboard/login"


async def test_another_persons_request_is_404(
    board: Board, idp_wallet: httpx.AsyncClient, citizen: Enrolled, other_citizen: Enrolled
) -> None:
    theirs = await board.consent.ask(other_citizen.user_number, HOSPITAL_A, {ALLERGY: False})
    mine = await board.consent.ask(citizen.user_number, HOSPITAL_A, {ALLERGY: False})
    async with httpx.AsyncClient(timeout=30) as browser:
        await http_login(board, idp_wallet, citizen, browser)
        overview = await browser.get(f"{board.url}/dashboard")
        assert mine["request_id"] in overview.text and theirs["request_id"] not in overview.text
        page = await browser.get(f"{board.url}/dashboard/requests/{theirs['request_id']}")
        assert page.status_code == 404 and "consent-request-not-found" in page.text
        status = await browser.get(f"{board.url}/dashboard/requests/{theirs['request_id']}/status")
        assert status.status_code == 404
        own = await browser.get(f"{board.url}/dashboard/requests/{mine['request_id']}/status")
        assert own.status_code == 200 and own.json() == {"state": "pending", "decision_id": None}


async def test_a_client_without_a_legal_basis_gets_no_dashboard(
    make_consent: Any,
    consent_platform: RunningStack,
    idp_wallet: httpx.AsyncClient,
    citizen: Enrolled,
    tmp_path: Path,
) -> None:
    port = free_port()
    key, path = _new_key(tmp_path)
    client = DashboardClient(await _register_client(consent_platform, port, key), path, port)
    async with served_board(make_consent, consent_platform, client, tmp_path) as board:
        async with httpx.AsyncClient(timeout=30) as browser:
            with pytest.raises(AssertionError, match="no-user-number"):
                await http_login(board, idp_wallet, citizen, browser)
        assert all(row["user_number"] is None for row in await board.rows("dashboard_session"))
