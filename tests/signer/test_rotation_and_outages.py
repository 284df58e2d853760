"""Rotation with overlap, the audit trail on Kafka, and the token going away and coming back."""

from __future__ import annotations

import json
import logging
import shutil

from joserfc import jws
from joserfc.jwk import KeySet

from tests.events.support import wait_until
from tests.signer.conftest import Signer
from tests.signer.test_signing import b64, unb64, verify
from tsunagu.events import replay_topic


async def _sign_jws(signer: Signer, payload: bytes, caller: str = "idp") -> tuple[str, str]:
    """A compact JWS made by the signer (as idp will make ID tokens): returns (token, kid)."""
    jwks = (await signer.call("GET", "/v1/jwks", caller, params={"purpose": "id-token"})).json()
    active = [
        k
        for k in (await signer.call("GET", "/v1/keys", caller)).json()
        if k["state"] == "active" and k["purpose"] == "id-token"
    ]
    kid = active[0]["kid"]
    assert any(k["kid"] == kid for k in jwks["keys"])
    header = b64(json.dumps({"alg": "ES256", "kid": kid}).encode())
    signing_input = f"{header}.{b64(payload)}".encode()
    response = await signer.call(
        "POST", "/v1/sign", caller, json={"purpose": "id-token", "data": b64(signing_input)}
    )
    assert response.json()["key_id"] == kid
    return signing_input.decode() + "." + response.json()["signature"], kid


async def _jwks(signer: Signer) -> KeySet:
    return KeySet.import_key_set(
        (await signer.call("GET", "/v1/jwks", "idp", params={"purpose": "id-token"})).json()
    )


async def test_rotation_with_overlap_old_tokens_verify_from_the_jwks_during_grace(signer: Signer):
    old = await signer.new_key("id-token", "ES256")
    token_before, kid_before = await _sign_jws(signer, b'{"sub":"before"}')
    assert kid_before == old["kid"]

    upcoming = await signer.new_key("id-token", "ES256", activate=False)
    published = {k["kid"] for k in (await _jwks(signer)).as_dict()["keys"]}
    assert published == {old["kid"], upcoming["kid"]}  # the next key is known before it signs

    await signer.call("POST", f"/v1/keys/{upcoming['kid']}/activate", "operator")
    states = {k["kid"]: k["state"] for k in (await signer.call("GET", "/v1/keys", "idp")).json()}
    assert states == {old["kid"]: "retired", upcoming["kid"]: "active"}

    token_after, kid_after = await _sign_jws(signer, b'{"sub":"after"}')
    assert kid_after == upcoming["kid"]
    key_set = await _jwks(signer)
    for token, subject in ((token_before, b'{"sub":"before"}'), (token_after, b'{"sub":"after"}')):
        assert jws.deserialize_compact(token, key_set, algorithms=["ES256"]).payload == subject

    retired_sign = await signer.call("POST", "/v1/sign", "idp", json={"key_id": old["kid"], "data": "aGk"})
    assert retired_sign.status_code == 409
    early = await signer.call("POST", f"/v1/keys/{old['kid']}/destroy", "operator")
    assert early.status_code == 409 and early.json()["type"] == "urn:tsunagu:problem:grace-period-running"
    assert old["kid"] in {k["kid"] for k in (await _jwks(signer)).as_dict()["keys"]}


async def test_destroy_after_grace_removes_the_key_from_hsm_and_jwks(make_signer):  # type: ignore[no-untyped-def]
    async with make_signer(rotation_grace_s=0) as signer:
        first = await signer.new_key("receipt", "ES256")
        second = await signer.new_key("receipt", "ES256")
        assert (await signer.call("POST", f"/v1/keys/{first['kid']}/destroy", "operator")).json()[
            "state"
        ] == "destroyed"
        assert {k["kid"] for k in (await signer.call("GET", "/v1/jwks", "consent")).json()["keys"]} == {
            second["kid"]
        }

        def labels_on_token(session):  # type: ignore[no-untyped-def]
            from pkcs11 import Attribute

            return {obj[Attribute.LABEL] for obj in session.get_objects({})}

        backend = signer.app.state.runtime.resources.backend
        from sqlalchemy import select

        from tsunagu.signer.store.models import signing_key

        async with signer.app.state.runtime.db.sessions() as session:
            label_of = dict((await session.execute(select(signing_key.c.kid, signing_key.c.hsm_label))).all())
        on_token = await backend.token.run(labels_on_token)
        assert label_of[first["kid"]] not in on_token and label_of[second["kid"]] in on_token
        again = await signer.call("POST", f"/v1/keys/{first['kid']}/destroy", "operator")
        assert (
            again.status_code == 409 and again.json()["type"] == "urn:tsunagu:problem:invalid-key-transition"
        )


