"""A real browser logs in with the wallet: headless Chromium opens the authorization URL of the idp
process of the dev stack (real HTTP), the login page's own script waits on the transaction
(server-sent events, polling fallback) while the wallet decides over HTTP with the citizen's
authentication certificate, and the page moves on by itself to the relying party's redirect URI
with the code (or ``access_denied``), where a relying party served on the loopback receives it.

The relying party is a real server rather than a browser stub (``stub_url_prefix``): Playwright
routes only the first URL of a redirect chain, and the idp reaches the redirect URI by a 303.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from joserfc.jwk import ECKey

from tests.fixtures.browser import BrowserPage, PageOpener, serving
from tests.idp.conftest import service_auth
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, decide_login, fetch_login

CLIENT_NAME_JA = "江別市 健康アプリ"
CLIENT_NAME_EN = "Ebetsu health app"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # hiragana, katakana, kanji
TX_PATH = re.compile(r"^/login/([A-Za-z0-9_-]{20,64})$")
RP_PAGE = '<!doctype html><html lang="ja"><meta charset="utf-8"><title>RP</title><h1>RP</h1></html>'


@dataclass
class Rp:
    client_id: str
    redirect_uri: str
    callbacks: list[dict[str, list[str]]]


@pytest.fixture
def rp_server() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """The relying party's redirect URI, served over HTTP on the loopback; what it received."""
    callbacks: list[dict[str, list[str]]] = []
    app = FastAPI()

    @app.get("/cb")
    async def callback(request: Request) -> HTMLResponse:
        callbacks.append(parse_qs(request.url.query))
        return HTMLResponse(RP_PAGE)

    with serving(app) as url:
        yield f"{url}/cb", callbacks


@pytest.fixture
async def idp_url(idp_platform: RunningStack) -> str:
    return idp_platform.urls["idp"]


@pytest.fixture
async def wallet(idp_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=idp_url, timeout=30) as client:
        yield client


@pytest.fixture
async def rp(
    idp_platform: RunningStack, idp_url: str, rp_server: tuple[str, list[dict[str, list[str]]]]
) -> Rp:
    """A confidential client (private_key_jwt, its key unused here) of a tenant of its own."""
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    redirect_uri, callbacks = rp_server
    tenant = f"browser-{secrets.token_hex(4)}"
    async with httpx.AsyncClient(
        base_url=idp_url, auth=service_auth(idp_platform, "operator", "idp"), timeout=30
    ) as admin:
        created = await admin.post(
            "/admin/v1/tenants", json={"id": tenant, "name_ja": "江別市", "name_en": "Ebetsu City"}
        )
        assert created.status_code == 201, created.text
        registered = await admin.post(
            f"/admin/v1/tenants/{tenant}/clients",
            json={
                "redirect_uris": [redirect_uri],
                "client_name": CLIENT_NAME_EN,
                "client_name#ja": CLIENT_NAME_JA,
                "client_name#en": CLIENT_NAME_EN,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [key.as_dict(private=False)]},
            },
        )
        assert registered.status_code == 201, registered.text
    return Rp(registered.json()["client_id"], redirect_uri, callbacks)


