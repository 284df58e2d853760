"""The wallet reads its own exchange log through consent (``POST /v1/wallet/exchanges``): a query
signed with the authentication key; consent asks the stack's broker, with its own service token,
for the person the CA says holds the certificate — never for a number the body names."""

from __future__ import annotations

import base64
import dataclasses
import socket
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.broker.conftest import ALLERGY, broker_harness
from tests.consent.conftest import ConsentHarness
from tests.consent.test_refusals import _self_signed
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, SoftwareKey, WalletError
from tsunagu.wallet import consent as wallet


async def _log(consent: ConsentHarness, query: str) -> Any:
    return await consent.client.post("/v1/wallet/exchanges", json={"request": query})


async def _refused(consent: ConsentHarness, query: str, status: int, code: str) -> None:
    response = await _log(consent, query)
    assert response.status_code == status, (code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:tsunagu:problem:{code}", response.text


async def test_the_wallet_sees_its_own_exchanges_and_only_its_own(
    make_consent,  # type: ignore[no-untyped-def]
    consent_platform: RunningStack,
    citizen: Enrolled,
    other_citizen: Enrolled,
):
    broker_url = consent_platform.urls["broker"]
    async with make_consent(broker_url=broker_url) as consent, broker_harness(consent_platform) as broker:
        records, provider, endpoint = await broker.provider("records-wallet-log")
        await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
        provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: {"allergens": ["小麦"]}}
        clinic, pharmacy = await broker.party("clinic-wallet-log"), await broker.party("pharmacy-wallet-log")
        decided = await broker.decide(citizen, clinic, {ALLERGY: True})
        got = await broker.pull(clinic, await broker.sub_of(clinic, citizen), [ALLERGY])
        refused = await broker.pull(pharmacy, await broker.sub_of(pharmacy, citizen), [ALLERGY])
        assert (got.status_code, refused.status_code) == (200, 403)

        page = await wallet.fetch_exchanges(consent.client, citizen)
        assert page["user_number"] == citizen.user_number
        refusal, exchange = page["exchanges"][:2]  # newest first
        assert (exchange["outcome"], exchange["consumer"]) == ("completed", clinic.client_id)
        assert exchange["providers"] == [records.client_id] and exchange["released"] == [ALLERGY]
        assert exchange["consent"] == {ALLERGY: decided["decision_id"]}
        assert (refusal["outcome"], refusal["consumer"]) == ("denied", pharmacy.client_id)
        assert "小麦" not in str(page)  # values are never logged
        # Paged: limit, then the rest with the cursor.
        first = await wallet.fetch_exchanges(consent.client, citizen, limit=1)
        assert [e["exchange_id"] for e in first["exchanges"]] == [refusal["exchange_id"]]
        rest = await wallet.fetch_exchanges(consent.client, citizen, before=first["next_before"])
        assert rest["exchanges"][0]["exchange_id"] == exchange["exchange_id"]
        # A cursor the broker cannot read is the query's fault (400), not an outage (503).
        for cursor in ("yesterday", first["next_before"] + "!"):
            query = wallet.signed_query(citizen.authentication, "exchanges", before=cursor)
            await _refused(consent, query, 400, "invalid-query")

        # Another person's signed query sees that person's log only, whatever the body says.
        mine = wallet.signed_query(other_citizen.authentication, "exchanges", user_number=citizen.user_number)
        other = (await _log(consent, mine)).json()
        assert other["user_number"] == other_citizen.user_number
        ids = {e["exchange_id"] for e in other["exchanges"]}
        assert not ids & {exchange["exchange_id"], refusal["exchange_id"]}


async def test_unsigned_forged_and_wrong_certificates_are_refused(consent: ConsentHarness, citizen: Enrolled):
    auth = citizen.authentication
    forged = wallet.signed_query(dataclasses.replace(auth, key=SoftwareKey()), "exchanges")
    await _refused(consent, forged, 400, "signature-invalid")
    key, certificate = _self_signed()
    pem = _pem(certificate)
    stranger = wallet.signed_query(dataclasses.replace(auth, key=key, certificate_pem=pem), "exchanges")
    await _refused(consent, stranger, 403, "certificate-unknown")
    signing = wallet.signed_query(citizen.signing, "exchanges")
    await _refused(consent, signing, 403, "certificate-wrong-kind")
    await _refused(consent, wallet.signed_query(auth, "history"), 400, "malformed-statement")  # op
    response = await consent.client.post("/v1/wallet/exchanges", json={"request": "not.a.jws"})
    assert response.status_code == 400
    for page in ({"limit": 0}, {"limit": 201}, {"limit": True}, {"before": 5}, {"before": "x" * 129}):
        await _refused(consent, wallet.signed_query(auth, "exchanges", **page), 400, "invalid-query")
    query = wallet.signed_query(auth, "exchanges")
    assert (await _log(consent, query)).status_code == 503  # no broker here; the query is used up
    await _refused(consent, query, 409, "request-replayed")


async def test_broker_unreachable_is_503(make_consent, citizen: Enrolled):  # type: ignore[no-untyped-def]
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with make_consent(broker_url=closed) as consent:
        response = await _log(consent, wallet.signed_query(citizen.authentication, "exchanges"))
        assert response.status_code == 503, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"]
        assert response.json()["type"] == "urn:tsunagu:problem:exchange-log-unavailable"
        try:
            await wallet.fetch_exchanges(consent.client, citizen)
        except WalletError as failure:
            assert (failure.step, failure.status) == ("consent-exchanges", 503)
        else:
            raise AssertionError("the SDK did not raise")


def _pem(der_base64: str) -> str:
    return x509.load_der_x509_certificate(base64.b64decode(der_base64)).public_bytes(Encoding.PEM).decode()
