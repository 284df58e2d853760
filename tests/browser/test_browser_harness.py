"""The page-test harness itself, on a page shaped like the idp's approval wait: strict CSP (nonce'd
inline script and style only, as services/idp/api/pages.py sends), Japanese text, a script that
polls a JSON endpoint and then leaves for the relying party's redirect_uri with a code."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

from tests.fixtures.browser import BrowserPage, serving
from tsunagu.devstack.ports import free_port

TITLE = "マイナンバーカードでログイン"
WAITING = "スマートフォンのアプリで承認してください"
APPROVED = "承認されました。サービスに戻ります。"


def csp(nonce: str) -> str:
    # The idp's policy (services/idp/api/pages.py security_headers), kept here so this harness
    # test does not move with the idp's pages.
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


PAGE = """<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, "Noto Sans CJK JP", sans-serif; margin: 2rem; background: #f6f7f9; }}
.status {{ padding: .75rem; border-radius: 6px; background: #eef4ff; }}
</style>
<style>h1 {{ color: rgb(255, 0, 0); }}</style>
</head>
<body>
<h1>{title}</h1>
<p>{waiting}</p>
<p id="status" class="status" data-polls="0">スクリプトは動いていません</p>
<p id="injected">インラインスクリプト(nonce なし)は実行されていません</p>
<script>document.getElementById("injected").textContent = "nonce なしのスクリプトが実行された";</script>
<script nonce="{nonce}">
const status = document.getElementById("status");
status.textContent = "承認を待っています…";
async function poll() {{
  const response = await fetch("/poll", {{ headers: {{ accept: "application/json" }}, cache: "no-store" }});
  const body = await response.json();
  status.dataset.polls = String(Number(status.dataset.polls) + 1);
  if (body.status === "approved") {{
    status.textContent = "{approved}";
    location.assign(body.redirect_to);
    return;
  }}
  setTimeout(poll, 100);
}}
poll();
</script>
</body>
</html>
"""


@dataclass
class Login:
    """The idp-like side: a wait page, and the approval the test grants."""

    redirect_to: str
    approved: bool = False
    polls: int = 0
    nonces: list[str] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/login")
        async def login() -> HTMLResponse:
            nonce = secrets.token_urlsafe(16)
            self.nonces.append(nonce)
            html = PAGE.format(title=TITLE, waiting=WAITING, approved=APPROVED, nonce=nonce)
            return HTMLResponse(
                html, headers={"Content-Security-Policy": csp(nonce), "Cache-Control": "no-store"}
            )

        @app.get("/poll")
        async def poll() -> JSONResponse:
            self.polls += 1
            if not self.approved:
                return JSONResponse({"status": "pending"})
            return JSONResponse({"status": "approved", "redirect_to": self.redirect_to})

        return app


@dataclass
class RelyingParty:
    callbacks: list[dict[str, list[str]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/cb")
        async def callback(request: Request) -> HTMLResponse:
            self.callbacks.append(parse_qs(request.url.query))
            return HTMLResponse(
                '<!doctype html><html lang="ja"><meta charset="utf-8"><h1>ログインしました</h1>'
            )

        return app


@pytest.fixture
def rp() -> Iterator[tuple[RelyingParty, str]]:
    party = RelyingParty()
    with serving(party.app()) as url:
        yield party, url


async def test_strict_csp_page_polls_then_redirects_to_relying_party(
    browser_page: BrowserPage, rp: tuple[RelyingParty, str], tmp_path: Path
) -> None:
    party, rp_url = rp
    login = Login(redirect_to=f"{rp_url}/cb?code=c0de-123&state=st%E3%81%82")
    with serving(login.app()) as idp_url:
        response = await browser_page.goto(f"{idp_url}/login")
        assert response is not None and response.ok
        page = browser_page.page

        # Renders, in Japanese, with the nonce'd style applied and the other one refused.
        assert await page.title() == TITLE
        assert await page.locator("h1").inner_text() == TITLE
        assert await page.evaluate("document.documentElement.lang") == "ja"
        assert await page.evaluate("navigator.language") == "ja-JP"
        status = page.locator("#status")
        assert await status.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(238, 244, 255)"
        assert await page.locator("h1").evaluate("e => getComputedStyle(e).color") != "rgb(255, 0, 0)"

        # The nonce'd script runs and polls the same origin (connect-src 'self').
        await page.wait_for_function("() => Number(document.getElementById('status').dataset.polls) >= 2")
        assert await status.inner_text() == "承認を待っています…"
        assert login.polls >= 2

        # The inline script without the nonce was blocked and reported.
        assert "実行されていません" in await page.locator("#injected").inner_text()
        violations = await browser_page.wait_for_csp_violations(2)
        assert {v.directive for v in violations} == {"script-src-elem", "style-src-elem"}
        assert all(v.blocked_uri == "inline" and v.disposition == "enforce" for v in violations)
        assert violations[0].source_file.startswith(f"{idp_url}/login")
        assert any("Content Security Policy" in line for line in browser_page.console_errors)
        # nothing else went wrong: every console error is one of the two CSP refusals
        assert len(browser_page.console_errors) == 2, browser_page.console_errors

        # Drawn with a CJK font (tofu boxes would come from a missing one).
        assert any("CJK" in family for family in await browser_page.fonts_used("h1"))

        shot = await browser_page.screenshot(tmp_path / "screens" / "waiting.png")
        assert shot.stat().st_size > 5_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

        # Approval: the script leaves for the relying party with the code.
        login.approved = True
        landed = await browser_page.wait_for_url_prefix(f"{rp_url}/cb?")
        query = parse_qs(urlsplit(landed).query)
        assert query == {"code": ["c0de-123"], "state": ["stあ"]}
        await page.wait_for_load_state()
        assert await page.locator("h1").inner_text() == "ログインしました"
        assert party.callbacks == [query]
        assert browser_page.navigations == [f"{idp_url}/login", landed]


async def test_redirect_uri_need_not_be_served(browser_page: BrowserPage) -> None:
    """A redirect to an address nothing listens on is still seen, and a stub can answer one."""
    nowhere = f"http://127.0.0.1:{free_port()}/cb"
    login = Login(redirect_to=f"{nowhere}?code=abc", approved=True)
    with serving(login.app()) as idp_url:
        await browser_page.goto(f"{idp_url}/login")
        assert await browser_page.wait_for_url_prefix(nowhere) == f"{nowhere}?code=abc"

    await browser_page.stub_url_prefix("https://rp.example/", body="<h1>スタブ</h1>")
    login = Login(redirect_to="https://rp.example/cb?code=xyz", approved=True)
    with serving(login.app()) as idp_url:
        await browser_page.goto(f"{idp_url}/login")
        assert (
            await browser_page.wait_for_url_prefix("https://rp.example/cb?")
            == "https://rp.example/cb?code=xyz"
        )
        await browser_page.page.wait_for_url("https://rp.example/cb?code=xyz")
        assert await browser_page.page.locator("h1").inner_text() == "スタブ"


async def test_wait_for_url_prefix_times_out_with_what_it_saw(browser_page: BrowserPage) -> None:
    await browser_page.page.set_content("<p>ここから動きません</p>")
    with pytest.raises(AssertionError, match=re.escape("navigation to https://rp.example/")):
        await browser_page.wait_for_url_prefix("https://rp.example/", timeout_s=0.3)