async def test_every_signature_and_key_step_reaches_kafka_for_auditors(signer: Signer, kafka_settings):  # type: ignore[no-untyped-def]
    key = await signer.new_key("ocsp", "ES256")
    await signer.call(
        "POST",
        "/v1/sign/batch",
        json={"key_id": key["kid"], "items": [{"data": b64(b"a")}, {"data": b64(b"b")}]},
    )

    async def audited() -> bool:
        events = [r.envelope() async for r in replay_topic(kafka_settings, "tsunagu.signer.signature")]
        return any(e.data["key_id"] == key["kid"] and len(e.data["payload_sha256"]) == 2 for e in events)

    await wait_until(audited)
    lifecycle = [r.envelope() async for r in replay_topic(kafka_settings, "tsunagu.signer.key")]
    steps = [e.type.rsplit(".", 1)[1] for e in lifecycle if e.subject == key["kid"]]
    assert steps == ["created", "activated"]
    assert all(e.data["actor"] == "operator" for e in lifecycle if e.subject == key["kid"])


async def test_token_removed_and_restored_mid_run_answers_503_then_recovers_without_restart(signer: Signer):
    key = await signer.new_key("log", "ES256")
    assert (
        await signer.call("POST", "/v1/sign", json={"key_id": key["kid"], "data": "aGk"})
    ).status_code == 200

    # "Remove" the token: SoftHSM's whole token store disappears (an empty one takes its place).
    directory = signer.token.conf_path.parent / "tokens"
    parked = directory.with_name("tokens.removed")
    shutil.move(directory, parked)
    directory.mkdir()
    backend = signer.app.state.runtime.resources.backend
    await backend.token.reset()  # a real removal drops the session; SoftHSM needs to be told
    try:
        during = await signer.call("POST", "/v1/sign", json={"key_id": key["kid"], "data": "aGk"})
        assert during.status_code == 503, during.text
        assert during.headers["retry-after"]
        ready = await signer.client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["hsm"] == "unavailable"
    finally:
        directory.rmdir()
        shutil.move(parked, directory)
    after = await signer.call("POST", "/v1/sign", json={"key_id": key["kid"], "data": b64(b"back")})
    assert after.status_code == 200, after.text
    verify(signer.public_key(key), "ES256", unb64(after.json()["signature"]), b"back")
    assert (await signer.client.get("/readyz")).json()["checks"]["hsm"] == "ok"
    events = [json.loads(p) for p in await signer.outbox_payloads()]
    assert sum(e["type"] == "tsunagu.signer.signature.created" for e in events) == 2  # the 503 left no trace


async def test_wrong_pin_is_503_and_the_pin_appears_nowhere(make_signer, softhsm_signer_token, caplog):  # type: ignore[no-untyped-def]
    from tests.fixtures.softhsm import pkcs11_settings_for

    wrong = "wrong-pin-31337"
    with caplog.at_level(logging.DEBUG):
        async with make_signer(pkcs11=pkcs11_settings_for(softhsm_signer_token, user_pin=wrong)) as signer:
            response = await signer.call("POST", "/v1/sign", json={"purpose": "log", "data": "aGk"})
            metrics = (await signer.client.get("/metrics")).text
            ready = await signer.client.get("/readyz")
    assert response.status_code in (404, 503)  # no key is registered; the token is not reachable either
    assert ready.status_code == 503
    everything = response.text + metrics + ready.text + caplog.text
    assert wrong not in everything and softhsm_signer_token.user_pin not in everything


def _tbs_samples() -> tuple[bytes, bytes]:
    """The to-be-signed bytes of a CRL and of a certificate (signed here with a throwaway key)."""
    import base64 as b64
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old issuing CA")])
    now = datetime.now(UTC)
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=name, last_update=now, next_update=now + timedelta(days=1)
    ).sign(key, hashes.SHA256())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    encode = lambda data: b64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return encode(crl.tbs_certlist_bytes), encode(certificate.tbs_certificate_bytes)  # type: ignore[return-value]


async def test_a_retired_ca_key_signs_only_revocation_information_and_only_by_key_id(signer: Signer):
    old = await signer.new_key("ca-issuing", "ES256")
    new = await signer.new_key("ca-issuing", "ES256")
    states = {k["kid"]: k["state"] for k in (await signer.call("GET", "/v1/keys", "ca")).json()}
    assert states[old["kid"]] == "retired" and states[new["kid"]] == "active"
    crl_tbs, certificate_tbs = _tbs_samples()
    by_id = await signer.call("POST", "/v1/sign", "ca", json={"key_id": old["kid"], "data": crl_tbs})
    assert by_id.status_code == 200  # the old issuing CA's CRL, after its rollover
    issue = await signer.call("POST", "/v1/sign", "ca", json={"key_id": old["kid"], "data": certificate_tbs})
    assert issue.status_code == 409 and issue.json()["type"].endswith("key-not-active")  # no new certificates
    digest = await signer.call("POST", "/v1/sign", "ca", json={"key_id": old["kid"], "digest": "A" * 43})
    assert digest.status_code == 409  # a digest cannot be read, so it is refused
    by_purpose = await signer.call("POST", "/v1/sign", "ca", json={"purpose": "ca-issuing", "data": crl_tbs})
    assert by_purpose.json()["key_id"] == new["kid"]
    assert (
        await signer.call("POST", "/v1/sign", "idp", json={"key_id": old["kid"], "data": crl_tbs})
    ).status_code == 403
