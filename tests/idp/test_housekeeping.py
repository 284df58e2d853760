"""Spent single-use records are swept; live ones and login evidence stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from tests.idp.conftest import IdpHarness
from tests.idp.rp import register_rp
from tsunagu.idp.store.models import pushed_request, seen_jti
from tsunagu.idp.store.replay import first_use, purge_spent


async def test_expired_jti_and_pushed_requests_are_swept(idp: IdpHarness) -> None:
    rp = await register_rp(idp.client, idp.auth())
    now = datetime.now(UTC)
    db = idp.app.state.runtime.db
    async with db.transaction() as session:
        assert await first_use(session, "client", "rp-1", "old-jti", now - timedelta(minutes=1))
        assert await first_use(session, "client", "rp-1", "live-jti", now + timedelta(minutes=5))
        assert not await first_use(session, "client", "rp-1", "live-jti", now + timedelta(minutes=5))
        await session.execute(
            insert(pushed_request).values(
                request_uri_hash="a" * 64,
                client_id=rp.client_id,
                parameters={},
                expires_at=now - timedelta(days=2),
            )
        )
        await session.execute(
            insert(pushed_request).values(
                request_uri_hash="b" * 64,
                client_id=rp.client_id,
                parameters={},
                expires_at=now - timedelta(hours=1),
            )
        )
    async with db.transaction() as session:
        assert await purge_spent(session, now, timedelta(days=1)) == 2
    assert [row["jti"] for row in await idp.rows("seen_jti")] == ["live-jti"]
    assert [row["request_uri_hash"] for row in await idp.rows("pushed_request")] == ["b" * 64]
    # A swept jti is past its exp: an assertion carrying it is refused on exp anyway.
    assert seen_jti.name == "seen_jti"
