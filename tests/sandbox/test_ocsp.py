"""The RFC 6960 responder: good, revoked, unknown; nonce; delegated responder; openssl's opinion."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.sandbox.checks import ATTIME, load, openssl, seconds_since_now, write_pem
from tests.sandbox.conftest import CardFactory, FakeClock
from tsunagu.sandbox.jlis import JlisSandbox
from tsunagu.x509 import OcspCertId


def _request(certificate: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


async def _ask(client: httpx.AsyncClient, request: bytes) -> ocsp.OCSPResponse:
    response = await client.post(
        "/ocsp", content=request, headers={"Content-Type": "application/ocsp-request"}
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(response.content)


def _verify_signature(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> None:
    responder = response.certificates[0]
    responder.verify_directly_issued_by(issuer)
    assert (
        ExtendedKeyUsageOID.OCSP_SIGNING
        in responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    key = responder.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and response.signature_hash_algorithm is not None
    key.verify(
        response.signature, response.tbs_response_bytes, padding.PKCS1v15(), response.signature_hash_algorithm
    )


async def test_good_revoked_and_unknown_with_the_nonce_echoed(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory, clock: FakeClock
) -> None:
    card = issue_card()
    signing_ca, auth_ca = jlis.hierarchy.signing.certificate, jlis.hierarchy.user_auth.certificate
    old = load(card.signing_certificate)
    nonce = os.urandom(16)
    good = await _ask(client, _request(old, signing_ca, nonce))
    assert good.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert good.certificate_status == ocsp.OCSPCertStatus.GOOD and good.serial_number == old.serial_number
    assert good.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert (good.this_update_utc, good.next_update_utc) == (clock.now, clock.now.replace(day=2))
    _verify_signature(good, signing_ca)

    clock.advance(hours=3)
    moved_at = clock.now
    jlis.move(card.person_id, "宮城県仙台市青葉区本町3-8-1")
    clock.advance(minutes=1)
    revoked = await _ask(client, _request(old, signing_ca, None))
    assert revoked.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_time_utc == moved_at
    assert revoked.revocation_reason == x509.ReasonFlags.affiliation_changed
    _verify_signature(revoked, signing_ca)

    # the user-authentication certificate is answered by its own CA's delegate
    auth = await _ask(client, _request(load(card.auth_certificate), auth_ca, b"n" * 20))
    assert auth.certificate_status == ocsp.OCSPCertStatus.GOOD
    _verify_signature(auth, auth_ca)

    # a serial the signing CA never issued (the auth certificate's: the other CA issued it)
    cert_id = OcspCertId.for_certificate(signing_ca, signing_ca)
    unknown_request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            cert_id.issuer_name_hash, cert_id.issuer_key_hash, int(card.auth_serial, 16), hashes.SHA1()
        )
        .add_extension(x509.OCSPNonce(b"x" * 16), critical=False)
        .build()
    )
    unknown = await _ask(client, unknown_request.public_bytes(serialization.Encoding.DER))
    assert unknown.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    assert unknown.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"x" * 16
    _verify_signature(unknown, signing_ca)


async def test_unknown_issuer_and_garbage(
    client: httpx.AsyncClient, jlis: JlisSandbox, issue_card: CardFactory
) -> None:
    card = issue_card()
    # the root issued neither card certificate: no responder here speaks for it
    foreign = await _ask(
        client, _request(load(card.signing_certificate), jlis.hierarchy.root.certificate, None)
    )
    assert foreign.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    garbage = await _ask(client, b"\x30\x03\x02\x01\x00")
    assert garbage.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_openssl_ocsp_accepts_the_responses(
    jlis: JlisSandbox, issue_card: CardFactory, tmp_path: Path
) -> None:
    card, moved = issue_card(), issue_card()
    jlis.move(moved.person_id, "愛知県名古屋市中区三の丸3-1-1")
    root = write_pem(tmp_path / "root.pem", jlis.certificate_pem("root"))
    issuer = write_pem(tmp_path / "signing.pem", jlis.certificate_pem("signing"))
    responder = write_pem(tmp_path / "ocsp.pem", jlis.certificate_pem("ocsp"))
    for holder, expected in ((card, "good"), (moved, "revoked")):
        leaf = write_pem(tmp_path / f"{expected}.pem", holder.signing_certificate)
        request = tmp_path / f"{expected}.req"
        made = openssl("ocsp", "-issuer", issuer, "-cert", leaf, "-reqout", request, "-no_nonce")
        assert made.returncode == 0, made.stderr
        response = tmp_path / f"{expected}.resp"
        response.write_bytes(jlis.ocsp(request.read_bytes()))
        trusts: list[list[str | Path]] = [["-VAfile", responder], ["-CAfile", root]]
        for trust in trusts:
            checked = openssl(
                "ocsp", "-respin", response, "-issuer", issuer, "-cert", leaf, *trust, "-attime", ATTIME,
                "-no_nonce", "-validity_period", seconds_since_now(), "-resp_text",
            )  # fmt: skip
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "Response verify OK" in checked.stderr
            assert f"{leaf}: {expected}" in checked.stdout
    assert "Reason: affiliationChanged" in checked.stdout
