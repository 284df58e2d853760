"""Logout on the real stack: RP-initiated logout (hint → redirect with state; unregistered redirect
→ our page; no hint → a confirmation form with CSRF), back-channel logout tokens POSTed to a real
HTTP receiver on 127.0.0.1 and verified against the idp's keys, retried while the receiver is down,
and the certificate-revoked consumer ending sessions and grants."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from tests.idp.conftest import ISSUER, enroll_citizen
from tests.idp.rp import Pkce, authorization_parameters, browser_login, exchange, register_rp
from tests.idp.test_sessions import ACR, AMR, received, register_client
from tsunagu.devstack.ports import free_port
from tsunagu.devstack.postgres import scratch_database
from tsunagu.events.schemas.ca import CertificateRevokedV1
from tsunagu.idp.domain.logout import BACKCHANNEL_LOGOUT_EVENT, BackchannelLogout
from tsunagu.idp.events import Late, consumers
from tsunagu.idp.store.models import event_tables
from tsunagu.wallet import revoke

LOGGED_OUT = "https://rp.example/logged-out"


class Receiver:
    """An RP's back-channel logout endpoint: a real HTTP server that records what it is sent."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[dict[str, Any]] = []
        self.status = 200
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backchannel-logout"

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.received.append({"content_type": request.content_type, **{k: str(v) for k, v in form.items()}})
        return web.Response(status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/backchannel-logout", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def login(idp: Any, client: Any, *, user_number: str, serial: str) -> tuple[str, str, str]:
    """What the login's completion does: a session, the client joins it, a grant in it.
    Returns (sid, cookie, grant id)."""
    now = datetime.now(UTC)
    async with idp.app.state.runtime.db.transaction() as db:
        sid, cookie = await idp.services.sessions.create(
            db, user_number=user_number, certificate_serial=serial, auth_time=now, acr=ACR, amr=AMR
        )
        await idp.services.sessions.add_client(db, sid, client.client_id)
        await idp.services.tokens.issue_code(
            db,
            client=client,
            user_number=user_number,
            session_id=sid,
            certificate_serial=serial,
            scope="openid",
            claims=None,
            authorization_details=None,
            auth_time=now,
            acr=ACR,
            amr=AMR,
            redirect_uri=client.redirect_uris[0],
            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            nonce="n-0S6_WzA2Mj",
            dpop_jkt=None,
        )
    grants = [g for g in await idp.rows("grant") if g["session_id"] == sid]
    return sid, cookie, grants[0]["id"]


async def id_token(idp: Any, client: Any, sid: str | None, user_number: str, *, expired: bool = False) -> str:
    now = int(time.time()) - (3600 if expired else 0)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": idp.services.subjects.subject(client.sector_identifier, user_number),
        "aud": client.client_id,
        "iat": now,
        "exp": now + 600,
        "auth_time": now,
        "nonce": "n-0S6_WzA2Mj",
    }
    if sid is not None:
        claims["sid"] = sid
    token: str = await idp.services.token_signer.sign_jwt(claims, typ="JWT")
    return token


def with_cookie(cookie: str) -> dict[str, str]:
    return {"Cookie": f"tsunagu_session={cookie}"}


async def idp_keys(idp: Any) -> KeySet:
    return KeySet.import_key_set(await idp.services.token_signer.jwks())


async def check_logout_token(idp: Any, token: str, client: Any, sid: str, user_number: str) -> dict[str, Any]:
    """Back-Channel Logout 1.0 §2.4 / §2.6 as an RP would check it."""
    header = jws.extract_compact(token.encode()).protected
    assert header["typ"] == "logout+jwt" and header["alg"] == "ES256" and header["kid"]
    decoded = jwt.decode(token, await idp_keys(idp), algorithms=["ES256"])
    claims = dict(decoded.claims)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == client.client_id
    assert claims["sub"] == idp.services.subjects.subject(client.sector_identifier, user_number)
    assert claims["sid"] == sid
    assert claims["events"] == {BACKCHANNEL_LOGOUT_EVENT: {}}
    assert "nonce" not in claims
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    now = time.time()
    assert now - 60 <= claims["iat"] <= now + 5
    assert claims["iat"] < claims["exp"] <= claims["iat"] + 120
    return claims


