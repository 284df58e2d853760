"""The examples' pages: plain HTML, Japanese first with English under it, a strict CSP."""

from __future__ import annotations

import json
from html import escape
from typing import TYPE_CHECKING, Any

from starlette.responses import HTMLResponse

from examples.kit.config import RpConfig

if TYPE_CHECKING:
    from examples.kit.app import Example

CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

LAYOUT = """<!doctype html>
<html lang="ja">
<head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,"Noto Sans CJK JP",sans-serif;margin:2rem;max-width:46rem}}

.en{{color:#555;font-size:.9em}}
.box{{border:1px solid #ccd;border-radius:6px;padding:.75rem;margin:.75rem 0}}
code{{word-break:break-all}} .refused{{background:#fff3f3}} .ok{{background:#f3fff5}}</style></head>
<body><h1>{title}</h1><p class="en">{title_en}</p>{body}</body></html>"""


def _page(config: RpConfig, body: str, status: int = 200) -> HTMLResponse:
    html = LAYOUT.format(title=escape(config.title_ja), title_en=escape(config.title_en), body=body)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def _value(value: Any) -> str:
    return f"<code>{escape(json.dumps(value, ensure_ascii=False))}</code>"


def render(example: Example, config: RpConfig, view: dict[str, Any] | None) -> HTMLResponse:
    about = f"<p>{escape(example.about_ja)}</p><p class='en'>{escape(example.about_en)}</p>"
    if view is None:
        login = (
            "<p><a href='/login'>マイナンバーカードでログイン(Tsunagu)</a>"
            "<span class='en'> — log in with the My Number Card (Tsunagu)</span></p>"
        )
        return _page(config, about + login)
    parts = [about, f"<p>ログイン中 / logged in — sub <code>{escape(view['sub'])}</code></p>"]
    if view["data"] is not None:
        if view["status"] == 200:
            rows = "".join(f"<li>{escape(k)}: {_value(v)}</li>" for k, v in view["data"].items())
            parts.append(f"<div class='box ok'><p>連携されたデータ / shared data</p><ul>{rows}</ul></div>")
        else:
            parts.append(
                f"<div class='box refused'><p>データは提供されませんでした / no data: "
                f"{escape(str(view['refused']))} (HTTP {view['status']})</p></div>"
            )
    if view["notices"]:
        rows = "".join(f"<li>{escape(str(n['item']))}: {_value(n['value'])}</li>" for n in view["notices"])
        parts.append(f"<div class='box ok'><p>変更のお知らせ / change notices</p><ul>{rows}</ul></div>")
    if example.diary:
        rows = "".join(f"<li>{escape(entry)}</li>" for entry in view["diary"])
        parts.append(
            f"<div class='box'><p>生活習慣の記録 / habits</p><ul>{rows}</ul>"
            "<form method='post' action='/diary'><input name='entry' maxlength='500'>"
            "<button>記録 / record</button></form></div>"
        )
    parts.append("<form method='post' action='/logout'><button>ログアウト / log out</button></form>")
    return _page(config, "".join(parts))


def failure(config: RpConfig, error: str, description: str, status: int = 400) -> HTMLResponse:
    body = (
        f"<div class='box refused'><p>ログインできませんでした / the login did not complete: "
        f"<code>{escape(error)}</code></p><p class='en'>{escape(description)}</p>"
        "<p><a href='/'>戻る / back</a></p></div>"
    )
    return _page(config, body, status)
