"""Server-rendered pages (login, approval wait, logout, errors): Japanese by default, English on
``ui_locales``/``Accept-Language``; strict CSP (no inline script except by nonce, no external
origin), no framing, no caching of personal pages."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tsunagu.service.pages import security_headers

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
LOCALES = ("ja", "en")


def choose_locale(request: Request, ui_locales: str | None = None) -> str:
    """First supported of ``ui_locales`` (space separated), else of Accept-Language, else ja."""
    for tag in (ui_locales or "").split():
        base = tag.split("-")[0].lower()
        if base in LOCALES:
            return base
    header = request.headers.get("accept-language", "")
    for part in header.split(","):
        base = part.split(";")[0].strip().split("-")[0].lower()
        if base in LOCALES:
            return base
    return "ja"


def render(request: Request, template: str, locale: str, status: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template(template).render(locale=locale, nonce=nonce, t=TEXT[locale], **context)
    return HTMLResponse(html, status_code=status, headers=security_headers(nonce))


def error_page(request: Request, error: str, description: str, *, status: int = 400) -> HTMLResponse:
    locale = choose_locale(request, request.query_params.get("ui_locales"))
    return render(request, "error.html", locale, status=status, error=error, description=description)


TEXT: dict[str, dict[str, str]] = {
    "ja": {
        "error_title": "ログインできません",
        "error_lead": "リクエストを処理できませんでした。",
        "error_code": "エラーコード",
        "back": "サービスに戻ってやり直してください。",
        "logout_title": "ログアウト",
        "logout_asks": "からログアウトを求められています。",
        "logout_question": (
            "Tsunagu ID からログアウトしますか？ "
            "この ID でログインしているサービスにもログアウトが通知されます。"
        ),
        "logout_yes": "ログアウトする",
        "logout_no": "ログアウトしない",
        "logout_done_title": "ログアウトしました",
        "logout_done": "Tsunagu ID からログアウトしました。",
        "logout_nothing": "ログインしていません。",
        "logout_cancelled": "ログアウトしませんでした。ログインしたままです。",
        "logout_close": "このページは閉じてかまいません。",
        "login_title": "スマートフォンでログイン",
        "login_asks": "がログインを求めています。",
        "login_claims": "このサービスが受け取りを希望する情報（あなたの同意がある項目だけが渡されます）:",
        "login_data_access": "データ連携の同意の求め(項目ごとにウォレットで決めます):",
        "login_scan": "ウォレットアプリで QR コードを読み取ってください",
        "login_qr_label": "ログイン用 QR コード",
        "login_open_app": "この端末のウォレットアプリで開く",
        "login_code": "ウォレットに表示される番号と同じか確認してください:",
        "login_waiting": "ウォレットでの承認を待っています…",
        "login_continue": "承認したら、ここから続けてください",
        "login_approved": "承認されました。サービスに戻ります…",
        "login_consent_pending": "ウォレットで同意内容を確認してください",
        "login_denied": "ログインは拒否されました。",
        "login_expired": "時間切れです。もう一度お試しください。",
        "claim_name": "氏名",
        "claim_address": "住所",
        "claim_birthdate": "生年月日",
        "claim_gender": "性別",
        "claim_verified_claims": "本人確認済みの情報（マイナンバーカードによる確認）",
        "claim_user_number": "利用者識別番号",
    },
    "en": {
        "error_title": "Cannot log in",
        "error_lead": "The request could not be processed.",
        "error_code": "Error code",
        "back": "Go back to the service and try again.",
        "logout_title": "Log out",
        "logout_asks": "asks you to log out.",
        "logout_question": (
            "Log out of Tsunagu ID? The services you logged in to with it will be told as well."
        ),
        "logout_yes": "Log out",
        "logout_no": "Stay logged in",
        "logout_done_title": "Logged out",
        "logout_done": "You have logged out of Tsunagu ID.",
        "logout_nothing": "You are not logged in.",
        "logout_cancelled": "You did not log out; you are still logged in.",
        "logout_close": "You may close this page.",
        "login_title": "Log in with your phone",
        "login_asks": "asks you to log in.",
        "login_claims": (
            "Information this service would like to receive (only items you consented to are sent):"
        ),
        "login_data_access": "Data access requested (you decide item by item in the wallet):",
        "login_scan": "Scan the QR code with your wallet app",
        "login_qr_label": "Login QR code",
        "login_open_app": "Open in the wallet app on this device",
        "login_code": "Check that your wallet shows the same number:",
        "login_waiting": "Waiting for your approval in the wallet…",
        "login_continue": "Once approved, continue here",
        "login_approved": "Approved. Returning to the service…",
        "login_consent_pending": "Please review and sign the data-access consent in your wallet",
        "login_denied": "The login was declined.",
        "login_expired": "The login timed out. Please try again.",
        "claim_name": "Name",
        "claim_address": "Address",
        "claim_birthdate": "Date of birth",
        "claim_gender": "Gender",
        "claim_verified_claims": "Verified identity (checked with the My Number Card)",
        "claim_user_number": "User identification number",
    },
}