async def test_logout_with_a_hint_ends_the_session_and_returns_with_state(idp, receiver) -> None:  # type: ignore[no-untyped-def]
    client = await register_client(
        idp, backchannel_logout_uri=receiver.url, post_logout_redirect_uris=[LOGGED_OUT, LOGGED_OUT + "?x=1"]
    )
    other = await register_client(idp)  # took part too, but has no back-channel endpoint
    user = "2222333344445555"
    sid, cookie, grant_id = await login(idp, client, user_number=user, serial="0a0b")
    async with idp.app.state.runtime.db.transaction() as db:
        await idp.services.sessions.add_client(db, sid, other.client_id)
    hint = await id_token(idp, client, sid, user, expired=True)  # expired hints are fine
    response = await idp.client.get(
        "/logout",
        params={"id_token_hint": hint, "post_logout_redirect_uri": LOGGED_OUT + "?x=1", "state": "st@te 1"},
        headers=with_cookie(cookie),
    )
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LOGGED_OUT
    assert parse_qs(location.query) == {"x": ["1"], "state": ["st@te 1"]}
    assert (
        'tsunagu_session=""' in response.headers["set-cookie"]
        and "Max-Age=0" in response.headers["set-cookie"]
    )
    assert await idp.services.sessions.current(cookie) is None
    [session_row] = [s for s in await idp.rows("idp_session") if s["id"] == sid]
    assert session_row["end_reason"] == "logout"
    [grant] = [g for g in await idp.rows("grant") if g["id"] == grant_id]
    assert grant["revoked_at"] is not None and grant["revoked_reason"] == "logout"
    [event] = await idp.events("tsunagu.idp.session.")
    assert event["data"]["session_id"] == sid and event["data"]["reason"] == "logout"
    assert event["data"]["client_ids"] == [client.client_id] and event["subject"] == user

    await eventually(lambda: _async(receiver.received))
    [delivered] = receiver.received
    assert delivered["content_type"] == "application/x-www-form-urlencoded"
    await check_logout_token(idp, delivered["logout_token"], client, sid, user)
    rows = await eventually(lambda: _delivered(idp))
    assert [(r["client_id"], r["attempts"]) for r in rows] == [(client.client_id, 1)]

    # The same hint again: nothing left to end, the browser still goes back (no second logout).
    again = await idp.client.get(
        "/logout",
        params={"id_token_hint": hint, "post_logout_redirect_uri": LOGGED_OUT, "state": "2"},
        headers=with_cookie(cookie),
    )
    assert again.status_code == 303 and again.headers["location"] == LOGGED_OUT + "?state=2"
    assert len(await idp.events("tsunagu.idp.session.")) == 1


async def _async(value: Any) -> Any:
    return value


async def _delivered(idp: Any) -> list[dict[str, Any]]:
    rows = await idp.rows("logout_delivery")
    return rows if rows and all(r["delivered"] for r in rows) else []


async def test_an_unregistered_redirect_or_a_bad_hint_gets_our_page_never_a_redirect(idp) -> None:  # type: ignore[no-untyped-def]
    client = await register_client(idp, post_logout_redirect_uris=[LOGGED_OUT])
    user = "3333444455556666"
    sid, cookie, _ = await login(idp, client, user_number=user, serial="0c0d")
    hint = await id_token(idp, client, sid, user)

    # Someone else's key, or an altered token: an error page, the session stays.
    key = ECKey.generate_key("P-256", private=True)
    forged = jwt.encode(
        {"alg": "ES256", "kid": "x"}, {"iss": ISSUER, "aud": client.client_id, "sid": sid}, key
    )
    tampered = hint[:-4] + ("AAAA" if not hint.endswith("AAAA") else "BBBB")
    for bad in (forged, tampered, "not-a-jwt"):
        response = await idp.client.get("/logout", params={"id_token_hint": bad}, headers=with_cookie(cookie))
        assert response.status_code == 400 and "location" not in response.headers
        assert "invalid_request" in response.text
    # client_id must agree with the hint's audience.
    other = await register_client(idp, post_logout_redirect_uris=[LOGGED_OUT])
    response = await idp.client.get(
        "/logout", params={"id_token_hint": hint, "client_id": other.client_id}, headers=with_cookie(cookie)
    )
    assert response.status_code == 400 and "location" not in response.headers
    assert await idp.services.sessions.current(cookie) is not None

    # A valid hint but a redirect URI the client never registered: logged out, shown our page.
    response = await idp.client.get(
        "/logout",
        params={"id_token_hint": hint, "post_logout_redirect_uri": "https://evil.example/", "state": "s"},
        headers=with_cookie(cookie),
    )
    assert response.status_code == 200 and "location" not in response.headers
    assert 'data-state="ended"' in response.text and "evil.example" not in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert await idp.services.sessions.current(cookie) is None

    # A redirect URI without anything naming the client: no redirect either.
    response = await idp.client.get("/logout", params={"post_logout_redirect_uri": LOGGED_OUT})
    assert response.status_code == 200 and "location" not in response.headers
    assert 'data-state="none"' in response.text


