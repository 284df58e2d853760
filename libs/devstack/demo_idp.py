"""Demo chapter: a municipality registers a relying party; a citizen logs in to it without a
password — the browser shows a QR code, the phone's wallet approves with its authentication key —
and the app gets an ID token signed in the HSM, with a pairwise subject; refresh tokens rotate and
a reused one revokes the family; logging out ends the session."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.wallet import Enrolled, SandboxCard, decide_login, enroll, fetch_login

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class _App:
    """A relying party as an app developer would write it (private_key_jwt, PKCE)."""

    def __init__(self, client_id: str, key: ECKey, redirect_uri: str) -> None:
        self.client_id = client_id
        self.key = key
        self.redirect_uri = redirect_uri

    def assertion(self, audience: str) -> dict[str, str]:
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(16),
        }
        token = jwt.encode({"alg": "ES256", "kid": self.key.kid}, claims, self.key)
        return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}


async def _register(
    idp: httpx.AsyncClient, operator: httpx.Auth, name_ja: str, name_en: str, host: str
) -> _App:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    redirect_uri = f"https://{host}/callback"
    response = await idp.post(
        "/admin/v1/tenants/ebetsu/clients",
        json={
            "redirect_uris": [redirect_uri],
            "client_name#ja": name_ja,
            "client_name#en": name_en,
            "client_name": name_en,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
        },
        auth=operator,
    )
    response.raise_for_status()
    return _App(response.json()["client_id"], key, redirect_uri)


def _query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def _login(
    idp: httpx.AsyncClient, browser: httpx.AsyncClient, app: _App, credential: Any, say: Callable[[str], None]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """PAR → browser → wallet → code → tokens; returns (token response, ID token claims)."""
    issuer = str(idp.base_url).rstrip("/")
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    nonce, state = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    pushed = await idp.post(
        "/par",
        data={
            "response_type": "code",
            "client_id": app.client_id,
            "redirect_uri": app.redirect_uri,
            "scope": "openid profile offline_access",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "ui_locales": "ja",
            **app.assertion(issuer),
        },
    )
    pushed.raise_for_status()
    started = await browser.get(
        "/authorize?" + urlencode({"client_id": app.client_id, "request_uri": pushed.json()["request_uri"]})
    )
    location = started.headers["location"]
    if location.startswith(app.redirect_uri):
        say("   the browser's IdP session logs the citizen in at once (single sign-on, no wallet step)")
    else:
        tx = location.removeprefix("/login/")
        page = await browser.get(f"/login/{tx}")
        say(f"   the login page shows a QR code (tsunagu://login?tx={tx[:8]}…) — HTTP {page.status_code}")
        transaction = await fetch_login(idp, tx)
        say(
            f"   the wallet shows: {transaction['client']['name_ja']} asks for "
            f"{', '.join(transaction['claims']) or 'sub only'}; code {transaction['display_code']}"
        )
        await decide_login(idp, transaction, credential)
        location = (await browser.get(f"/login/{tx}/complete")).headers["location"]
    answer = _query(location)
    assert answer["state"] == state and answer["iss"] == issuer
    tokens = await idp.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": app.redirect_uri,
            "code_verifier": verifier,
            **app.assertion(issuer + "/token"),
        },
    )
    tokens.raise_for_status()
    keys = KeySet.import_key_set((await idp.get("/jwks")).json())
    claims = dict(jwt.decode(tokens.json()["id_token"], keys).claims)
    assert claims["nonce"] == nonce and claims["aud"] == app.client_id
    return tokens.json(), claims


async def run_idp_chapter(
    jlis_url: str, idp_url: str, ca_url: str, credentials_dir: Path, say: Callable[[str], None]
) -> Enrolled | None:
    """The chapter; returns the enrolled citizen (the next chapters continue with them) or None."""
    operator = ServiceTokenAuth(
        ServiceTokenIssuer("operator", load_private_key(credentials_dir / "operator.key.pem")), "idp"
    )
    async with (
        httpx.AsyncClient(base_url=jlis_url, timeout=30) as jlis,
        httpx.AsyncClient(base_url=ca_url, timeout=30) as ca,
        httpx.AsyncClient(base_url=idp_url, timeout=30) as idp,
        httpx.AsyncClient(base_url=idp_url, timeout=30) as browser,
    ):
        issued = (
            await jlis.post(
                "/cards",
                json={
                    "name": "江別 一郎",
                    "address": "北海道江別市高砂町6番地",
                    "birth_date": "1980-07-07",
                    "sex": "1",
                },
            )
        ).json()
        citizen = await enroll(ca, SandboxCard(jlis, issued["card_id"]))
        say(f"12. 市民がスマホを登録 / a citizen enrolls a phone (user number …{citizen.user_number[-4:]})")
        tenant = await idp.post(
            "/admin/v1/tenants",
            json={"id": "ebetsu", "name_ja": "江別市", "name_en": "Ebetsu City"},
            auth=operator,
        )
        if tenant.status_code not in (201, 409):
            say(f"   ✗ tenant: {tenant.status_code} {tenant.text[:200]}")
            return None
        health = await _register(
            idp, operator, "江別市 健康アプリ", "Ebetsu health app", "health.ebetsu.example"
        )
        bank = await _register(idp, operator, "北海道 みらい銀行", "Hokkaido Mirai Bank", "bank.example")
        say("13. 江別市がサービスを登録 / Ebetsu registers two relying parties (private_key_jwt)")
        say("14. パスワードなしでログイン / log in without a password: PAR → QR → wallet approves")
        tokens, claims = await _login(idp, browser, health, citizen.authentication, say)
        say(
            f"   ✓ ID token signed in the HSM ({claims['acr']}, amr {claims['amr']}); "
            f"pairwise sub {claims['sub'][:10]}… — not the user number"
        )
        userinfo = await idp.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        say(f"   userinfo: {sorted(userinfo.json())} — no consent recorded yet, so nothing beyond sub")
        _, bank_claims = await _login(idp, browser, bank, citizen.authentication, say)
        say(
            f"   the bank (another sector) sees another sub: "
            f"{bank_claims['sub'][:10]}… ≠ {claims['sub'][:10]}…"
        )
        if bank_claims["sub"] == claims["sub"]:
            return None
        say("15. リフレッシュトークンの再利用検知 / refresh tokens rotate; a reused one revokes the family")
        issuer = idp_url.rstrip("/")
        refreshed = await idp.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **health.assertion(issuer + "/token"),
            },
        )
        reused = await idp.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                **health.assertion(issuer + "/token"),
            },
        )
        newest = await idp.post(
            "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refreshed.json().get("refresh_token", ""),
                **health.assertion(issuer + "/token"),
            },
        )
        say(
            f"   rotate → {refreshed.status_code}; reuse the old one → {reused.status_code} "
            f"{reused.json().get('error')}; the rotated one is now revoked too → {newest.status_code}"
        )
        if refreshed.status_code != 200 or reused.status_code != 400 or newest.status_code != 400:
            return None
        logout = await browser.get("/logout", params={"id_token_hint": tokens["id_token"]})
        after = await browser.get(
            "/authorize?"
            + urlencode(
                {
                    "response_type": "code",
                    "client_id": health.client_id,
                    "redirect_uri": health.redirect_uri,
                    "scope": "openid",
                    "prompt": "none",
                    "code_challenge": "x" * 43,
                    "code_challenge_method": "S256",
                }
            )
        )
        error = _query(after.headers.get("location", "")).get("error")
        say(f"16. ログアウト / logout → HTTP {logout.status_code}; a silent login afterwards → {error}")
        return citizen if error == "login_required" else None
