"""The hot status read (``certificate_by_serial``: every validation by idp and consent) gives the
same record on PostgreSQL, where it bypasses the ORM, as on SQLite, where it does not."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures.services import sqlite_url
from tsunagu.ca.store.models import metadata
from tsunagu.ca.store.repository import CaRepository, CertificateRecord, certificate_by_serial
from tsunagu.db import Database
from tsunagu.devstack.postgres import scratch_database

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_certificate_by_serial_is_the_same_record_on_both_databases(
    tmp_path: Path, backend: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            url = sqlite_url(tmp_path, "ca")
        else:
            url = await stack.enter_async_context(scratch_database("tsunagu_ca_status"))
        db = Database(url)
        stack.push_async_callback(db.dispose)
        async with db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with db.transaction() as session:
            repository = CaRepository(session)
            await repository.add_authority(
                id="issuing-1",
                kind="issuing",
                parent_id=None,
                key_id="k1",
                algorithm="ES256",
                certificate_der=b"\x30\x00",
                state="current",
                not_after=NOW + timedelta(days=3650),
                created_at=NOW,
            )
            for serial, revoked in (("0a1b", None), ("0c2d", NOW + timedelta(hours=1))):
                await repository.add_certificate(
                    serial=serial,
                    issuer_id="issuing-1",
                    user_number="1234567890123456",
                    device_id="dev-1",
                    kind="signing",
                    app_id=None,
                    identifier_name=f"name-{serial}",
                    spki_sha256=serial * 16,
                    not_before=NOW,
                    not_after=NOW + timedelta(days=365),
                    certificate_der=bytes.fromhex("3082" + serial),
                    issued_at=NOW,
                    revoked_at=revoked,
                    revocation_reason="keyCompromise" if revoked else None,
                )
        assert (db.direct is None) == (backend == "sqlite")
        good = await certificate_by_serial(db, "0a1b")
        assert good == CertificateRecord(
            "0a1b",
            "issuing-1",
            "1234567890123456",
            "dev-1",
            "signing",
            None,
            "name-0a1b",
            NOW,
            NOW + timedelta(days=365),
            bytes.fromhex("30820a1b"),
            NOW,
            None,
            None,
        )
        revoked = await certificate_by_serial(db, "0c2d")
        assert revoked is not None
        assert revoked.revoked_at == NOW + timedelta(hours=1) and revoked.revoked_at.tzinfo is not None
        assert revoked.revocation_reason == "keyCompromise"
        assert await certificate_by_serial(db, "ffff") is None
        async with db.sessions() as session:  # the ORM read agrees
            assert await CaRepository(session).certificate("0c2d") == revoked
