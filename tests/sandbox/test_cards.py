"""Card issue: the JPKI signing-certificate profile, the user-authentication certificate, signing."""

from __future__ import annotations

import base64
from datetime import date
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.sandbox.checks import ATTIME, load, openssl, write_pem
from tests.sandbox.conftest import CardFactory
from tsunagu.jpki import (
    JPKI_SIGNING_POLICY,
    OID_ADDRESS,
    OID_ADDRESS_SUBSTITUTES,
    OID_BIRTH_DATE,
    OID_NAME,
    OID_NAME_SUBSTITUTES,
    OID_SEX,
    Basic4,
    basic4_from_certificate,
)
from tsunagu.sandbox.jlis import JlisSandbox
from tsunagu.sandbox.jlis.profile import JST

NAME, ADDRESS = "髙橋 花子", "北海道札幌市中央区北1条西2丁目1番地 サンプルマンション１０２号室"


def _utf8_string(der: bytes) -> str:
    assert der[0] == 0x0C, "otherName values are UTF8String"
    return der[2:].decode() if der[1] < 0x80 else der[2 + (der[1] & 0x7F) :].decode()


def test_signing_certificate_carries_exactly_the_basic_4_information(
    issue_card: CardFactory, jlis: JlisSandbox
) -> None:
    card = issue_card(name=NAME, address=ADDRESS, birth_date=date(2019, 5, 1), sex="2")
    certificate = load(card.signing_certificate)
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    other_names = {name.type_id: _utf8_string(name.value) for name in san}
    assert other_names == {
        OID_NAME: NAME,
        OID_NAME_SUBSTITUTES: "",
        OID_SEX: "2",
        OID_BIRTH_DATE: "520190501",
        OID_ADDRESS: ADDRESS,
        OID_ADDRESS_SUBSTITUTES: "",
    }
    assert basic4_from_certificate(certificate) == Basic4(NAME, ADDRESS, date(2019, 5, 1), "2")
    # no personal information outside the otherNames
    assert certificate.subject.rfc4514_string() == f"CN={card.signing_serial},C=JP"


def test_signing_certificate_key_usage_policy_validity_and_issuer(
    issue_card: CardFactory, jlis: JlisSandbox
) -> None:
    card = issue_card(birth_date=date(1989, 1, 8))
    certificate = load(card.signing_certificate)
    key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.critical
    assert (key_usage.value.digital_signature, key_usage.value.content_commitment) == (True, True)
    assert not (key_usage.value.key_cert_sign or key_usage.value.key_encipherment or key_usage.value.crl_sign)
    policies = certificate.extensions.get_extension_for_class(x509.CertificatePolicies).value
    assert [p.policy_identifier for p in policies] == [JPKI_SIGNING_POLICY]
    # issued 2026-04-01: birthdays 2027-01-08 … the fifth is 2031-01-08 (end of day, JST)
    assert certificate.not_valid_after_utc.astimezone(JST).date() == date(2031, 1, 8)
    assert certificate.serial_number == int(card.signing_serial, 16)
    certificate.verify_directly_issued_by(jlis.hierarchy.signing.certificate)
    public_key = certificate.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size == 2048
    assert certificate.signature_hash_algorithm is not None
    assert certificate.signature_hash_algorithm.name == "sha256"


def test_auth_certificate_has_a_serial_and_no_personal_information(
    issue_card: CardFactory, jlis: JlisSandbox
) -> None:
    card = issue_card(name=NAME, address=ADDRESS)
    certificate = load(card.auth_certificate)
    der = certificate.public_bytes(serialization.Encoding.DER)
    assert NAME.encode() not in der and ADDRESS.encode() not in der and b"19890108" not in der
    assert not any(isinstance(e.value, x509.SubjectAlternativeName) for e in certificate.extensions)
    key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and not key_usage.content_commitment
    certificate.verify_directly_issued_by(jlis.hierarchy.user_auth.certificate)
    assert certificate.public_key() != load(card.signing_certificate).public_key()


