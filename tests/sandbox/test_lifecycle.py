"""Life events: what each does to the certificates, the CRL and the old → new links."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.sandbox.checks import ATTIME, load, openssl, write_pem
from tests.sandbox.conftest import CardFactory, FakeClock
from tsunagu.jpki import basic4_from_certificate
from tsunagu.sandbox.jlis import JlisSandbox


def _crl(jlis: JlisSandbox, kind: str = "signing") -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(jlis.crl(kind).der)


def _reason(crl: x509.CertificateRevocationList, serial: str) -> x509.ReasonFlags:
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None, f"{serial} is not on the CRL"
    return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason


async def test_move_revokes_the_old_signing_certificate_and_links_it(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    card = issue_card()
    before = _crl(jlis)
    assert before.get_revoked_certificate_by_serial_number(int(card.signing_serial, 16)) is None
    clock.advance(hours=2)
    response = await client.post(
        f"/persons/{card.person_id}/move", json={"address": "大阪府大阪市北区中之島1-3-20"}
    )
    assert response.status_code == 200, response.text
    event = response.json()
    assert (event["type"], event["old_serial"], event["card_id"]) == (
        "move",
        card.signing_serial,
        card.card_id,
    )
    assert event["new_serial"] not in (None, card.signing_serial)
    after = _crl(jlis)
    assert _reason(after, card.signing_serial) == x509.ReasonFlags.affiliation_changed
    entry = after.get_revoked_certificate_by_serial_number(int(card.signing_serial, 16))
    assert entry is not None and entry.revocation_date_utc == clock.now
    assert after.get_revoked_certificate_by_serial_number(int(card.auth_serial, 16)) is None
    new = load(jlis.card(card.card_id).signing_certificate)
    assert basic4_from_certificate(new).address == "大阪府大阪市北区中之島1-3-20"
    assert format(new.serial_number, "x") == event["new_serial"]
    assert new.public_key() == load(card.signing_certificate).public_key()  # same card key
    old = jlis.store.certificate(card.signing_serial)
    assert old is not None and (old.replaced_by, old.replaced_at) == (event["new_serial"], clock.now)
    # the user-authentication certificate survives a move and is on no CRL
    assert jlis.card(card.card_id).auth_serial == card.auth_serial
    assert len(_crl(jlis, "user-auth")) == 0


def test_rename_renew_lose_and_die_use_their_reasons(jlis: JlisSandbox, issue_card: CardFactory) -> None:
    renamed, renewed, lost, dead = issue_card(), issue_card(), issue_card(), issue_card()
    rename = jlis.rename(renamed.person_id, "山田 一郎")
    renew = jlis.renew(renewed.person_id)
    jlis.lose(lost.person_id)
    jlis.die(dead.person_id)
    signing, auth = _crl(jlis), _crl(jlis, "user-auth")
    assert _reason(signing, renamed.signing_serial) == x509.ReasonFlags.affiliation_changed
    assert basic4_from_certificate(load(jlis.card(renamed.card_id).signing_certificate)).name == "山田 一郎"
    assert rename.new_serial is not None
    assert _reason(signing, renewed.signing_serial) == x509.ReasonFlags.superseded
    assert _reason(auth, renewed.auth_serial) == x509.ReasonFlags.superseded
    assert renew.new_auth_serial is not None
    new_card = jlis.card(renewed.card_id)
    assert load(new_card.signing_certificate).public_key() != load(renewed.signing_certificate).public_key()
    assert _reason(signing, lost.signing_serial) == x509.ReasonFlags.key_compromise
    assert _reason(auth, lost.auth_serial) == x509.ReasonFlags.key_compromise
    assert _reason(signing, dead.signing_serial) == x509.ReasonFlags.cessation_of_operation
    assert _reason(auth, dead.auth_serial) == x509.ReasonFlags.cessation_of_operation
    assert (jlis.card(lost.card_id).status, jlis.card(dead.card_id).status) == ("lost", "deceased")
    assert len(signing) == 4 and len(auth) == 3


async def test_events_on_the_dead_the_lost_and_the_unknown_are_refused(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory
) -> None:
    dead, lost = issue_card(), issue_card()
    jlis.die(dead.person_id)
    jlis.lose(lost.person_id)
    snapshot = jlis.store.state.model_dump_json()
    for path, body, status in [
        (f"/persons/{dead.person_id}/move", {"address": "x"}, 409),
        (f"/persons/{dead.person_id}/renew", None, 409),
        (f"/persons/{dead.person_id}/die", None, 409),
        (f"/persons/{lost.person_id}/move", {"address": "x"}, 409),
        ("/persons/nobody/move", {"address": "x"}, 404),
        (f"/persons/{lost.person_id}/move", {"address": ""}, 422),
    ]:
        response = await client.post(path, json=body)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert jlis.store.state.model_dump_json() == snapshot
    # a lost card's holder gets a new card by renewing
    renewed = jlis.renew(lost.person_id)
    assert jlis.card(lost.card_id).status == "active" and renewed.new_serial is not None


def test_openssl_rejects_a_moved_certificate_with_the_crl(
    jlis: JlisSandbox, issue_card: CardFactory, tmp_path: Path
) -> None:
    card = issue_card()
    jlis.move(card.person_id, "福岡県福岡市中央区天神1-8-1")
    root = write_pem(tmp_path / "root.pem", jlis.certificate_pem("root"))
    ca = write_pem(tmp_path / "ca.pem", jlis.certificate_pem("signing"))
    crl = tmp_path / "signing.crl"
    crl.write_bytes(jlis.crl("signing").der)
    base: list[str | Path] = [
        "verify",
        "-attime",
        ATTIME,
        "-crl_check",
        "-CAfile",
        root,
        "-untrusted",
        ca,
        "-CRLfile",
        crl,
    ]
    old = openssl(*base, write_pem(tmp_path / "old.pem", card.signing_certificate))
    assert old.returncode != 0 and "certificate revoked" in old.stdout + old.stderr
    new = openssl(*base, write_pem(tmp_path / "new.pem", jlis.card(card.card_id).signing_certificate))
    assert new.returncode == 0, new.stdout + new.stderr


@pytest.mark.parametrize("event", ["move", "rename", "renew", "lose", "die"])
def test_every_event_is_recorded(jlis: JlisSandbox, issue_card: CardFactory, event: str) -> None:
    card = issue_card()
    args = {"move": ("新住所",), "rename": ("新氏名",)}.get(event, ())
    result = getattr(jlis, event)(card.person_id, *args)
    assert [e.type for e in jlis.store.state.events] == [event]
    assert jlis.store.state.events[0].event_id == result.event_id