def authorization_url(idp_url: str, rp: Rp, state: str, **extra: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    parameters = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid",
        "state": state,
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{idp_url}/authorize?{urlencode(parameters)}"


async def open_login_page(page: BrowserPage, idp_url: str, url: str) -> tuple[str, Any]:
    """Open the authorization URL; the browser lands on the login page. Returns (tx, response)."""
    response = await page.goto(url)
    assert response is not None and response.status == 200, response and await response.text()
    landed = urlsplit(page.page.url)
    assert f"{landed.scheme}://{landed.netloc}" == idp_url, page.page.url
    match = TX_PATH.match(landed.path)
    assert match, f"not a login page: {page.page.url}"
    return match.group(1), response


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_the_login_page_moves_on_by_itself_when_the_wallet_approves(
    browser_page: BrowserPage,
    idp_url: str,
    rp: Rp,
    wallet: httpx.AsyncClient,
    citizen: Enrolled,
    tmp_path: Path,
) -> None:
    page = browser_page.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    state = "状態-" + secrets.token_urlsafe(8)
    tx, response = await open_login_page(browser_page, idp_url, authorization_url(idp_url, rp, state))

    # The page response: strict CSP (nonce'd script and style only, nothing external), no framing,
    # not cached, no referrer.
    headers = response.headers
    policy = {
        directive.split(" ", 1)[0]: directive.split(" ", 1)[1] if " " in directive else ""
        for directive in (d.strip() for d in headers["content-security-policy"].split(";"))
        if directive
    }
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{16,}'", policy["script-src"]), policy["script-src"]
    assert re.fullmatch(r"'nonce-[A-Za-z0-9_-]{16,}'", policy["style-src"]), policy["style-src"]
    assert policy["connect-src"] == "'self'" and policy["base-uri"] == "'none'"
    assert "unsafe" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert "no-store" in headers["cache-control"]
    assert headers["referrer-policy"] == "no-referrer"

    # Japanese (the browser asks for ja-JP), the client's Japanese name, the QR code, the code.
    assert await page.evaluate("() => document.documentElement.lang") == "ja"
    title = await page.title()
    assert JAPANESE.search(title), title
    assert await page.locator("h1").inner_text() == title
    sizes = [
        float(await page.locator(tag).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
        for tag in ("h1", "h2")
    ]
    assert sizes[0] > sizes[1], f"the page title (h1) must stand out over the section heading (h2): {sizes}"
    body = await page.locator("body").inner_text()
    assert CLIENT_NAME_JA in body
    qr = page.locator(".qr svg")
    assert await qr.count() == 1
    assert await qr.locator("path").count() >= 1
    box = await qr.bounding_box()
    assert box is not None and box["width"] >= 150 and abs(box["width"] - box["height"]) < 1, box
    link = await page.locator("#app-link").get_attribute("href")
    assert link is not None and link.startswith("tsunagu://login?")
    assert query_of(link) == {"tx": [tx], "issuer": [idp_url]}
    display_code = (await page.locator("#display-code").inner_text()).strip()
    assert re.fullmatch(r"\d{2}", display_code), display_code
    assert any("CJK" in family for family in await browser_page.fonts_used("h1"))
    status = page.locator("#status")
    assert await status.get_attribute("data-state") == "pending"
    assert JAPANESE.search(await status.inner_text())

    shot = await browser_page.screenshot(tmp_path / "login-ja.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # Nothing has happened yet: the page waits.
    assert not [url for url in browser_page.navigations if url.startswith(rp.redirect_uri)]

    # The wallet reads the QR code's transaction, sees the same display code and approves.
    transaction = await fetch_login(wallet, link)
    assert transaction["tx"] == tx
    assert transaction["display_code"] == display_code
    assert transaction["client"]["name_ja"] == CLIENT_NAME_JA
    assert await decide_login(wallet, transaction, citizen.authentication) == "approved"

    # The page's own script notices and leaves for the relying party with the code.
    landed = await browser_page.wait_for_url_prefix(rp.redirect_uri + "?", timeout_s=15)
    answer = query_of(landed)
    assert set(answer) == {"code", "state", "iss"}, landed
    assert answer["state"] == [state]
    assert answer["iss"] == [idp_url]
    assert len(answer["code"][0]) >= 32
    await page.wait_for_url(rp.redirect_uri + "?**")
    assert await page.locator("h1").inner_text() == "RP"
    assert rp.callbacks == [answer]  # the relying party got exactly that
    assert f"{idp_url}/login/{tx}/events" in requests  # it listened with server-sent events
    # authorize → login page → complete → the relying party, and nothing else
    assert [urlsplit(u).path for u in browser_page.navigations] == [
        "/authorize",
        f"/login/{tx}",
        f"/login/{tx}/complete",
        "/cb",
    ], browser_page.navigations
    browser_page.assert_clean()


async def test_a_declined_login_ends_at_the_relying_party_with_access_denied(
    browser_page: BrowserPage, idp_url: str, rp: Rp, wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    page = browser_page.page
    state = secrets.token_urlsafe(12)
    tx, _ = await open_login_page(browser_page, idp_url, authorization_url(idp_url, rp, state))

    transaction = await fetch_login(wallet, tx)
    assert await decide_login(wallet, transaction, citizen.authentication, approve=False) == "denied"

    # The page says so, then hands the refusal to the relying party.
    await page.wait_for_function("() => document.getElementById('status').dataset.state === 'denied'")
    assert JAPANESE.search(await page.locator("#status").inner_text())
    landed = await browser_page.wait_for_url_prefix(rp.redirect_uri + "?", timeout_s=15)
    answer = query_of(landed)
    assert answer["error"] == ["access_denied"], landed
    assert answer["state"] == [state]
    assert answer["iss"] == [idp_url]
    assert "code" not in answer
    await page.wait_for_url(rp.redirect_uri + "?**")
    assert rp.callbacks == [answer]
    browser_page.assert_clean()


async def test_going_back_after_the_login_shows_a_page_not_json(
    browser_page: BrowserPage, idp_url: str, rp: Rp, wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    """The citizen presses Back on the relying party's page: the finished login's page is asked
    for again (no-store), and answers with a readable page in the citizen's language."""
    page = browser_page.page
    tx, _ = await open_login_page(browser_page, idp_url, authorization_url(idp_url, rp, "s"))
    assert await decide_login(wallet, await fetch_login(wallet, tx), citizen.authentication) == "approved"
    await browser_page.wait_for_url_prefix(rp.redirect_uri + "?", timeout_s=15)
    await page.wait_for_url(rp.redirect_uri + "?**")

    response = await page.go_back()
    assert response is not None and page.url == f"{idp_url}/login/{tx}"
    assert response.status in (404, 409)
    assert response.headers["content-type"].startswith("text/html"), (
        response.headers["content-type"],
        await response.text(),
    )
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert await page.evaluate("() => document.documentElement.lang") == "ja"
    assert JAPANESE.search(await page.title())
    assert JAPANESE.search(await page.locator("body").inner_text())
    assert not browser_page.csp_violations


async def test_without_server_sent_events_the_page_polls_and_moves_on(
    browser_page: BrowserPage, idp_url: str, rp: Rp, wallet: httpx.AsyncClient, citizen: Enrolled
) -> None:
    """A proxy that breaks the event stream: the page falls back to polling /status."""
    page = browser_page.page
    await page.route(lambda url: urlsplit(url).path.endswith("/events"), lambda route: route.abort())
    polled: list[str] = []
    page.on("request", lambda r: polled.append(r.url) if urlsplit(r.url).path.endswith("/status") else None)
    state = secrets.token_urlsafe(12)
    tx, _ = await open_login_page(browser_page, idp_url, authorization_url(idp_url, rp, state))
    await page.wait_for_function("() => document.getElementById('status').dataset.state === 'pending'")

    transaction = await fetch_login(wallet, tx)
    assert await decide_login(wallet, transaction, citizen.authentication) == "approved"
    landed = await browser_page.wait_for_url_prefix(rp.redirect_uri + "?", timeout_s=15)
    answer = query_of(landed)
    assert set(answer) == {"code", "state", "iss"} and answer["state"] == [state], landed
    assert polled and all(url == f"{idp_url}/login/{tx}/status" for url in polled), polled
    # the only error is the event stream the test broke
    assert all("/events" in line or "ERR_FAILED" in line for line in browser_page.console_errors), (
        browser_page.console_errors
    )
    assert not browser_page.csp_violations


async def test_the_login_page_speaks_english_on_ui_locales_and_japanese_by_default(
    open_page: PageOpener, idp_url: str, rp: Rp, tmp_path: Path
) -> None:
    # ui_locales=en wins over the browser's Japanese.
    english = await open_page(locale="ja-JP")
    await open_login_page(english, idp_url, authorization_url(idp_url, rp, "s1", ui_locales="en"))
    assert await english.page.evaluate("() => document.documentElement.lang") == "en"
    title = await english.page.title()
    assert title.isascii() and "log in" in title.lower(), title
    text = await english.page.locator("body").inner_text()
    assert CLIENT_NAME_EN in text and CLIENT_NAME_JA not in text
    assert not JAPANESE.search(text), text
    assert await english.page.locator(".qr svg").count() == 1
    await english.screenshot(tmp_path / "login-en.png")
    english.assert_clean()

    # A browser asking for a language the idp does not speak gets Japanese.
    french = await open_page(locale="fr-FR")
    await open_login_page(french, idp_url, authorization_url(idp_url, rp, "s2"))
    assert await french.page.evaluate("() => document.documentElement.lang") == "ja"
    assert JAPANESE.search(await french.page.title())
    assert CLIENT_NAME_JA in await french.page.locator("body").inner_text()
    french.assert_clean()


async def test_another_site_cannot_frame_the_login_page(open_page: PageOpener, idp_url: str, rp: Rp) -> None:
    """Clickjacking: a page of another origin that frames the login page gets nothing drawn, while
    a frame of a page without anti-framing headers draws (so the refusal is the idp's doing, not
    the browser refusing every frame of this setup)."""
    login = await open_page()
    tx, _ = await open_login_page(login, idp_url, authorization_url(idp_url, rp, "s"))
    login_url = login.page.url
    control_url = rp.redirect_uri + "?framed=1"  # the relying party's page sends no such headers

    attacker_app = FastAPI()

    @attacker_app.get("/")
    async def attacker_page() -> HTMLResponse:
        return HTMLResponse(
            f'<!doctype html><iframe id="control" src="{control_url}"></iframe>'
            f'<iframe id="login" src="{login_url}"></iframe>'
        )

    with serving(attacker_app) as attacker_url:
        assert urlsplit(attacker_url).netloc != urlsplit(idp_url).netloc
        # A tab of the same browser: it holds the login's binding cookie.
        attacker = await BrowserPage.open(login.context)
        await attacker.goto(attacker_url + "/")
        await attacker.page.wait_for_load_state("load")
        control = attacker.page.frame_locator("#control")
        assert await control.locator("h1").inner_text() == "RP"
        framed = attacker.page.frame_locator("#login")
        assert await framed.locator(".qr svg").count() == 0
        assert await framed.locator("#display-code").count() == 0
        refusals = [line for line in attacker.console_errors if "frame" in line.lower()]
        assert refusals, attacker.console_errors
        assert any("X-Frame-Options" in line or "frame-ancestors" in line for line in refusals), refusals
    # the login page itself, in its own tab, is untouched
    assert login.page.url == login_url and login_url.endswith(f"/login/{tx}")