def test_openssl_verifies_both_chains(issue_card: CardFactory, jlis: JlisSandbox, tmp_path: Path) -> None:
    card = issue_card()
    root = write_pem(tmp_path / "root.pem", jlis.certificate_pem("root"))
    for issuer, pem in (("signing", card.signing_certificate), ("user-auth", card.auth_certificate)):
        untrusted = write_pem(tmp_path / f"{issuer}-ca.pem", jlis.certificate_pem(issuer))
        leaf = write_pem(tmp_path / f"{issuer}-leaf.pem", pem)
        result = openssl("verify", "-attime", ATTIME, "-CAfile", root, "-untrusted", untrusted, leaf)
        assert result.returncode == 0, result.stderr
        assert f"{leaf}: OK" in result.stdout
    # and the wrong issuer does not verify
    wrong = openssl(
        "verify",
        "-attime",
        ATTIME,
        "-CAfile",
        root,
        "-untrusted",
        tmp_path / "user-auth-ca.pem",
        tmp_path / "signing-leaf.pem",
    )
    assert wrong.returncode != 0


async def test_card_signs_a_challenge_over_http(client: httpx.AsyncClient) -> None:
    issued = await client.post(
        "/cards", json={"name": NAME, "address": ADDRESS, "birth_date": "1975-12-31", "sex": "3"}
    )
    assert issued.status_code == 201, issued.text
    card = issued.json()
    challenge = "nonce-3f9a: ログインしますか?".encode()
    for which, pem in (("signing", card["signing_certificate"]), ("auth", card["auth_certificate"])):
        data = base64.urlsafe_b64encode(challenge).rstrip(b"=").decode()
        response = await client.post(
            f"/cards/{card['card_id']}/sign", json={"data": data, "certificate": which}
        )
        assert response.status_code == 200, response.text
        signature = base64.urlsafe_b64decode(response.json()["signature"] + "==")
        public_key = load(pem).public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        public_key.verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    shown = (await client.get(f"/cards/{card['card_id']}")).json()
    assert (shown["status"], shown["signing_serial"], shown["signing_revoked"]) == (
        "active",
        card["signing_serial"],
        False,
    )


async def test_bad_card_requests_are_refused_and_store_nothing(
    client: httpx.AsyncClient, jlis: JlisSandbox
) -> None:
    good = {"name": NAME, "address": ADDRESS, "birth_date": "1975-12-31", "sex": "1"}
    cases = [
        ({**good, "sex": "4"}, 422),
        ({**good, "name": ""}, 422),
        ({**good, "birth_date": "1975-13-01"}, 422),
        ({**good, "birth_date": "2027-01-01"}, 400),  # after the sandbox's "now"
        ({**good, "birth_date": "1868-10-22"}, 400),  # before Meiji
        ({**good, "name": "   "}, 400),
        ({**good, "key_storage": "pkcs11"}, 400),  # not implemented, said so
    ]
    for body, status in cases:
        response = await client.post("/cards", json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert jlis.store.state.persons == {} and jlis.store.state.certificates == {}
    assert (await client.post("/cards/nope/sign", json={"data": "AA"})).status_code == 404
    assert (await client.get("/cards/nope")).status_code == 404


def test_a_card_can_keep_its_keys_in_a_pkcs11_token(softhsm_signer_token, tmp_path):  # type: ignore[no-untyped-def]
    """key_storage="pkcs11": the card's keys are generated inside the token and never leave it."""
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import hashes as _hashes
    from cryptography.hazmat.primitives.asymmetric import padding as _padding

    from tests.fixtures.softhsm import pkcs11_settings_for
    from tsunagu.pkcs11 import Pkcs11Token
    from tsunagu.sandbox.jlis import JlisSandbox

    token = Pkcs11Token(pkcs11_settings_for(softhsm_signer_token))
    try:
        sandbox = JlisSandbox(tmp_path / "jlis", card_token=token)
        issued = sandbox.create_card("鍵 太郎", "前橋市", date(1990, 1, 1), "1", key_storage="pkcs11")
        signature, record = sandbox.sign_with_card(issued.card_id, b"challenge")
        certificate = _x509.load_pem_x509_certificate(record.pem.encode())
        certificate.public_key().verify(signature, b"challenge", _padding.PKCS1v15(), _hashes.SHA256())  # type: ignore[call-arg, union-attr]
        key_files = (
            list((tmp_path / "jlis" / "cards").glob("*.key"))
            if (tmp_path / "jlis" / "cards").exists()
            else []
        )
        assert key_files == []  # nothing of the card's keys on disk
        without_token = JlisSandbox(None)
        with pytest.raises(Exception, match="pkcs11"):
            without_token.create_card("x", "y", date(1990, 1, 1), "1", key_storage="pkcs11")
    finally:
        token.close_sync()