def _form_fields(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html))


async def test_without_a_hint_the_citizen_confirms_in_a_csrf_protected_form(idp) -> None:  # type: ignore[no-untyped-def]
    client = await register_client(
        idp,
        post_logout_redirect_uris=[LOGGED_OUT],
        client_name="Health app",
        **{"client_name#ja": "健康アプリ"},
    )
    user = "4444555566667777"
    sid, cookie, grant_id = await login(idp, client, user_number=user, serial="0e0f")
    sessions = idp.services.sessions

    page = await idp.client.get(
        "/logout",
        params={"client_id": client.client_id, "post_logout_redirect_uri": LOGGED_OUT, "state": "abc"},
        headers=with_cookie(cookie),
    )
    assert page.status_code == 200, page.text
    assert "ログアウトしますか" in page.text and "健康アプリ" in page.text  # Japanese by default
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert not re.search(r"(src|href)=\"https?://", page.text)  # nothing from elsewhere
    fields = _form_fields(page.text)
    assert fields["client_id"] == client.client_id and fields["state"] == "abc"
    assert fields["post_logout_redirect_uri"] == LOGGED_OUT and len(fields["csrf"]) == 64
    assert await sessions.current(cookie) is not None

    english = await idp.client.get(
        "/logout", params={"client_id": client.client_id, "ui_locales": "en"}, headers=with_cookie(cookie)
    )
    assert "Log out of Tsunagu ID?" in english.text and 'lang="en"' in english.text

    # A hint for another session (someone else's ID token) also asks first.
    other_hint = await id_token(idp, client, "another-session-id", user)
    asked = await idp.client.get("/logout", params={"id_token_hint": other_hint}, headers=with_cookie(cookie))
    assert asked.status_code == 200 and "logout-yes" in asked.text

    form = {**fields, "action": "logout"}
    # Without the session cookie, or with another CSRF token: nothing ends.
    forged = await idp.client.post(
        "/logout/confirm", data={**form, "csrf": "0" * 64}, headers=with_cookie(cookie)
    )
    assert forged.status_code == 403
    cookieless = await idp.client.post("/logout/confirm", data=form)
    # (no session in this browser: nothing to end, back to the client)
    assert cookieless.status_code == 303 and "set-cookie" not in cookieless.headers
    cancelled = await idp.client.post(
        "/logout/confirm", data={**fields, "action": "cancel"}, headers=with_cookie(cookie)
    )
    assert cancelled.status_code == 200 and 'data-state="cancelled"' in cancelled.text
    assert await sessions.current(cookie) is not None
    assert not await idp.events("tsunagu.idp.session.")

    done = await idp.client.post("/logout/confirm", data=form, headers=with_cookie(cookie))
    assert done.status_code == 303 and done.headers["location"] == LOGGED_OUT + "?state=abc"
    assert await sessions.current(cookie) is None
    [grant] = [g for g in await idp.rows("grant") if g["id"] == grant_id]
    assert grant["revoked_reason"] == "logout"
    [event] = await idp.events("tsunagu.idp.session.")
    assert event["data"]["session_id"] == sid and event["data"]["client_ids"] == []


async def test_a_receiver_that_is_down_gets_the_logout_when_it_is_back(make_idp) -> None:  # type: ignore[no-untyped-def]
    down = Receiver()  # its port is chosen, nothing listens yet
    async with make_idp(backchannel_logout_retry_initial_s=0.3, backchannel_logout_retry_max_s=1.0) as idp:
        client = await register_client(idp, backchannel_logout_uri=down.url)
        user = "5555666677770000"
        sid, _cookie, _ = await login(idp, client, user_number=user, serial="1a1b")
        async with idp.app.state.runtime.db.transaction() as db:
            assert await idp.services.sessions.end(db, sid, "logout") == [client.client_id]

        async def failed_twice() -> bool:
            rows = await idp.rows("logout_delivery")
            return bool(rows) and rows[0]["attempts"] >= 2 and not rows[0]["delivered"]

        await eventually(failed_twice)
        [row] = await idp.rows("logout_delivery")
        assert row["last_error"] and "ConnectError" in row["last_error"]

        await down.start()
        try:
            rows = await eventually(lambda: _delivered(idp))
            assert rows[0]["attempts"] >= 3
            [delivered] = down.received
            await check_logout_token(idp, delivered["logout_token"], client, sid, user)
        finally:
            await down.stop()


