"""Headers of the platform's server-rendered pages (idp login, consent dashboard)."""

from __future__ import annotations


def security_headers(nonce: str) -> dict[str, str]:
    """A strict nonce CSP (no inline code without the nonce, no framing, no outside origins) and
    no caching: the pages show personal choices and one-time codes."""
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
            "frame-ancestors 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
