"""The citizen dashboard's pages: Jinja2 templates, Japanese by default and English on request
(``ui_locales``, then ``Accept-Language``); strict CSP with a per-response nonce, nothing from
another origin, no framing, never cached."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import segno
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tsunagu.consent.pages.messages import TEXT
from tsunagu.service.pages import security_headers

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCALES = ("ja", "en")
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
JAPAN = ZoneInfo("Asia/Tokyo")


def local_time(value: str | None, locale: str) -> str:
    """An RFC 3339 time as the citizen reads it: Japan time, to the minute."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value).astimezone(JAPAN)
    if locale == "ja":
        return f"{moment.year}年{moment.month}月{moment.day}日 {moment:%H:%M}"
    return f"{moment:%d %b %Y %H:%M} JST"


_env.filters["local_time"] = local_time


def choose_locale(ui_locales: str | None, accept_language: str | None, fallback: str = "ja") -> str:
    """First supported of ``ui_locales`` (space separated), else of Accept-Language, else ``fallback``."""
    for tag in (ui_locales or "").split():
        if (base := tag.split("-")[0].lower()) in LOCALES:
            return base
    for part in (accept_language or "").split(","):
        if (base := part.split(";")[0].strip().split("-")[0].lower()) in LOCALES:
            return base
    return fallback


def render(template: str, locale: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    text = TEXT[locale]
    html = _env.get_template(template).render(locale=locale, nonce=nonce, t=text, **context)
    return HTMLResponse(html, status_code=status, headers=security_headers(nonce))


def qr_svg(link: str) -> str:
    """The link as an inline SVG QR code (no external service, no script)."""
    return str(segno.make(link, error="m").svg_inline(scale=4, omitsize=True, title="QR"))
