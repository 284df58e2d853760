"""The latest basic 4 information service: consent checks and following old → new links."""

from __future__ import annotations

import base64
import json
from datetime import date

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.sandbox.checks import load
from tests.sandbox.conftest import CardFactory, FakeClock
from tsunagu.sandbox.jlis import JlisSandbox
from tsunagu.sandbox.jlis.basic4 import make_consent
from tsunagu.sandbox.jlis.jws import b64url_encode, sign_compact

PERSONAL = ("山田", "東京都", "大阪府", "京都府", "1989")


async def test_consent_after_two_moves_returns_the_latest_address_and_serial(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    card = issue_card()
    consent = jlis.make_consent(card.card_id, "tsunagu-demo-city")
    clock.advance(days=30)
    jlis.move(card.person_id, "大阪府大阪市北区中之島1-3-20")
    clock.advance(days=30)
    second_move_at = clock.now
    last = jlis.move(card.person_id, "京都府京都市中京区寺町通御池上る上本能寺前町488")
    clock.advance(days=1)
    response = await client.post("/basic4", json={"serial": card.signing_serial.upper(), "consent": consent})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "serial_requested": card.signing_serial,
        "current_serial": last.new_serial,
        "name": "山田 太郎",
        "address": "京都府京都市中京区寺町通御池上る上本能寺前町488",
        "birth_date": "1989-01-08",
        "sex": "1",
        "changed_at": second_move_at.isoformat().replace("+00:00", "Z"),
        "status": "valid",
    }
    # the intermediate certificate answers the same (with its own consent)
    jlis.die(card.person_id)
    answer = jlis.latest_basic4(card.signing_serial, consent)
    assert (answer.current_serial, answer.status, answer.changed_at) == (
        last.new_serial,
        "deceased",
        clock.now,
    )


def _tamper(token: str, **claims: object) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body.update(claims)
    return ".".join([header, b64url_encode(json.dumps(body).encode()), signature])


@pytest.fixture
def consent_cases(jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock) -> tuple[str, dict[str, str]]:
    card, other = issue_card(), issue_card(name="別人 花子", address="別の住所")
    good = jlis.make_consent(card.card_id, "tsunagu")
    certificate = load(card.signing_certificate)

    def signed_by_card(data: bytes) -> bytes:
        return jlis.sign_with_card(card.card_id, data)[0]

    def payload(**changes: object) -> dict[str, object]:
        return {
            "purpose": "jlis-basic4",
            "serial": card.signing_serial,
            "operator": "tsunagu",
            "iat": 1775005200,
        } | changes

    header, body, signature = good.split(".")
    cases = {
        "wrong key": make_consent(
            certificate, "tsunagu", clock.now, lambda data: jlis.sign_with_card(other.card_id, data)[0]
        ),
        "other card's own consent": jlis.make_consent(other.card_id, "tsunagu"),
        "wrong purpose": sign_compact(payload(purpose="marketing"), certificate, signed_by_card),
        "no operator": sign_compact(payload(operator=""), certificate, signed_by_card),
        "from the future": sign_compact(
            payload(iat=int(clock.now.timestamp()) + 3600), certificate, signed_by_card
        ),
        "iat not a number": sign_compact(payload(iat="1775005200"), certificate, signed_by_card),
        "tampered payload": _tamper(good, operator="evil"),
        "tampered signature": f"{header}.{body}.{signature[:-4]}AAAA",
        "alg none": ".".join([b64url_encode(b'{"alg":"none"}'), body, ""]),
        "x5c of another certificate": _replace_x5c(good, other.signing_certificate),
        "garbage": "not-a-jws",
    }
    return card.signing_serial, cases


def _replace_x5c(token: str, pem: str) -> str:
    header = json.loads(base64.urlsafe_b64decode(token.split(".", maxsplit=1)[0] + "=="))
    header["x5c"] = [base64.b64encode(load(pem).public_bytes(serialization.Encoding.DER)).decode()]
    return ".".join([b64url_encode(json.dumps(header).encode()), *token.split(".")[1:]])


async def test_bad_consent_is_403_and_reveals_nothing(
    client: httpx.AsyncClient, jlis: JlisSandbox, consent_cases: tuple[str, dict[str, str]]
) -> None:
    serial, cases = consent_cases
    before = jlis.store.state.model_dump_json()
    for case, consent in cases.items():
        response = await client.post("/basic4", json={"serial": serial, "consent": consent})
        assert response.status_code == 403, (case, response.text)
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert set(body) <= {"type", "title", "status", "detail", "instance"}, case
        assert body["type"] == "urn:tsunagu:problem:jlis-consent-invalid"
        assert not any(word in response.text for word in PERSONAL), case
    assert jlis.store.state.model_dump_json() == before


async def test_unknown_serials_are_404(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory
) -> None:
    card = issue_card()
    consent = jlis.make_consent(card.card_id, "tsunagu")
    for serial in ("abcdef0123", card.auth_serial, "zz"):
        response = await client.post("/basic4", json={"serial": serial, "consent": consent})
        assert response.status_code == 404, serial
        assert response.json()["type"] == "urn:tsunagu:problem:jlis-serial-not-found"
        assert "山田" not in response.text
    assert (await client.post("/basic4", json={"serial": card.signing_serial})).status_code == 422


def test_a_consent_made_before_moving_still_works_after_restart(
    jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    card = issue_card(birth_date=date(1926, 12, 25), sex="3")
    consent = jlis.make_consent(card.card_id, "tsunagu")
    moved = jlis.move(card.person_id, "長野県長野市大字南長野字幅下692-2")
    assert jlis.state_dir is not None
    restarted = JlisSandbox(jlis.state_dir, clock)
    answer = restarted.latest_basic4(card.signing_serial, consent)
    assert (answer.current_serial, answer.birth_date, answer.sex) == (
        moved.new_serial,
        date(1926, 12, 25),
        "3",
    )
