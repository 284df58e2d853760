"""Revocation by the citizen (a lost phone, from another phone), by an operator (reason, audited),
and on J-LIS's death notice (across processes); the status API that idp and consent ask."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from tests.ca.conftest import CaHarness, _auth
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import SoftwareKey, WalletError, enroll, request_app_certificate, revoke
from tsunagu.wallet.card import SandboxCard


async def _status(ca: CaHarness, serial: str, caller: str = "idp") -> httpx.Response:
    return await ca.client.get(f"/internal/v1/certificates/{serial}", auth=ca.auth(caller))


async def test_a_lost_phone_is_revoked_from_the_other_phone(ca: CaHarness):
    card, _ = await ca.new_card()
    lost = await enroll(ca.client, card)
    await request_app_certificate(ca.client, lost, "city-portal")
    kept = await enroll(ca.client, card)
    revoked = await revoke(ca.client, kept, device_id=lost.device_id, reason="keyCompromise")

    lost_serials = {lost.signing.serial, lost.authentication.serial, lost.apps["city-portal"].serial}
    assert set(revoked) == lost_serials
    for serial in lost_serials:
        body = (await _status(ca, serial)).json()
        assert body["status"] == "revoked" and body["revocation_reason"] == "keyCompromise"
    for serial in (kept.signing.serial, kept.authentication.serial):
        assert (await _status(ca, serial)).json()["status"] == "good"
    events = [e for e in await ca.events() if e["type"] == "tsunagu.ca.certificate.revoked"]
    assert {e["data"]["serial"] for e in events} == lost_serials
    assert all(e["data"]["actor"] == "citizen" and e["subject"] == kept.user_number for e in events)

    # the lost phone's keys are worthless now: no new certificate, no revocation
    with pytest.raises(WalletError) as refused:
        await request_app_certificate(ca.client, lost, "clinic")
    assert refused.value.status == 403 and refused.value.problem["type"].endswith("certificate-not-usable")
    with pytest.raises(WalletError) as again:
        await revoke(ca.client, kept, device_id=lost.device_id)
    assert again.value.status == 409


async def test_a_citizen_cannot_revoke_someone_elses_certificate(ca: CaHarness):
    mine, _ = await ca.new_card()
    theirs, _ = await ca.new_card("別人 一郎")
    me = await enroll(ca.client, mine)
    other = await enroll(ca.client, theirs)
    with pytest.raises(WalletError) as refused:
        await revoke(ca.client, me, serials=[other.signing.serial])
    assert refused.value.status == 403 and refused.value.problem["type"].endswith("not-your-certificate")
    # a device id of someone else matches none of mine: nothing to revoke
    with pytest.raises(WalletError) as nothing:
        await revoke(ca.client, me, device_id=other.device_id)
    assert nothing.value.status == 409
    assert (await _status(ca, other.signing.serial)).json()["status"] == "good"
    assert not [e for e in await ca.events() if e["type"] == "tsunagu.ca.certificate.revoked"]


async def test_operator_revocation_needs_a_reason_and_the_operator(ca: CaHarness):
    card, _ = await ca.new_card()
    enrolled = await enroll(ca.client, card)
    path = f"/admin/v1/certificates/{enrolled.signing.serial}/revocation"
    body = {"reason": "privilegeWithdrawn", "comment": "court order 2026-123"}
    refused = await ca.client.post(path, json=body, auth=ca.auth("idp"))
    assert refused.status_code == 403
    assert (await ca.client.post(path, json=body)).status_code == 401
    missing = await ca.client.post(path, json={"reason": "privilegeWithdrawn"}, auth=ca.auth("operator"))
    assert missing.status_code == 422
    bad_reason = await ca.client.post(
        path, json={**body, "reason": "removeFromCRL"}, auth=ca.auth("operator")
    )
    assert bad_reason.status_code == 422
    assert (await _status(ca, enrolled.signing.serial)).json()["status"] == "good"

    done = await ca.client.post(path, json=body, auth=ca.auth("operator"))
    assert done.status_code == 200 and done.json() == {"revoked": [enrolled.signing.serial]}
    again = await ca.client.post(path, json=body, auth=ca.auth("operator"))
    assert again.status_code == 409 and again.json()["type"].endswith("already-revoked")
    event = next(e for e in await ca.events() if e["type"] == "tsunagu.ca.certificate.revoked")
    assert event["data"]["actor"] == "operator" and event["data"]["actor_id"] == "operator"
    assert event["data"]["reason"] == "privilegeWithdrawn"
    stored = next(r for r in await ca.rows("certificate") if r["serial"] == enrolled.signing.serial)
    assert stored["revoked_by"] == "operator:operator" and stored["revocation_comment"] == body["comment"]


async def test_status_and_validation_for_relying_services(ca: CaHarness):
    card, _ = await ca.new_card()
    enrolled = await enroll(ca.client, card)
    auth = enrolled.authentication
    assert (await _status(ca, auth.serial, caller="jlis-sync")).status_code == 403
    body = (await _status(ca, auth.serial, caller="consent")).json()
    assert body["user_number"] == enrolled.user_number and body["kind"] == "authentication"
    assert body["device_id"] == enrolled.device_id and len(body["chain"]) == 2
    assert (await _status(ca, "ffff")).status_code == 404

    validate = "/internal/v1/certificates/validate"
    ok = await ca.client.post(validate, json={"certificate": auth.certificate_pem}, auth=ca.auth("idp"))
    assert ok.status_code == 200 and ok.json()["status"] == "good"
    # a certificate that merely claims our serial is not ours
    stranger = await enroll(ca.client, (await ca.new_card("他人 次郎"))[0], signing_key=SoftwareKey())
    forged = await ca.client.post(
        validate,
        json={"certificate": stranger.signing.certificate_pem.replace("A", "B", 1)},
        auth=ca.auth("idp"),
    )
    assert forged.status_code in (400, 404)
    await revoke(ca.client, enrolled, serials=[auth.serial])
    later = await ca.client.post(validate, json={"certificate": auth.certificate_pem}, auth=ca.auth("idp"))
    assert later.json()["status"] == "revoked"
    at_signing = (await _status(ca, auth.serial)).json()["revoked_at"]
    from datetime import datetime

    before = (datetime.fromisoformat(at_signing) - timedelta(seconds=1)).isoformat()
    earlier = await ca.client.post(
        validate, json={"certificate": auth.certificate_pem, "at": before}, auth=ca.auth("consent")
    )
    assert earlier.json()["status"] == "good"  # it was good when it signed before its revocation


async def test_death_reported_by_jlis_revokes_everything_across_processes(platform: RunningStack):
    """sandbox → push → jlis-sync (process) → Kafka → the CA process revokes the person's certificates."""
    async with (
        httpx.AsyncClient(base_url=platform.urls["ca"], timeout=30) as ca,
        httpx.AsyncClient(base_url=platform.jlis_url, timeout=30) as jlis,
    ):
        issued = (
            await jlis.post(
                "/cards",
                json={
                    "name": "数字 三郎",
                    "address": "群馬県桐生市織姫町1番1号",
                    "birth_date": "1950-01-01",
                    "sex": "1",
                },
            )
        ).json()
        card = SandboxCard(jlis, issued["card_id"])
        first = await enroll(ca, card)
        second = await enroll(ca, card)
        (await jlis.post(f"/persons/{issued['person_id']}/die")).raise_for_status()
        idp = _auth(platform, "idp", "ca")
        serials = [c.serial for e in (first, second) for c in (e.signing, e.authentication)]
        statuses: list[str] = []
        for _ in range(300):  # bounded: ≈ 30 s
            statuses = [
                (await ca.get(f"/internal/v1/certificates/{s}", auth=idp)).json()["status"] for s in serials
            ]
            if set(statuses) == {"revoked"}:
                break
            await asyncio.sleep(0.1)
        assert statuses == ["revoked"] * 4
        reasons = {
            (await ca.get(f"/internal/v1/certificates/{s}", auth=idp)).json()["revocation_reason"]
            for s in serials
        }
        assert reasons == {"cessationOfOperation"}
        # the deceased person cannot enroll again
        with pytest.raises(WalletError) as refused:
            await enroll(ca, card)
        assert refused.value.status == 403
