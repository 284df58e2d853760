"""jlis-sync against the J-LIS sandbox: links, OCSP status, pushes and CRLs, each acted on once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.jlis_sync.conftest import Sync, World
from tsunagu.sandbox.jlis.jws import sign_compact
from tsunagu.sandbox.jlis.push import notification_payload

PUSH_URL = "http://jlis-sync.test/v1/jlis/notifications"


def _types(events: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [e["type"].rsplit(".", 1)[1] for e in events]


async def test_link_records_the_card_and_the_basic4_values(world: World, sync: Sync):
    card = world.person()
    linked = await sync.link(world, card, "U-0001")
    assert linked.status_code == 200, linked.text
    assert linked.json()["jpki_serial"] == card.signing_serial.lower()
    resident = await sync.call("GET", "/internal/v1/residents/U-0001", "idp")
    assert resident.json()["address"] == "群馬県前橋市大手町二丁目12番1号"
    assert resident.json()["birth_date"] == "1985-06-15" and resident.json()["name"] == "数字 太郎"
    assert (await sync.link(world, card, "U-0001")).status_code == 200  # idempotent
    other = await sync.link(world, card, "U-9999")
    assert other.status_code == 409 and other.json()["type"] == "urn:tsunagu:problem:jpki-link-conflict"
    denied = await sync.call("GET", "/internal/v1/residents/U-0001", "consent")
    assert denied.status_code == 403


async def test_link_or_owner_links_a_new_card_and_answers_the_owner_of_a_known_one(world: World, sync: Sync):
    card = world.person()
    body = {"certificate_pem": card.signing_certificate, "user_number": "U-0101"}
    first = await sync.call("POST", "/internal/v1/links", "ca", json=body)
    assert first.status_code == 200 and first.json()["user_number"] == "U-0101"
    again = await sync.call("POST", "/internal/v1/links", "ca", json={**body, "user_number": "U-0999"})
    assert again.json() == {"user_number": "U-0101", "jpki_serial": card.signing_serial.lower()}
    owner = await sync.call("GET", f"/internal/v1/links/by-serial/{card.signing_serial}", "ca")
    assert owner.json()["user_number"] == "U-0101"
    assert (await sync.call("GET", "/internal/v1/links/by-serial/abc", "ca")).status_code == 404
    assert (await sync.call("GET", "/internal/v1/links/by-serial/not-hex", "ca")).status_code == 404
    assert (await sync.call("POST", "/internal/v1/links", "idp", json=body)).status_code == 403
    assert (await sync.call("GET", "/internal/v1/residents/U-0999", "idp")).status_code == 404


def _foreign_certificate() -> str:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not J-LIS")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(42)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM).decode()


async def test_link_refuses_foreign_certificates_and_consents_of_another_card(world: World, sync: Sync):
    foreign = await sync.call(
        "PUT", "/internal/v1/links/U-1", "ca", json={"certificate_pem": _foreign_certificate()}
    )
    assert (
        foreign.status_code == 400
        and foreign.json()["type"] == "urn:tsunagu:problem:invalid-jpki-certificate"
    )
    garbage = await sync.call(
        "PUT", "/internal/v1/links/U-1", "ca", json={"certificate_pem": "-----BEGIN nonsense"}
    )
    assert garbage.status_code == 400
    card, someone_else = world.person(), world.person("他人 花子")
    wrong = await sync.call(
        "PUT",
        "/internal/v1/links/U-1",
        "ca",
        json={
            "certificate_pem": card.signing_certificate,
            "basic4_consent": world.sandbox.make_consent(someone_else.card_id, "tsunagu"),
        },
    )
    assert wrong.status_code == 400 and wrong.json()["type"] == "urn:tsunagu:problem:invalid-basic4-consent"
    other_operator = await sync.call(
        "PUT",
        "/internal/v1/links/U-1",
        "ca",
        json={
            "certificate_pem": card.signing_certificate,
            "basic4_consent": world.sandbox.make_consent(card.card_id, "some-other-platform"),
        },
    )
    assert other_operator.status_code == 400
    assert (await sync.call("GET", "/internal/v1/residents/U-1", "idp")).status_code == 404
    only_ca = await sync.call(
        "PUT", "/internal/v1/links/U-1", "idp", json={"certificate_pem": card.signing_certificate}
    )
    assert only_ca.status_code == 403


async def test_status_comes_from_jlis_ocsp(world: World, sync: Sync):
    alive, dead = world.person(), world.person("故 人")
    world.sandbox.die(dead.person_id)
    good = await sync.call(
        "POST", "/internal/v1/jpki/status", "ca", json={"certificate_pem": alive.signing_certificate}
    )
    assert good.status_code == 200 and good.json()["status"] == "good"
    revoked = await sync.call(
        "POST", "/internal/v1/jpki/status", "ca", json={"certificate_pem": dead.signing_certificate}
    )
    assert revoked.json()["status"] == "revoked" and revoked.json()["reason"] == "cessationOfOperation"


async def test_a_move_pushed_then_listed_in_the_crl_publishes_exactly_one_update(world: World, sync: Sync):
    card = world.person()
    await sync.link(world, card, "U-0002")
    world.sandbox.subscribe(PUSH_URL)
    event = world.sandbox.move(card.person_id, "北海道江別市高砂町6番地")
    assert await world.sandbox.adeliver_pending() == 1
    crl = await sync.call("POST", "/internal/v1/crl/sync", "operator")
    assert crl.status_code == 200 and crl.json()["status"] == "applied" and crl.json()["matched"] == 0
    events = await sync.events()
    assert _types(events) == ["updated"]
    data = events[0]["data"]
    assert data["user_number"] == "U-0002" and data["changed_fields"] == ["address"]
    assert data["basic4_available"] is True and data["source"] == "push"
    assert data["old_jpki_serial"] == card.signing_serial.lower() == event.old_serial.lower()
    assert data["new_jpki_serial"] == event.new_serial.lower()
    assert "北海道" not in str(events)  # personal data stays out of the event log
    resident = await sync.call("GET", "/internal/v1/residents/U-0002", "broker")
    assert resident.json()["address"] == "北海道江別市高砂町6番地"


async def test_a_move_seen_only_in_the_crl_is_acted_on_in_one_sync_cycle(world: World, sync: Sync):
    card = world.person()
    await sync.link(world, card, "U-0003")
    world.sandbox.move(card.person_id, "長崎県大村市玖島一丁目25番地")
    first = (await sync.call("POST", "/internal/v1/crl/sync", "operator")).json()
    assert first["status"] == "applied" and first["matched"] == 1 and first["acted"] == 1
    again = (await sync.call("POST", "/internal/v1/crl/sync", "operator")).json()
    assert again["status"] in {"not-modified", "already-applied"}
    events = await sync.events()
    assert _types(events) == ["updated"] and events[0]["data"]["source"] == "crl"
    # the new certificate is linked: its next revocation is ours too
    world.sandbox.die(card.person_id)
    (await sync.call("POST", "/internal/v1/crl/sync", "operator")).json()
    assert _types(await sync.events()) == ["updated", "deceased"]


async def test_without_consent_we_learn_that_not_what(world: World, sync: Sync):
    card = world.person()
    await sync.link(world, card, "U-0004", consent=False)
    world.sandbox.subscribe(PUSH_URL)
    world.sandbox.move(card.person_id, "大阪府門真市中町1番1号")
    await world.sandbox.adeliver_pending()
    data = (await sync.events())[0]["data"]
    assert data["basic4_available"] is False and data["changed_fields"] == []
    resident = await sync.call("GET", "/internal/v1/residents/U-0004", "idp")
    assert resident.json()["address"] == "群馬県前橋市大手町二丁目12番1号"


async def test_loss_and_death(world: World, sync: Sync):
    lost, dead = world.person(), world.person("故 人")
    await sync.link(world, lost, "U-0005")
    await sync.link(world, dead, "U-0006")
    world.sandbox.subscribe(PUSH_URL)
    world.sandbox.lose(lost.person_id)
    world.sandbox.die(dead.person_id)
    await world.sandbox.adeliver_pending()
    events = {e["data"]["user_number"]: e for e in await sync.events()}
    assert events["U-0005"]["type"] == "tsunagu.jlis_sync.resident.card_revoked"
    assert events["U-0005"]["data"]["reason"] == "lost"
    assert events["U-0006"]["type"] == "tsunagu.jlis_sync.resident.deceased"


def _push(world: World, **overrides: object) -> str:
    payload = notification_payload(
        str(uuid.uuid4()),
        "move",
        issued_at=datetime.now(UTC),
        old_serial="abc",
        new_serial=None,
        issuer="signing",
    )
    payload.update(overrides)
    push = world.sandbox.hierarchy.by_name("push")
    return sign_compact(
        payload, push.certificate, lambda d: push.key.sign(d, padding.PKCS1v15(), hashes.SHA256())
    )


async def _post(sync: Sync, token: str) -> httpx.Response:
    return await sync.client.post(
        "/v1/jlis/notifications", content=token, headers={"content-type": "application/jose"}
    )


async def test_push_refusals_change_nothing(world: World, sync: Sync):
    card = world.person()
    await sync.link(world, card, "U-0007")
    serial = card.signing_serial.lower()
    attacker = rsa.generate_private_key(65537, 2048)
    forged_cert = x509.load_pem_x509_certificate(_foreign_certificate().encode())
    payload = notification_payload(
        str(uuid.uuid4()),
        "die",
        issued_at=datetime.now(UTC),
        old_serial=serial,
        new_serial=None,
        issuer="signing",
    )
    forged = sign_compact(
        payload, forged_cert, lambda d: attacker.sign(d, padding.PKCS1v15(), hashes.SHA256())
    )
    genuine = _push(world, type="die", old_serial=serial)
    head, _body, signature = genuine.split(".")
    tampered = f"{head}.{_push(world, type='lose', old_serial=serial).split('.')[1]}.{signature}"
    stale = _push(
        world, type="die", old_serial=serial, issued_at=(datetime.now(UTC) - timedelta(days=3)).isoformat()
    )
    cases = [
        (forged, 401, "invalid-push"),
        (tampered, 401, "invalid-push"),
        ("garbage", 401, "invalid-push"),
        (stale, 400, "stale-push"),
        (_push(world, type="explode", old_serial=serial), 401, "invalid-push"),
    ]
    for token, status, problem in cases:
        response = await _post(sync, token)
        assert response.status_code == status, response.text
        assert response.json()["type"] == f"urn:tsunagu:problem:{problem}"
    assert await sync.events() == []
    assert (await _post(sync, genuine)).json() == {"result": "applied"}
    assert (await _post(sync, genuine)).json() == {"result": "duplicate"}  # replayed: acted on once
    assert _types(await sync.events()) == ["deceased"]
    unknown = await _post(sync, _push(world, type="die", old_serial="deadbeef"))
    assert unknown.json() == {"result": "not-ours"}
    assert len(await sync.events()) == 1


async def test_a_tampered_crl_is_refused_and_changes_nothing(world: World, sync: Sync):
    card = world.person()
    await sync.link(world, card, "U-0008")
    world.sandbox.move(card.person_id, "前橋市")
    genuine = world.sandbox.crl("signing").der

    def serve(content: bytes) -> httpx.MockTransport:
        return httpx.MockTransport(lambda _request: httpx.Response(200, content=content))

    jlis = sync.service.jlis
    real = jlis.http
    flipped = bytearray(genuine)
    flipped[-10] ^= 0x01
    try:
        for broken in (bytes(flipped), b"not a crl", genuine[:-50]):
            jlis.http = httpx.AsyncClient(base_url=world.base_url, transport=serve(broken))
            response = await sync.call("POST", "/internal/v1/crl/sync", "operator")
            assert response.status_code == 422, response.text
            assert response.json()["type"] == "urn:tsunagu:problem:crl-rejected"
    finally:
        jlis.http = real
    assert await sync.events() == []
    applied = (await sync.call("POST", "/internal/v1/crl/sync", "operator")).json()
    assert applied["acted"] == 1


@pytest.mark.parametrize("route", ["/internal/v1/crl/sync"])
async def test_crl_sync_is_for_the_operator_only(sync: Sync, route: str):
    assert (await sync.call("POST", route, "ca")).status_code == 403
