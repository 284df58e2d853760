"""tsunagu.x509.remote with an in-process stand-in for the signer service (one per algorithm).

Certificates, CRLs and OCSP responses are checked by cryptography, by the openssl CLI and, when
installed, by pkilint (RFC 5280 / RFC 6960 lints; findings of severity ERROR or worse fail).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import SignatureAlgorithmOID

from tests.libs.x509_checks import ATTIME, openssl, pkilint, seconds_since_now
from tests.libs.x509_factories import (
    ALGORITHMS,
    NOW,
    FakeRemoteSigner,
    end_entity_builder,
    independent_verify,
    new_key,
    ocsp_responder_builder,
    root_builder,
)
from tsunagu.errors import DomainError
from tsunagu.x509 import (
    OcspCertId,
    OcspSingleResponse,
    RemoteSignatureInvalid,
    SignerAlgorithmMismatch,
    UnsupportedSignatureAlgorithm,
    sign_certificate,
    sign_crl,
    sign_ocsp_response,
    signature_algorithm_for,
)

EXPECTED_OID = {
    "ES256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "RS256": SignatureAlgorithmOID.RSA_WITH_SHA256,
    "PS256": SignatureAlgorithmOID.RSASSA_PSS,
    "EdDSA": SignatureAlgorithmOID.ED25519,
}
REVOKED_ENTRIES = 10_000


@dataclass
class Pki:
    """A root, an end entity and a delegated OCSP responder, all signed through fake signers."""

    algorithm: str
    root_signer: FakeRemoteSigner
    responder_signer: FakeRemoteSigner
    root: x509.Certificate
    end_entity: x509.Certificate
    responder: x509.Certificate
    folder: Path

    def write(self, file_name: str, data: bytes) -> Path:
        path = self.folder / file_name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module", params=ALGORITHMS)
async def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    algorithm: str = request.param
    root_key, responder_key = new_key(algorithm), new_key(algorithm)
    root_signer = FakeRemoteSigner(algorithm, root_key)
    root = await sign_certificate(
        root_builder(root_key.public_key()), root_signer, issuer_public_key=root_key.public_key()
    )
    issue = {"issuer_public_key": root_key.public_key()}
    end_entity_key = ec.generate_private_key(ec.SECP256R1())
    end_entity = await sign_certificate(
        end_entity_builder(root, end_entity_key.public_key()), root_signer, **issue
    )
    responder = await sign_certificate(
        ocsp_responder_builder(root, responder_key.public_key()), root_signer, **issue
    )
    pki = Pki(
        algorithm,
        root_signer,
        FakeRemoteSigner(algorithm, responder_key),
        root,
        end_entity,
        responder,
        tmp_path_factory.mktemp(f"pki-{algorithm}"),
    )
    for file_name, cert in [("root.pem", root), ("ee.pem", end_entity), ("responder.pem", responder)]:
        pki.write(file_name, cert.public_bytes(Encoding.PEM))
    return pki


# --- certificates ---------------------------------------------------------------------------


def test_certificates_verify_with_cryptography(pki: Pki) -> None:
    pki.root.verify_directly_issued_by(pki.root)
    pki.end_entity.verify_directly_issued_by(pki.root)
    pki.responder.verify_directly_issued_by(pki.root)
    assert pki.end_entity.signature_algorithm_oid == EXPECTED_OID[pki.algorithm]
    independent_verify(
        pki.algorithm, pki.root.public_key(), pki.end_entity.signature, pki.end_entity.tbs_certificate_bytes
    )
    # what went to the signer is exactly the TBS that ended up in the certificate
    assert pki.root_signer.calls[1] == pki.end_entity.tbs_certificate_bytes


def test_signature_algorithm_parameters(pki: Pki) -> None:
    parameters = pki.end_entity.signature_algorithm_parameters
    expected = {"ES256": ec.ECDSA, "RS256": padding.PKCS1v15, "PS256": padding.PSS, "EdDSA": type(None)}
    assert isinstance(parameters, expected[pki.algorithm])
    if pki.algorithm == "PS256":
        # RSASSA-PSS-params: SHA-256, MGF1 with SHA-256, saltLength [2] INTEGER 32 (RFC 4055 §3.1)
        algorithm_identifier = bytes.fromhex(
            "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d"
            "010108300d06096086480165030402010500a203020120"
        )
        assert pki.end_entity.public_bytes(Encoding.DER).count(algorithm_identifier) == 2


def test_openssl_verifies_the_chain(pki: Pki) -> None:
    result = openssl("verify", "-attime", ATTIME, "-CAfile", pki.folder / "root.pem", pki.folder / "ee.pem")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("OK")


# --- CRL --------------------------------------------------------------------------------------


def _revoked(count: int) -> list[x509.RevokedCertificate]:
    reason = x509.CRLReason(x509.ReasonFlags.key_compromise)
    return [
        x509.RevokedCertificateBuilder()
        .serial_number(0x10_0000 + i)
        .revocation_date(NOW)
        .add_extension(reason, critical=False)
        .build()
        for i in range(count)
    ]


def _crl_builder(pki: Pki, revoked: list[x509.RevokedCertificate]) -> x509.CertificateRevocationListBuilder:
    ski = pki.root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # all entries at once: chaining add_revoked_certificate copies the list each time
    return x509.CertificateRevocationListBuilder(
        issuer_name=pki.root.subject,
        last_update=NOW,
        next_update=NOW.replace(day=2),
        extensions=[
            x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(7)),
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
            ),
        ],
        revoked_certificates=revoked,
    )


@pytest.fixture(scope="module")
def ten_thousand_revoked() -> list[x509.RevokedCertificate]:
    return _revoked(REVOKED_ENTRIES)


async def test_large_crl_is_signed_remotely(
    pki: Pki, ten_thousand_revoked: list[x509.RevokedCertificate]
) -> None:
    crl = await sign_crl(
        _crl_builder(pki, ten_thousand_revoked), pki.root_signer, issuer_public_key=pki.root.public_key()
    )
    assert len(crl) == REVOKED_ENTRIES
    assert crl.is_signature_valid(pki.root.public_key())
    assert crl.signature_algorithm_oid == EXPECTED_OID[pki.algorithm]
    revoked = crl.get_revoked_certificate_by_serial_number(0x10_0000 + 4321)
    assert revoked is not None and revoked.revocation_date_utc == NOW
    if shutil.which("openssl"):
        path = pki.write("big.crl", crl.public_bytes(Encoding.DER))
        result = openssl("crl", "-in", path, "-inform", "DER", "-noout", "-CAfile", pki.folder / "root.pem")
        assert result.returncode == 0 and "verify OK" in result.stderr, result.stderr


# --- OCSP -------------------------------------------------------------------------------------


def _single_response(pki: Pki, status: ocsp.OCSPCertStatus) -> OcspSingleResponse:
    revoked = status is ocsp.OCSPCertStatus.REVOKED
    return OcspSingleResponse(
        cert_id=OcspCertId.for_certificate(pki.end_entity, pki.root),  # SHA-1, as openssl asks
        status=status,
        this_update=NOW,
        next_update=NOW.replace(day=2),
        revocation_time=NOW.replace(hour=3) if revoked else None,
        revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
    )


async def _sign_ocsp(
    pki: Pki, status: ocsp.OCSPCertStatus, nonce: bytes, **options: Any
) -> ocsp.OCSPResponse:
    return await sign_ocsp_response(
        [_single_response(pki, status)],
        options.pop("signer", pki.responder_signer),
        responder_certificate=pki.responder,
        produced_at=NOW,
        extensions=[x509.Extension(x509.OCSPNonce.oid, False, x509.OCSPNonce(nonce))],
        **options,
    )


@pytest.mark.parametrize("status", [ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED])
async def test_ocsp_response_signed_by_delegated_responder(pki: Pki, status: ocsp.OCSPCertStatus) -> None:
    nonce = secrets.token_bytes(16)
    signed = await _sign_ocsp(pki, status, nonce)
    response = ocsp.load_der_ocsp_response(signed.public_bytes(Encoding.DER))
    assert response.produced_at_utc == NOW
    assert response.responder_key_hash is not None and response.responder_name is None
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.certificate_status is status
    assert response.serial_number == pki.end_entity.serial_number
    assert response.certificates == [pki.responder]
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert response.signature_algorithm_oid == EXPECTED_OID[pki.algorithm]
    independent_verify(
        pki.algorithm, pki.responder.public_key(), response.signature, response.tbs_response_bytes
    )
    if status is ocsp.OCSPCertStatus.REVOKED:
        assert response.revocation_reason is x509.ReasonFlags.key_compromise
    if shutil.which("openssl"):
        _openssl_checks_ocsp(pki, signed, status)


def _openssl_checks_ocsp(pki: Pki, response: ocsp.OCSPResponse, status: ocsp.OCSPCertStatus) -> None:
    path = pki.write(f"ocsp-{status.name.lower()}.der", response.public_bytes(Encoding.DER))
    # -CAfile (not -VAfile): openssl must accept the responder through the root and its OCSPSigning EKU
    result = openssl(
        "ocsp", "-respin", path, "-CAfile", pki.folder / "root.pem", "-issuer", pki.folder / "root.pem",
        "-cert", pki.folder / "ee.pem", "-no_nonce", "-resp_text",
        "-attime", ATTIME, "-validity_period", seconds_since_now(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Response verify OK" in result.stderr, result.stderr
    assert f"ee.pem: {status.name.lower()}" in result.stdout, result.stdout


async def test_ocsp_response_answers_a_request_with_several_certificates(pki: Pki) -> None:
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(pki.end_entity, pki.root, hashes.SHA256())
        .add_extension(x509.OCSPNonce(b"r" * 16), critical=False)
        .build()
    )
    asked = OcspCertId.from_request(request)
    other = OcspCertId.for_certificate(pki.responder, pki.root)
    good = OcspSingleResponse(asked, ocsp.OCSPCertStatus.GOOD, NOW)
    revoked = OcspSingleResponse(other, ocsp.OCSPCertStatus.REVOKED, NOW, revocation_time=NOW)
    response = await sign_ocsp_response(
        [good, revoked],
        pki.responder_signer,
        responder_certificate=pki.responder,
        produced_at=NOW,
        responder_id=ocsp.OCSPResponderEncoding.NAME,
        include_responder_certificate=False,
    )
    assert response.responder_name == pki.responder.subject
    assert response.certificates == []
    assert len(response.extensions) == 0
    singles = list(response.responses)
    assert [single.certificate_status for single in singles] == [
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
    ]
    assert singles[0].issuer_key_hash == request.issuer_key_hash
    assert singles[0].issuer_name_hash == request.issuer_name_hash
    assert singles[0].hash_algorithm.name == "sha256"
    assert singles[1].serial_number == pki.responder.serial_number
    assert singles[1].revocation_reason is None and singles[1].next_update_utc is None
    independent_verify(
        pki.algorithm, pki.responder.public_key(), response.signature, response.tbs_response_bytes
    )


def test_single_response_rejects_inconsistent_revocation_data(pki: Pki) -> None:
    cert_id = OcspCertId.for_certificate(pki.end_entity, pki.root)
    with pytest.raises(ValueError, match="revocation_time"):
        OcspSingleResponse(cert_id, ocsp.OCSPCertStatus.REVOKED, NOW)
    with pytest.raises(ValueError, match="revocation_time"):
        OcspSingleResponse(cert_id, ocsp.OCSPCertStatus.GOOD, NOW, revocation_time=NOW)


# --- misconfigured signers --------------------------------------------------------------------


async def test_signer_with_the_wrong_key_is_refused(pki: Pki) -> None:
    impostor = FakeRemoteSigner(pki.algorithm, _cached_key(pki.algorithm))
    builder = end_entity_builder(pki.root, ec.generate_private_key(ec.SECP256R1()).public_key(), 0x4001)
    with pytest.raises(RemoteSignatureInvalid) as raised:
        await sign_certificate(builder, impostor, issuer_public_key=pki.root.public_key())
    assert impostor.calls, "the signer was asked, and its answer rejected"
    assert isinstance(raised.value, DomainError) and raised.value.status == 502
    with pytest.raises(RemoteSignatureInvalid):
        await sign_crl(_crl_builder(pki, _revoked(3)), impostor, issuer_public_key=pki.root.public_key())
    with pytest.raises(RemoteSignatureInvalid):
        await _sign_ocsp(pki, ocsp.OCSPCertStatus.GOOD, b"n" * 16, signer=impostor)


_KEYS: dict[str, CertificateIssuerPrivateKeyTypes] = {}


def _cached_key(algorithm: str) -> CertificateIssuerPrivateKeyTypes:
    return _KEYS.setdefault(algorithm, new_key(algorithm))


async def test_signer_algorithm_not_fitting_the_issuer_key_is_refused_before_signing() -> None:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = FakeRemoteSigner("ES256", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SignerAlgorithmMismatch, match="ES256"):
        await sign_certificate(
            root_builder(root_key.public_key()), signer, issuer_public_key=root_key.public_key()
        )
    assert signer.calls == []


async def test_p384_issuer_is_not_an_es256_issuer() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    signer = FakeRemoteSigner("ES256", key)
    with pytest.raises(SignerAlgorithmMismatch):
        await sign_certificate(root_builder(key.public_key()), signer, issuer_public_key=key.public_key())
    assert signer.calls == []


async def test_signer_that_signs_with_another_algorithm_than_it_announces_is_refused() -> None:
    key = _cached_key("RS256")
    signer = FakeRemoteSigner("RS256", key, signs_as="PS256")
    with pytest.raises(RemoteSignatureInvalid):
        await sign_certificate(root_builder(key.public_key()), signer, issuer_public_key=key.public_key())


async def test_ecdsa_signature_in_raw_format_is_refused() -> None:
    key = _cached_key("ES256")
    signer = FakeRemoteSigner("ES256", key, ecdsa_format="raw")
    with pytest.raises(RemoteSignatureInvalid):
        await sign_certificate(root_builder(key.public_key()), signer, issuer_public_key=key.public_key())


async def test_unknown_algorithm_is_refused() -> None:
    key = _cached_key("ES256")
    signer = FakeRemoteSigner("HS256", key)
    with pytest.raises(UnsupportedSignatureAlgorithm, match="HS256"):
        await sign_certificate(root_builder(key.public_key()), signer, issuer_public_key=key.public_key())
    with pytest.raises(UnsupportedSignatureAlgorithm):
        signature_algorithm_for("ES384")
    assert signer.calls == []


# --- pkilint ----------------------------------------------------------------------------------


async def test_pkilint_finds_no_errors(pki: Pki) -> None:
    for file_name in ["root.pem", "ee.pem", "responder.pem"]:
        count, report = pkilint("lint_pkix_cert", pki.folder / file_name)
        assert count == 0, f"{file_name}: {report}"
    crl = await sign_crl(
        _crl_builder(pki, _revoked(5)), pki.root_signer, issuer_public_key=pki.root.public_key()
    )
    count, report = pkilint(
        "lint_crl", pki.write("small.crl", crl.public_bytes(Encoding.DER)), "-t", "CRL", "-p", "PKIX"
    )
    assert count == 0, report
    response = await _sign_ocsp(pki, ocsp.OCSPCertStatus.REVOKED, b"n" * 16)
    count, report = pkilint("lint_ocsp_response", pki.write("lint.ocsp", response.public_bytes(Encoding.DER)))
    assert count == 0, report


async def test_pkilint_catches_a_certificate_without_authority_key_identifier(tmp_path: Path) -> None:
    root_key = _cached_key("ES256")
    signer = FakeRemoteSigner("ES256", root_key)
    issue = {"issuer_public_key": root_key.public_key()}
    root = await sign_certificate(root_builder(root_key.public_key()), signer, **issue)
    subject_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    broken = await sign_certificate(end_entity_builder(root, subject_key, with_aki=False), signer, **issue)
    path = tmp_path / "broken.pem"
    path.write_bytes(broken.public_bytes(Encoding.PEM))
    count, report = pkilint("lint_pkix_cert", path)
    assert count > 0
    assert "authority_key_identifier_extension_absent" in report