async def test_a_receiver_answering_errors_is_retried_then_given_up(make_idp, receiver) -> None:  # type: ignore[no-untyped-def]
    receiver.status = 500
    async with make_idp(
        backchannel_logout_retry_initial_s=0.1,
        backchannel_logout_retry_max_s=0.2,
        backchannel_logout_max_attempts=3,
    ) as idp:
        client = await register_client(idp, backchannel_logout_uri=receiver.url)
        sid, _, _ = await login(idp, client, user_number="5555666677771111", serial="1c1d")
        async with idp.app.state.runtime.db.transaction() as db:
            await idp.services.sessions.end(db, sid, "logout")

        async def given_up() -> bool:
            rows = await idp.rows("logout_delivery")
            return bool(rows) and rows[0]["attempts"] == 3

        await eventually(given_up)
        await asyncio.sleep(0.5)
        [row] = await idp.rows("logout_delivery")
        assert row["attempts"] == 3 and not row["delivered"] and row["last_error"] == "HTTP 500"
        assert len(receiver.received) == 3


async def test_a_certificate_revoked_at_the_ca_ends_its_sessions_and_grants(idp, receiver) -> None:  # type: ignore[no-untyped-def]
    person = await enroll_citizen(idp.stack, name="失効 花子")
    serial = person.authentication.serial
    client = await register_client(idp, backchannel_logout_uri=receiver.url)
    first, first_cookie, first_grant = await login(idp, client, user_number=person.user_number, serial=serial)
    second, _, second_grant = await login(idp, client, user_number=person.user_number, serial=serial)
    kept, kept_cookie, kept_grant = await login(idp, client, user_number=person.user_number, serial="ffee")
    # A grant issued with the certificate outside any session (CIBA).
    async with idp.app.state.runtime.db.transaction() as db:
        await idp.services.tokens.issue_code(
            db,
            client=client,
            user_number=person.user_number,
            session_id=None,
            certificate_serial=serial,
            scope="openid",
            claims=None,
            authorization_details=None,
            auth_time=datetime.now(UTC),
            acr=ACR,
            amr=AMR,
            redirect_uri=client.redirect_uris[0],
            code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            nonce=None,
            dpop_jkt=None,
        )

    # The citizen revokes the phone's authentication certificate at the real CA.
    async with httpx.AsyncClient(base_url=idp.stack.urls["ca"], timeout=30) as ca:
        assert await revoke(ca, person, serials=[serial]) == [serial]
    event = CertificateRevokedV1(
        user_number=person.user_number,
        serial=serial,
        issuer_id="issuing",
        kind="authentication",
        device_id=person.device_id,
        reason="keyCompromise",
        revoked_at=datetime.now(UTC),
        actor="citizen",
    )
    [spec] = [c for c in consumers(event_tables, Late(idp.services)) if c.name == "ca"]
    handler = spec.handlers[CertificateRevokedV1.event_type]
    for _ in range(2):  # a redelivery changes nothing
        async with idp.app.state.runtime.db.transaction() as db:
            await handler(db, received(event))

    sessions = {s["id"]: s for s in await idp.rows("idp_session")}
    assert sessions[first]["end_reason"] == sessions[second]["end_reason"] == "certificate-revoked"
    assert sessions[kept]["ended_at"] is None
    assert await idp.services.sessions.current(first_cookie) is None
    assert await idp.services.sessions.current(kept_cookie) is not None
    grants = await idp.rows("grant")
    revoked = {g["id"] for g in grants if g["revoked_at"] is not None}
    assert {first_grant, second_grant} <= revoked and kept_grant not in revoked
    assert len([g for g in grants if g["certificate_serial"] == serial and g["revoked_at"] is None]) == 0
    assert all(g["revoked_reason"] == "certificate-revoked" for g in grants if g["id"] in revoked)
    events = await idp.events("tsunagu.idp.session.")
    assert sorted(e["data"]["session_id"] for e in events) == sorted([first, second])
    assert all(e["data"]["reason"] == "certificate-revoked" for e in events)

    await eventually(lambda: _async(len(receiver.received) == 2))
    told = set()
    for delivered in receiver.received:
        sid = jwt.decode(delivered["logout_token"], await idp_keys(idp), algorithms=["ES256"]).claims["sid"]
        await check_logout_token(idp, delivered["logout_token"], client, sid, person.user_number)
        told.add(sid)
    assert told == {first, second}


