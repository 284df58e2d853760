"""The OCSP responder on the real stack: phones enrolled through the wallet, answers signed by the
delegated responder key in SoftHSM2 (through the signer), checked by openssl over a real socket and
by ``cryptography``."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.ca.conftest import CaHarness, ca_settings
from tests.fixtures.services import build_app, running
from tests.libs.x509_factories import end_entity_builder, root_builder
from tsunagu.ca.domain.ocsp_responder import MAX_REQUEST_BYTES
from tsunagu.ca.settings import JpkiTrust
from tsunagu.devstack.ports import free_port
from tsunagu.devstack.stack import RunningStack
from tsunagu.wallet import Enrolled, enroll, revoke

OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}
SHA1 = hashes.SHA1()  # the CertID clients send: an identifier, not a signature


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


@dataclass
class Phone:
    enrolled: Enrolled
    signing: x509.Certificate
    authentication: x509.Certificate
    issuing: x509.Certificate
    root: x509.Certificate

    def request(
        self,
        certificate: x509.Certificate | None = None,
        *,
        algorithm: hashes.HashAlgorithm = SHA1,
        nonce: bytes | None = None,
    ) -> bytes:
        """A DER OCSPRequest about one of the phone's certificates (its signing one by default)."""
        builder = ocsp.OCSPRequestBuilder().add_certificate(
            certificate or self.signing, self.issuing, algorithm
        )
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return builder.build().public_bytes(Encoding.DER)

    def write_pems(self, directory: Path) -> dict[str, Path]:
        files = {"root": self.root, "issuing": self.issuing, "signing": self.signing}
        paths = {}
        for name, certificate in files.items():
            paths[name] = directory / f"{name}.pem"
            paths[name].write_bytes(certificate.public_bytes(Encoding.PEM))
        return paths


async def _phone(ca: CaHarness) -> Phone:
    card, _ = await ca.new_card()
    enrolled = await enroll(ca.client, card)
    issuing, root = (_cert(pem) for pem in enrolled.signing.chain)
    return Phone(
        enrolled,
        _cert(enrolled.signing.certificate_pem),
        _cert(enrolled.authentication.certificate_pem),
        issuing,
        root,
    )


def _verified(der: bytes, issuing: x509.Certificate) -> ocsp.OCSPResponse:
    """A successful answer signed by a delegated responder of ``issuing`` (RFC 6960 §4.2.2.2)."""
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    (responder,) = response.certificates
    responder.verify_directly_issued_by(issuing)
    usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in usage
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert (
        response.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(responder.public_key()).digest
    )
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and response.signature_hash_algorithm
    public_key.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )
    assert response.next_update_utc is not None and response.next_update_utc > response.this_update_utc
    return response


def _nonce_of(response: ocsp.OCSPResponse) -> bytes | None:
    try:
        return response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


