"""IdP sessions on the real stack: created in the caller's transaction, found by cookie (only its
hash is stored), ended once, expired ones refused; the resident-updated consumer."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from tsunagu.events.consumer import ReceivedEvent
from tsunagu.events.schemas.jlis_sync import ResidentUpdatedV1
from tsunagu.idp.domain.clients import Actor
from tsunagu.idp.domain.errors import TenantExists
from tsunagu.idp.domain.sessions import SessionInfo, cookie_name
from tsunagu.idp.events import Late, consumers
from tsunagu.idp.store.models import event_tables, idp_session

AMR = ["hwk", "user", "x509"]
ACR = "urn:tsunagu:acr:jpki-proofed"


async def new_session(
    idp: Any, user_number: str = "1234567890123456", serial: str = "ab12"
) -> tuple[str, str]:
    runtime = idp.app.state.runtime
    async with runtime.db.transaction() as db:
        return await idp.services.sessions.create(  # type: ignore[no-any-return]
            db,
            user_number=user_number,
            certificate_serial=serial,
            auth_time=datetime.now(UTC),
            acr=ACR,
            amr=AMR,
        )


async def register_client(idp: Any, **metadata: Any) -> Any:
    """A public client of tenant ``ebetsu`` registered through the registry (metadata on top)."""
    registry = idp.services.clients
    with contextlib.suppress(TenantExists):
        await registry.create_tenant("ebetsu", "江別市", "Ebetsu")
    data = {"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "none", **metadata}
    return (await registry.register("ebetsu", data, Actor("operator", "test"))).client


def received(payload: Any) -> ReceivedEvent:
    envelope = payload.to_envelope(source="test")
    return ReceivedEvent(envelope=envelope, data=payload, topic=payload.topic, partition=0, offset=0)


async def test_a_session_is_found_by_its_cookie_and_only_its_hash_is_stored(idp) -> None:  # type: ignore[no-untyped-def]
    sid, cookie = await new_session(idp)
    assert len(cookie) == 43 and len(sid) == 43 and sid != cookie
    current = await idp.services.sessions.current(cookie)
    assert isinstance(current, SessionInfo)
    assert (current.sid, current.user_number, current.certificate_serial) == (sid, "1234567890123456", "ab12")
    assert current.acr == ACR and current.amr == AMR
    expected_expiry = datetime.now(UTC) + timedelta(seconds=idp.services.settings.session_ttl_s)
    assert abs((current.expires_at - expected_expiry).total_seconds()) < 30
    [row] = await idp.rows("idp_session")
    assert row["cookie_hash"] == hashlib.sha256(cookie.encode()).hexdigest()
    assert cookie not in {str(value) for value in row.values()}
    for unknown in (None, "", "x" * 43, cookie + "x", "y" * 5000):
        assert await idp.services.sessions.current(unknown) is None


async def test_an_expired_session_is_not_current(idp) -> None:  # type: ignore[no-untyped-def]
    sid, cookie = await new_session(idp)
    async with idp.app.state.runtime.db.transaction() as db:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await db.execute(update(idp_session).where(idp_session.c.id == sid).values(expires_at=past))
    assert await idp.services.sessions.current(cookie) is None
    # The sweep ends it properly (reason expired, an event).
    assert await idp.services.sessions.end_expired() == 1
    [row] = await idp.rows("idp_session")
    assert row["end_reason"] == "expired" and row["ended_at"] is not None
    [event] = await idp.events("tsunagu.idp.session.")
    assert event["data"]["reason"] == "expired" and event["data"]["session_id"] == sid


async def test_clients_join_once_and_an_ended_session_ends_once(idp) -> None:  # type: ignore[no-untyped-def]
    a = (await register_client(idp)).client_id
    b = (await register_client(idp)).client_id
    sid, cookie = await new_session(idp, user_number="1111222233334444")
    sessions = idp.services.sessions
    async with idp.app.state.runtime.db.transaction() as db:
        await sessions.add_client(db, sid, a)
        await sessions.add_client(db, sid, b)
        await sessions.add_client(db, sid, a)
    async with idp.app.state.runtime.db.transaction() as db:
        await sessions.add_client(db, sid, a)  # again, in another transaction
    assert sorted(r["client_id"] for r in await idp.rows("session_client")) == sorted([a, b])
    async with idp.app.state.runtime.db.transaction() as db:
        await sessions.end(db, sid, "logout")
    assert await sessions.current(cookie) is None
    async with idp.app.state.runtime.db.transaction() as db:
        assert await sessions.end(db, sid, "logout") == []
    events = await idp.events("tsunagu.idp.session.")
    assert len(events) == 1
    assert (
        events[0]["data"]["user_number"] == "1111222233334444" and events[0]["subject"] == "1111222233334444"
    )
    assert events[0]["data"]["reason"] == "logout"


async def test_cookie_is_host_prefixed_and_secure_only_over_https(make_idp) -> None:  # type: ignore[no-untyped-def]
    async with make_idp() as idp:  # http issuer (dev and tests): plain name, no Secure
        settings = idp.services.settings
        assert cookie_name(settings, "tsunagu_session") == "tsunagu_session"
        assert idp.services.sessions.cookie_name == "tsunagu_session"
        forced = settings.model_copy(update={"secure_cookies": True})
        assert cookie_name(forced, "tsunagu_session") == "__Host-tsunagu_session"
        https = settings.model_copy(update={"issuer": "https://id.example"})
        assert cookie_name(https, "tsunagu_session") == "__Host-tsunagu_session"
        from fastapi import Response

        response = Response()
        idp.services.sessions.set_cookie(response, "value")
        header = response.headers["set-cookie"]
        assert header.startswith("tsunagu_session=value;")
        assert "HttpOnly" in header and "SameSite=lax" in header and "Path=/" in header
        assert "Secure" not in header
    async with make_idp(secure_cookies=True) as idp:
        response = Response()
        idp.services.sessions.set_cookie(response, "value")
        header = response.headers["set-cookie"]
        assert header.startswith("__Host-tsunagu_session=value;") and "Secure" in header
        assert "Domain" not in header


async def test_resident_updates_are_recorded_once_and_only_move_forward(idp) -> None:  # type: ignore[no-untyped-def]
    [spec] = [c for c in consumers(event_tables, Late(idp.services)) if c.name == "jlis"]
    handler = spec.handlers[ResidentUpdatedV1.event_type]
    updates = idp.services.resident_updates
    assert await updates.updated_at("5555666677778888") is None
    first = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    event = ResidentUpdatedV1(
        user_number="5555666677778888",
        effective_at=first,
        old_jpki_serial="01",
        source="push",
        changed_fields=["address"],
        basic4_available=True,
        new_jpki_serial="02",
    )
    db = idp.app.state.runtime.db
    for _ in range(2):  # the handler is safe to rerun
        async with db.transaction() as session:
            await handler(session, received(event))
    assert await updates.updated_at("5555666677778888") == first
    older = event.model_copy(update={"effective_at": first - timedelta(days=3)})
    async with db.transaction() as session:
        await handler(session, received(older))
    assert await updates.updated_at("5555666677778888") == first
    newer = event.model_copy(update={"effective_at": first + timedelta(days=3)})
    async with db.transaction() as session:
        await handler(session, received(newer))
    assert await updates.updated_at("5555666677778888") == first + timedelta(days=3)
