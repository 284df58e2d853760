"""Enrollment end to end on the real stack: the card proves the person, the phone gets its two
certificates, one person keeps one number across phones, renewed cards and moves."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.ca.conftest import CaHarness
from tsunagu.ca.domain.user_number import is_valid_user_number
from tsunagu.devstack.postgres import scratch_database
from tsunagu.wallet import enroll, request_app_certificate


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


async def test_a_phone_enrolls_and_its_chain_verifies_with_cryptography_and_openssl(
    ca: CaHarness, tmp_path: Path
):
    card, issued = await ca.new_card()
    enrolled = await enroll(ca.client, card)

    assert is_valid_user_number(enrolled.user_number) and enrolled.new_person
    signing, auth = _cert(enrolled.signing.certificate_pem), _cert(enrolled.authentication.certificate_pem)
    issuing, root = (_cert(pem) for pem in enrolled.signing.chain)
    for certificate in (signing, auth):
        certificate.verify_directly_issued_by(issuing)
        subject = certificate.subject
        assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == enrolled.user_number
        # no personal information: not the name, not the address, not the JPKI serial
        text = subject.rfc4514_string() + str(certificate.extensions)
        assert "花子" not in text and "前橋" not in text and issued["signing_serial"] not in text
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    signing_usage = signing.extensions.get_extension_for_class(x509.KeyUsage).value
    assert signing_usage.content_commitment and signing_usage.digital_signature
    auth_usage = auth.extensions.get_extension_for_class(x509.KeyUsage).value
    assert auth_usage.digital_signature and not auth_usage.content_commitment
    assert (
        ExtendedKeyUsageOID.CLIENT_AUTH
        in auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert signing.subject.get_attributes_for_oid(NameOID.COMMON_NAME) != auth.subject.get_attributes_for_oid(
        NameOID.COMMON_NAME
    )

    # openssl, which knows nothing of Tsunagu: chain and CRL check against the published CRLs
    await ca.services.crls.publish_due()
    files = {
        "root.pem": root.public_bytes(Encoding.PEM),
        "issuing.pem": issuing.public_bytes(Encoding.PEM),
        "auth.pem": auth.public_bytes(Encoding.PEM),
    }
    for authority_id, name in (("root-1", "root.crl"), ("issuing-1", "issuing.crl")):
        response = await ca.client.get(f"/crl/{authority_id}.crl")
        assert response.status_code == 200 and response.headers["content-type"] == "application/pkix-crl"
        files[name] = x509.load_der_x509_crl(response.content).public_bytes(Encoding.PEM)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "crls.pem").write_bytes(files["root.crl"] + files["issuing.crl"])
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check_all",
            "-CAfile",
            tmp_path / "root.pem",
            "-untrusted",
            tmp_path / "issuing.pem",
            "-CRLfile",
            tmp_path / "crls.pem",
            tmp_path / "auth.pem",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr

    events = await ca.events()
    assert [e["type"] for e in events] == [
        "tsunagu.ca.person.enrolled",
        "tsunagu.ca.certificate.issued",
        "tsunagu.ca.certificate.issued",
    ]
    assert all(
        e["subject"] == enrolled.user_number and e["partitionkey"] == enrolled.user_number for e in events
    )
    evidence = await ca.rows("proofing_record")
    assert len(evidence) == 1 and evidence[0]["jpki_serial"] == issued["signing_serial"]
    assert x509.load_der_x509_certificate(evidence[0]["jpki_certificate_der"]).serial_number == int(
        issued["signing_serial"], 16
    )


async def test_second_phone_and_app_certificates_keep_the_number(ca: CaHarness):
    card, _ = await ca.new_card()
    first = await enroll(ca.client, card)
    second = await enroll(ca.client, card)
    assert second.user_number == first.user_number and not second.new_person
    assert second.device_id != first.device_id
    app = await request_app_certificate(ca.client, second, "city-library")
    certificate = _cert(app.certificate_pem)
    assert certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == first.user_number
    names = {
        _cert(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for pem in (first.signing.certificate_pem, second.signing.certificate_pem, app.certificate_pem)
    }
    assert len(names) == 3
    assert len(await ca.rows("person")) == 1


async def test_a_renewed_card_and_a_moved_person_keep_the_number(ca: CaHarness):
    card, issued = await ca.new_card()
    first = await enroll(ca.client, card)
    # J-LIS renews the card (new signing certificate) and pushes it to jlis-sync, which links it
    renewal = (await ca.jlis.post(f"/persons/{issued['person_id']}/renew")).json()
    await _until_linked(ca, renewal["new_serial"])
    renewed = await enroll(ca.client, card)
    assert renewed.user_number == first.user_number and not renewed.new_person
    moved = (
        await ca.jlis.post(
            f"/persons/{issued['person_id']}/move", json={"address": "群馬県高崎市高松町35番地1"}
        )
    ).json()
    await _until_linked(ca, moved["new_serial"])
    after_move = await enroll(ca.client, card)
    assert after_move.user_number == first.user_number
    assert len(await ca.rows("person")) == 1
    assert {r["jpki_serial"] for r in await ca.rows("proofing_record")} == {
        issued["signing_serial"],
        renewal["new_serial"],
        moved["new_serial"],
    }


async def _until_linked(ca: CaHarness, serial: str) -> None:
    """jlis-sync learns the new certificate from J-LIS's push (a separate process): wait for it."""
    client = ca.services.enrollments.jlis
    for _ in range(200):
        if await client.link_owner(serial) is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("jlis-sync never linked the new certificate")


async def test_concurrent_enrollments_of_one_person_never_make_two_numbers(make_ca):  # type: ignore[no-untyped-def]
    async with scratch_database("tsunagu_ca") as url, make_ca(url) as ca:
        card, _ = await ca.new_card()
        results = await asyncio.gather(*(enroll(ca.client, card) for _ in range(6)), return_exceptions=True)
        numbers = {r.user_number for r in results if not isinstance(r, BaseException)}
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(numbers) == 1, results
        assert all(getattr(f, "status", None) == 409 for f in failures), failures
        assert len(await ca.rows("person")) == 1