async def _post(ca: CaHarness, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    response = await ca.client.post(
        "/ocsp", content=body, headers=OCSP_REQUEST if headers is None else headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/ocsp-response"
    return response.content


async def _stop_background_refreshers() -> None:
    """The app refreshes on its own (every few seconds and on each revocation); these tests call
    refresh_once() themselves, so that which path answered is known."""
    tasks = [t for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "OcspResponder.run"]  # type: ignore[union-attr]
    assert tasks
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def ca(ca: CaHarness) -> CaHarness:
    await _stop_background_refreshers()
    return ca


class SignerCalls:
    """Counts the signatures the CA asks of the real signer with an OCSP responder key (the CRL
    publisher signs with the issuing CA's key meanwhile: not counted). The calls still sign."""

    def __init__(self, ca: CaHarness, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        self.ca = ca
        signer = ca.services.ca.signer
        for method in ("sign", "sign_batch"):
            monkeypatch.setattr(signer, method, self._counting(getattr(signer, method)))

    def _counting(self, real: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs.get("key_id", ""))
            return await real(*args, **kwargs)

        return counted

    @property
    def count(self) -> int:
        responders = {
            a.key_id for a in self.ca.services.ca.hierarchy.authorities.values() if a.kind == "ocsp"
        }
        return sum(1 for key_id in self.calls if key_id in responders)


@pytest.fixture
def signer_calls(ca: CaHarness, monkeypatch: pytest.MonkeyPatch) -> Iterator[SignerCalls]:
    yield SignerCalls(ca, monkeypatch)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """The in-process app on a real loopback port, in this event loop (openssl needs TCP)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


async def _openssl_ocsp(url: str, files: dict[str, Path], *options: str) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        *("openssl", "ocsp", "-issuer", str(files["issuing"]), "-cert", str(files["signing"])),
        *("-url", f"{url}/ocsp", "-CAfile", str(files["root"]), "-resp_text", *options),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stdout.decode() + stderr.decode()
    return stdout.decode(), stderr.decode()


# -- openssl --------------------------------------------------------------------------------------


async def test_openssl_gets_good_with_and_without_nonce_from_the_delegated_responder(
    ca: CaHarness, tmp_path: Path
):
    phone = await _phone(ca)
    await ca.services.ocsp.refresh_once()
    files = phone.write_pems(tmp_path)
    async with served(ca.app) as url:
        with_nonce, verify = await _openssl_ocsp(url, files)
        without_nonce, verify_no_nonce = await _openssl_ocsp(url, files, "-no_nonce")
    for stdout, stderr in ((with_nonce, verify), (without_nonce, verify_no_nonce)):
        assert f"{files['signing']}: good" in stdout, stdout
        assert "Response verify OK" in stderr and "WARNING" not in stderr, stderr
        assert "OCSP Signing" in stdout and "OCSP No Check" in stdout  # the delegated responder's certificate
    assert "OCSP Nonce" in with_nonce  # echoed (openssl also checked it matches)
    assert "OCSP Nonce" not in without_nonce


async def test_openssl_sees_a_revocation_by_the_citizen_with_its_reason(ca: CaHarness, tmp_path: Path):
    phone = await _phone(ca)
    await ca.services.ocsp.refresh_once()
    await revoke(ca.client, phone.enrolled, device_id=phone.enrolled.device_id, reason="keyCompromise")
    files = phone.write_pems(tmp_path)
    async with served(ca.app) as url:
        stdout, stderr = await _openssl_ocsp(url, files, "-no_nonce")
    assert f"{files['signing']}: revoked" in stdout and "Reason: keyCompromise" in stdout, stdout
    assert "Revocation Time" in stdout and "Response verify OK" in stderr, stderr


async def test_over_a_real_socket_an_oversize_body_is_refused_unread_and_the_next_request_served(
    ca: CaHarness,
):
    phone = await _phone(ca)
    async with served(ca.app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        oversize = await client.post("/ocsp", content=b"\x30" * (MAX_REQUEST_BYTES + 1), headers=OCSP_REQUEST)
        assert oversize.status_code == 200 and oversize.content == bytes.fromhex("30030a0101")
        answer = await client.post("/ocsp", content=phone.request(), headers=OCSP_REQUEST)
    assert answer.headers["content-type"] == "application/ocsp-response"
    assert _verified(answer.content, phone.issuing).certificate_status is ocsp.OCSPCertStatus.GOOD


# -- status answers -------------------------------------------------------------------------------


async def test_post_and_get_give_the_same_verified_pre_signed_answer(ca: CaHarness):
    phone = await _phone(ca)
    assert await ca.services.ocsp.refresh_once() == 2  # signing + authentication certificates
    for certificate in (phone.signing, phone.authentication):
        request = phone.request(certificate)
        posted = await _post(ca, request)
        encoded = base64.b64encode(request).decode()
        # RFC 6960 Appendix A.1: url-encoding of the base64 — and as clients that do not encode send it
        for path in (quote(encoded, safe=""), encoded):
            got = await ca.client.get(f"/ocsp/{path}")
            assert got.status_code == 200 and got.content == posted
        response = _verified(posted, phone.issuing)
        assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert response.serial_number == certificate.serial_number
        assert response.hash_algorithm.name == "sha1" and _nonce_of(response) is None
        stored = {row["serial"]: row for row in await ca.rows("ocsp_response")}
        assert stored[format(certificate.serial_number, "x")]["der"] == posted
    metrics = (await ca.client.get("/metrics")).text  # the plain ASGI endpoint still has its label
    assert 'tsunagu_http_requests_total{method="POST",route="/ocsp",status="200"} 2.0' in metrics
    # RFC 5019 §6.2: a GET answer says how long HTTP caches may keep it
    assert "max-age=" in got.headers["cache-control"] and "public" in got.headers["cache-control"]
    assert got.headers["last-modified"] and got.headers["expires"] and got.headers["etag"]


async def test_revoked_at_once_on_demand_then_from_the_refresher(ca: CaHarness, signer_calls: SignerCalls):
    phone = await _phone(ca)
    await ca.services.ocsp.refresh_once()
    before = _verified(await _post(ca, phone.request()), phone.issuing)  # now in the memory cache
    assert before.certificate_status is ocsp.OCSPCertStatus.GOOD

    revoked = await revoke(
        ca.client, phone.enrolled, device_id=phone.enrolled.device_id, reason="keyCompromise"
    )
    assert format(phone.signing.serial_number, "x") in revoked
    serial = format(phone.signing.serial_number, "x")
    record = next(row for row in await ca.rows("certificate") if row["serial"] == serial)
    calls = signer_calls.count
    at_once = _verified(await _post(ca, phone.request()), phone.issuing)
    assert signer_calls.count == calls + 1  # signed on demand: the pre-signed "good" is gone
    assert at_once.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert at_once.revocation_reason is x509.ReasonFlags.key_compromise
    revoked_at = record["revoked_at"]
    revoked_at = revoked_at if revoked_at.tzinfo else revoked_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    assert at_once.revocation_time_utc == revoked_at.replace(microsecond=0)

    assert await ca.services.ocsp.refresh_once() == 2  # both certificates of the phone
    stored = {row["serial"]: row for row in await ca.rows("ocsp_response")}
    assert stored[record["serial"]]["status"] == "revoked"
    calls = signer_calls.count
    pre_signed = await _post(ca, phone.request())
    assert signer_calls.count == calls and pre_signed == stored[record["serial"]]["der"]
    after = _verified(pre_signed, phone.issuing)
    assert after.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason is x509.ReasonFlags.key_compromise
    assert after.revocation_time_utc == at_once.revocation_time_utc


async def test_an_unknown_serial_of_our_issuer_is_unknown_and_not_cacheable(ca: CaHarness):
    phone = await _phone(ca)
    issuer = ocsp.load_der_ocsp_request(phone.request())
    serial = secrets.randbits(159)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(issuer.issuer_name_hash, issuer.issuer_key_hash, serial, SHA1)
        .build()
        .public_bytes(Encoding.DER)
    )
    response = _verified(await _post(ca, request), phone.issuing)
    assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN and response.serial_number == serial
    got = await ca.client.get(f"/ocsp/{quote(base64.b64encode(request).decode(), safe='')}")
    assert _verified(got.content, phone.issuing).certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert got.headers["cache-control"] == "no-store"
    assert format(serial, "x") not in {row["serial"] for row in await ca.rows("ocsp_response")}


async def test_sha256_cert_id_is_signed_on_demand_and_echoed(ca: CaHarness, signer_calls: SignerCalls):
    phone = await _phone(ca)
    await ca.services.ocsp.refresh_once()
    request = phone.request(algorithm=hashes.SHA256())
    asked = ocsp.load_der_ocsp_request(request)
    calls = signer_calls.count
    response = _verified(await _post(ca, request), phone.issuing)
    assert signer_calls.count == calls + 1
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.hash_algorithm.name == "sha256"
    assert (response.issuer_name_hash, response.issuer_key_hash, response.serial_number) == (
        asked.issuer_name_hash,
        asked.issuer_key_hash,
        asked.serial_number,
    )
    await _post(ca, request)
    assert signer_calls.count == calls + 1  # kept in memory like a pre-signed answer


# -- the hot path -----------------------------------------------------------------------------


async def test_pre_signed_answers_need_no_signer_call_and_a_nonce_needs_one(
    ca: CaHarness, signer_calls: SignerCalls
):
    phone = await _phone(ca)
    await ca.services.ocsp.refresh_once()
    calls = signer_calls.count
    for _ in range(10):
        for certificate in (phone.signing, phone.authentication):
            answer = _verified(await _post(ca, phone.request(certificate)), phone.issuing)
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert signer_calls.count == calls

    for length, expected_calls in ((32, 1), (1, 2), (128, 3)):  # RFC 9654 §2.1: 1 to 128 octets
        nonce = secrets.token_bytes(length)
        answer = _verified(await _post(ca, phone.request(nonce=nonce)), phone.issuing)
        assert _nonce_of(answer) == nonce and answer.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert signer_calls.count == calls + expected_calls  # never served from a cache


async def test_without_nonce_echo_a_nonce_gets_the_pre_signed_answer(
    make_ca: Any, monkeypatch: pytest.MonkeyPatch
):
    async with make_ca(ocsp_echo_nonce=False) as ca:
        await _stop_background_refreshers()
        phone = await _phone(ca)
        await ca.services.ocsp.refresh_once()
        calls = SignerCalls(ca, monkeypatch)
        answer = await _post(ca, phone.request(nonce=secrets.token_bytes(32)))
        assert calls.count == 0 and _nonce_of(_verified(answer, phone.issuing)) is None
        assert answer == await _post(ca, phone.request())


# -- refusals -------------------------------------------------------------------------------------


def _status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


async def test_another_cas_certificate_is_unauthorized(ca: CaHarness, signer_calls: SignerCalls):
    phone = await _phone(ca)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_root = root_builder(other_key.public_key(), "Some Other CA").sign(other_key, hashes.SHA256())
    stranger = end_entity_builder(other_root, ec.generate_private_key(ec.SECP256R1()).public_key()).sign(
        other_key, hashes.SHA256()
    )
    ours = ocsp.load_der_ocsp_request(phone.request())
    requests = [
        ocsp.OCSPRequestBuilder()
        .add_certificate(stranger, other_root, SHA1)
        .build()
        .public_bytes(Encoding.DER),
        # our issuing CA's name with another key: not ours either
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(ours.issuer_name_hash, secrets.token_bytes(20), ours.serial_number, SHA1)
        .build()
        .public_bytes(Encoding.DER),
    ]
    for request in requests:
        der = await _post(ca, request)
        assert _status(der) is ocsp.OCSPResponseStatus.UNAUTHORIZED and der == bytes.fromhex("30030a0106")
    assert signer_calls.count == 0


async def test_bad_requests_are_malformed_and_change_nothing(ca: CaHarness, signer_calls: SignerCalls):
    phone = await _phone(ca)
    valid = phone.request()
    before = (await ca.rows("ocsp_response"), await ca.events())
    malformed = [
        await _post(ca, b"\x30\x03garbage"),
        await _post(ca, b""),
        await _post(ca, valid, {"Content-Type": "application/octet-stream"}),
        await _post(ca, valid, {}),
        await _post(ca, valid + b"\x00" * MAX_REQUEST_BYTES),  # over the OCSP request limit
        await _post(ca, phone.request(nonce=b"\x00" * 129)),  # RFC 9654 §2.1: more than 128 octets
        (await ca.client.get("/ocsp/not*base64")).content,
        (await ca.client.get(f"/ocsp/{'A' * (MAX_REQUEST_BYTES * 2 + 4)}")).content,
    ]

    async def chunks() -> AsyncIterator[bytes]:  # no content-length: the limit holds while reading
        for _ in range(MAX_REQUEST_BYTES // 1024 + 2):
            yield b"\x30" * 1024

    chunked = await ca.client.post("/ocsp", content=chunks(), headers=OCSP_REQUEST)
    malformed.append(chunked.content)
    for der in malformed:
        assert (
            der == bytes.fromhex("30030a0101") and _status(der) is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        )
    # beyond the platform's body limit its middleware refuses (413) before the responder sees anything
    limit = ca.app.state.runtime.settings.max_body_bytes
    huge = await ca.client.post("/ocsp", content=b"\x30" * (limit + 1), headers=OCSP_REQUEST)
    assert huge.status_code == 413
    assert (await ca.rows("ocsp_response"), await ca.events()) == before
    assert signer_calls.count == 0


async def test_a_revocation_by_another_instance_shows_after_its_cache_check(
    make_ca: Any, monkeypatch: pytest.MonkeyPatch
):
    async with make_ca() as a, make_ca() as b:  # two CA instances, one database
        await _stop_background_refreshers()
        phone = await _phone(a)
        await a.services.ocsp.refresh_once()
        request = phone.request()
        b.services.ocsp.cache_ttl = timedelta(hours=1)  # b checks its cached answer within the hour
        assert (
            _verified(await _post(b, request), phone.issuing).certificate_status is ocsp.OCSPCertStatus.GOOD
        )

        await revoke(a.client, phone.enrolled, device_id=phone.enrolled.device_id)
        revoked = ocsp.OCSPCertStatus.REVOKED
        assert _verified(await _post(a, request), phone.issuing).certificate_status is revoked
        cached = _verified(await _post(b, request), phone.issuing)  # b has not checked yet
        assert cached.certificate_status is ocsp.OCSPCertStatus.GOOD

        clock = b.services.ca.clock
        with monkeypatch.context() as later:
            later.setattr(b.services.ca, "clock", lambda: clock() + timedelta(hours=1))
            await _post(b, request)  # due: served once more while b checks in the background
            await b.services.ocsp.settle()
        assert _verified(await _post(b, request), phone.issuing).certificate_status is revoked


async def test_an_unconfigured_ca_answers_try_later(platform: RunningStack, tmp_path: Path):
    settings = ca_settings(platform, f"sqlite+aiosqlite:///{tmp_path / 'bare.db'}")
    app = build_app("ca", settings.model_copy(update={"jpki": JpkiTrust()}))  # no J-LIS trust anchors
    async with running(app) as client:
        response = await client.post("/ocsp", content=b"\x30\x00", headers=OCSP_REQUEST)
    assert response.status_code == 503 and response.headers["content-type"] == "application/ocsp-response"
    assert _status(response.content) is ocsp.OCSPResponseStatus.TRY_LATER


async def test_the_fast_ocsp_route_stays_behind_the_rate_limit(make_ca):  # type: ignore[no-untyped-def]
    """POST /ocsp skips FastAPI's routing, not the chassis: a client over its rate gets 429."""
    async with make_ca(rate_limit_per_s=0.5, rate_limit_burst=4) as ca:  # the ceremony took one
        responses = [
            await ca.client.post(
                "/ocsp", content=b"\x30\x00", headers={"content-type": "application/ocsp-request"}
            )
            for _ in range(6)
        ]
    assert responses[0].status_code == 200 and responses[0].content == bytes.fromhex("30030a0101")
    assert responses[-1].status_code == 429 and "retry-after" in responses[-1].headers
