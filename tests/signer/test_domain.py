"""Key rules and the signing service on a software backend (fast; the HSM path is in the API tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tsunagu.db import Database
from tsunagu.events import Outbox
from tsunagu.service.app import migration_runner
from tsunagu.signer.app import service_spec
from tsunagu.signer.domain import errors
from tsunagu.signer.domain.algorithms import Algorithm, SignatureFormat
from tsunagu.signer.domain.backend import Payload
from tsunagu.signer.domain.keys import KeyState, Purpose, check_key_spec, key_id_for
from tsunagu.signer.domain.service import SignerService
from tsunagu.signer.hsm.software_backend import SoftwareBackend
from tsunagu.signer.settings import SignerSettings
from tsunagu.signer.store.models import event_tables


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite+aiosqlite:///{tmp_path / 'signer.db'}"
    db = Database(url)
    await migration_runner(service_spec(SignerSettings()), url).upgrade(db.engine)
    clock, backend = Clock(), SoftwareBackend()
    service = SignerService(
        db,
        backend,
        Outbox(event_tables, source="/tsunagu/signer"),
        grace=timedelta(hours=1),
        max_items=10,
        max_payload_bytes=100,
        clock=clock,
    )
    yield service, clock, backend, db
    await db.dispose()


async def test_lifecycle_next_active_retired_destroyed_with_grace(world):  # type: ignore[no-untyped-def]
    service, clock, backend, _ = world
    first = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.ES256, None)
    assert first.state is KeyState.NEXT and first.kid == key_id_for(first.public_key())
    with pytest.raises(errors.KeyNotActive):
        await service.sign("idp", [Payload(b"x", False)], key_id=first.kid)
    await service.activate("operator", first.kid)
    second = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.ES256, None)
    clock.now += timedelta(minutes=5)
    await service.activate("operator", second.kid)
    states = {k.kid: k.state for k in await service.keys(purpose=Purpose.ID_TOKEN)}
    assert states == {first.kid: KeyState.RETIRED, second.kid: KeyState.ACTIVE}
    with pytest.raises(errors.GracePeriodRunning):
        await service.destroy("operator", first.kid)
    clock.now += timedelta(hours=1)
    destroyed = await service.destroy("operator", first.kid)
    assert destroyed.state is KeyState.DESTROYED and first.hsm_label not in backend.keys
    for illegal in (service.activate, service.retire, service.destroy):
        with pytest.raises(errors.InvalidTransition):
            await illegal("operator", first.kid)


async def test_signing_checks_acl_algorithm_digest_and_limits(world):  # type: ignore[no-untyped-def]
    service, _, _, _ = world
    ca_key = await service.create_key("operator", Purpose.CA_ISSUING, Algorithm.ES256, None)
    await service.activate("operator", ca_key.kid)
    ed_key = await service.create_key("operator", Purpose.LOG, Algorithm.EDDSA, None)
    await service.activate("operator", ed_key.kid)
    with pytest.raises(errors.KeyNotAllowed):
        await service.sign("idp", [Payload(b"x", False)], purpose=Purpose.CA_ISSUING)
    with pytest.raises(errors.AlgorithmMismatch):
        await service.sign(
            "ca", [Payload(b"x", False)], purpose=Purpose.CA_ISSUING, algorithm=Algorithm.PS256
        )
    with pytest.raises(errors.DigestNotAllowed):
        await service.sign("ca", [Payload(b"\0" * 32, True)], purpose=Purpose.LOG)
    with pytest.raises(errors.InvalidDigest):
        await service.sign("ca", [Payload(b"\0" * 20, True)], purpose=Purpose.CA_ISSUING)
    with pytest.raises(errors.ItemTooLarge):
        await service.sign("ca", [Payload(b"\0" * 101, False)], purpose=Purpose.CA_ISSUING)
    with pytest.raises(errors.BatchTooLarge):
        await service.sign("ca", [Payload(b"x", False)] * 11, purpose=Purpose.CA_ISSUING)
    with pytest.raises(errors.NoActiveKey):
        await service.sign("consent", [Payload(b"x", False)], purpose=Purpose.RECEIPT)
    _, der = await service.sign(
        "ca", [Payload(b"x", False)], purpose=Purpose.CA_ISSUING, signature_format=SignatureFormat.DER
    )
    assert der[0][0] == 0x30


async def test_refused_signatures_leave_no_audit_event_and_made_ones_do(world):  # type: ignore[no-untyped-def]
    service, _, _, db = world
    key = await service.create_key("operator", Purpose.LOG, Algorithm.ES256, None)
    await service.activate("operator", key.kid)
    with pytest.raises(errors.BatchTooLarge):
        await service.sign("broker", [Payload(b"x", False)] * 11, key_id=key.kid)
    await service.sign("broker", [Payload(b"a", False), Payload(b"b", False)], key_id=key.kid)
    async with db.sessions() as session:
        types = [row for row in (await session.execute(select(event_tables.outbox.c.topic))).scalars()]
    assert types.count("tsunagu.signer.signature") == 1


async def test_a_key_whose_registration_fails_is_removed_from_the_hsm(world, tmp_path: Path):  # type: ignore[no-untyped-def]
    service, _, backend, db = world
    await db.dispose()
    service.db = Database(f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}")  # no registry table
    try:
        with pytest.raises(Exception, match="signing_key"):
            await service.create_key("operator", Purpose.LOG, Algorithm.ES256, None)
    finally:
        await service.db.dispose()
    assert backend.keys == {}


@pytest.mark.parametrize(
    ("algorithm", "size", "expected"),
    [(Algorithm.RS256, None, 2048), (Algorithm.PS256, 3072, 3072), (Algorithm.ES256, None, None)],
)
def test_key_sizes(algorithm: Algorithm, size: int | None, expected: int | None):
    assert check_key_spec(Purpose.LOG, algorithm, size) == expected


def test_rsa_4096_and_sized_ec_keys_are_refused():
    with pytest.raises(errors.InvalidKeySpec):
        check_key_spec(Purpose.LOG, Algorithm.RS256, 4096)
    with pytest.raises(errors.InvalidKeySpec):
        check_key_spec(Purpose.LOG, Algorithm.EDDSA, 256)


async def test_id_tokens_have_one_active_key_per_algorithm(world):  # type: ignore[no-untyped-def]
    service, clock, _, _ = world
    es = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.ES256, None)
    await service.activate("operator", es.kid)
    rs = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.RS256, None)
    await service.activate("operator", rs.kid)
    states = {k.kid: k.state for k in await service.keys(purpose=Purpose.ID_TOKEN)}
    assert states == {es.kid: KeyState.ACTIVE, rs.kid: KeyState.ACTIVE}

    # Selection by purpose and algorithm; without an algorithm, ES256 (first in the order).
    for algorithm, expected in ((Algorithm.RS256, rs.kid), (Algorithm.ES256, es.kid), (None, es.kid)):
        key, _ = await service.sign(
            "idp", [Payload(b"jwt", False)], purpose=Purpose.ID_TOKEN, algorithm=algorithm
        )
        assert key.kid == expected
    with pytest.raises(errors.AlgorithmMismatch):
        await service.sign(
            "idp", [Payload(b"jwt", False)], purpose=Purpose.ID_TOKEN, algorithm=Algorithm.PS256
        )

    # Rotating the RS256 key retires only the RS256 one; no-algorithm callers stay on ES256.
    clock.now += timedelta(minutes=1)
    rs2 = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.RS256, None)
    await service.activate("operator", rs2.kid)
    states = {k.kid: k.state for k in await service.keys(purpose=Purpose.ID_TOKEN)}
    assert states == {es.kid: KeyState.ACTIVE, rs.kid: KeyState.RETIRED, rs2.kid: KeyState.ACTIVE}
    key, _ = await service.sign("idp", [Payload(b"jwt", False)], purpose=Purpose.ID_TOKEN)
    assert key.kid == es.kid
    key, _ = await service.sign(
        "idp", [Payload(b"jwt", False)], purpose=Purpose.ID_TOKEN, algorithm=Algorithm.RS256
    )
    assert key.kid == rs2.kid


async def test_other_purposes_keep_one_active_key_whatever_the_algorithm(world):  # type: ignore[no-untyped-def]
    service, _, _, _ = world
    es = await service.create_key("operator", Purpose.CA_ISSUING, Algorithm.ES256, None)
    await service.activate("operator", es.kid)
    ps = await service.create_key("operator", Purpose.CA_ISSUING, Algorithm.PS256, None)
    await service.activate("operator", ps.kid)  # a rollover to another algorithm
    states = {k.kid: k.state for k in await service.keys(purpose=Purpose.CA_ISSUING)}
    assert states == {es.kid: KeyState.RETIRED, ps.kid: KeyState.ACTIVE}


async def test_the_database_refuses_two_active_keys_of_one_purpose_and_algorithm(world):  # type: ignore[no-untyped-def]
    from sqlalchemy import update
    from sqlalchemy.exc import IntegrityError

    from tsunagu.signer.store.models import signing_key

    service, _, _, db = world
    first = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.ES256, None)
    await service.activate("operator", first.kid)
    second = await service.create_key("operator", Purpose.ID_TOKEN, Algorithm.ES256, None)
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await session.execute(
                update(signing_key).where(signing_key.c.kid == second.kid).values(state="active")
            )