async def test_after_a_real_wallet_login_the_id_token_logs_the_browser_out_everywhere(
    idp, receiver, citizen
) -> None:  # type: ignore[no-untyped-def]
    rp = await register_rp(
        idp.client, idp.auth(), post_logout_redirect_uris=[LOGGED_OUT], backchannel_logout_uri=receiver.url
    )
    pkce = Pkce()
    async with idp.new_client() as browser, idp.new_client() as wallet:
        answer = await browser_login(browser, wallet, citizen, authorization_parameters(rp, pkce))
        tokens = await exchange(idp.client, ISSUER, rp, answer["code"], pkce)
        assert tokens.status_code == 200, tokens.text
        published = KeySet.import_key_set((await idp.client.get("/jwks")).json())
        id_claims = jwt.decode(tokens.json()["id_token"], published).claims
        assert browser.cookies.get("tsunagu_session")  # the session cookie of an http issuer

        response = await browser.get(
            "/logout",
            params={
                "id_token_hint": tokens.json()["id_token"],
                "post_logout_redirect_uri": LOGGED_OUT,
                "state": "bye",
            },
        )
        assert response.status_code == 303 and response.headers["location"] == LOGGED_OUT + "?state=bye"
        assert not browser.cookies.get("tsunagu_session")
        # The next authorization needs the wallet again.
        again = await browser.get("/authorize", params=authorization_parameters(rp, Pkce()))
        assert again.headers["location"].startswith("/login/")

    await eventually(lambda: _async(receiver.received))
    [delivered] = receiver.received
    logout = jwt.decode(delivered["logout_token"], published, algorithms=["ES256"]).claims
    assert logout["sub"] == id_claims["sub"] and logout["sid"] == id_claims["sid"]
    assert logout["aud"] == rp.client_id and logout["iss"] == ISSUER
    introspected = await idp.client.post(
        "/introspect", data={"token": tokens.json()["access_token"], **rp.auth_form(ISSUER + "/introspect")}
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json() == {"active": False}  # the session's grant went with it


async def test_on_postgresql_a_session_ends_once_and_each_logout_is_sent_once(make_idp, receiver) -> None:  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_idp") as url, make_idp(url) as idp:
        client = await register_client(idp, backchannel_logout_uri=receiver.url)
        sessions = idp.services.sessions
        db = idp.app.state.runtime.db
        ids = [(await login(idp, client, user_number="6666777788889999", serial="2a2b"))[0] for _ in range(3)]

        async def logout(sid: str) -> list[str]:
            async with db.transaction() as session:
                return await sessions.end(session, sid, "logout")  # type: ignore[no-any-return]

        async def revoked() -> list[str]:
            async with db.transaction() as session:
                return await sessions.end_for_certificate(session, "2a2b")  # type: ignore[no-any-return]

        # A logout and a revocation race for the same sessions: each ends once, one event each.
        await asyncio.gather(logout(ids[0]), revoked(), logout(ids[1]), revoked())
        ended = await idp.rows("idp_session")
        assert all(row["ended_at"] is not None for row in ended)
        events = await idp.events("tsunagu.idp.session.")
        assert sorted(e["data"]["session_id"] for e in events) == sorted(ids)
        # Two senders (replicas) on the same rows: every logout token is sent exactly once.
        extra = BackchannelLogout(idp.services)
        try:
            await asyncio.gather(extra.deliver_due(), idp.services.backchannel_logout.deliver_due())
            await eventually(lambda: _delivered(idp))
        finally:
            await extra.aclose()
        assert len(await idp.rows("logout_delivery")) == 3
        keys = await idp_keys(idp)
        told = [jwt.decode(r["logout_token"], keys).claims["sid"] for r in receiver.received]
        assert sorted(told) == sorted(ids)

        updates = idp.services.resident_updates
        first = datetime(2026, 5, 1, tzinfo=UTC)
        for at in (first, first.replace(month=4), first):
            async with db.transaction() as session:
                await updates.record(session, "6666777788889999", at)
        assert await updates.updated_at("6666777788889999") == first
