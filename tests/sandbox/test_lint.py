"""pkilint's opinion of everything the sandbox signs (no findings at WARNING or worse)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from tests.sandbox.checks import load, pkilint, write_pem
from tests.sandbox.conftest import CardFactory
from tsunagu.sandbox.jlis import JlisSandbox


def test_certificates_crl_and_ocsp_response_lint_clean(
    jlis: JlisSandbox, issue_card: CardFactory, tmp_path: Path
) -> None:
    card = issue_card()
    jlis.move(card.person_id, "新潟県新潟市中央区新光町4-1")
    files = {
        name: write_pem(tmp_path / f"{name}.pem", pem)
        for name, pem in [
            ("signing-leaf", card.signing_certificate),
            ("auth-leaf", card.auth_certificate),
            *(
                (n, jlis.certificate_pem(n).decode())
                for n in ("root", "signing", "user-auth", "ocsp", "push")
            ),
        ]
    }
    for name, path in files.items():
        count, report = pkilint("lint_pkix_cert", path)
        assert count == 0, (name, report)
    crl = tmp_path / "signing.crl"
    crl.write_bytes(jlis.crl("signing").der)
    count, report = pkilint("lint_crl", crl, "-t", "CRL", "-p", "PKIX")
    assert count == 0, report
    request = ocsp.OCSPRequestBuilder().add_certificate(
        load(card.signing_certificate), jlis.hierarchy.signing.certificate, hashes.SHA1()
    )
    response = tmp_path / "response.der"
    response.write_bytes(jlis.ocsp(request.build().public_bytes(serialization.Encoding.DER)))
    assert (
        ocsp.load_der_ocsp_response(response.read_bytes()).certificate_status == ocsp.OCSPCertStatus.REVOKED
    )
    count, report = pkilint("lint_ocsp_response", response)
    assert count == 0, report
    assert isinstance(x509.load_der_x509_crl(crl.read_bytes()), x509.CertificateRevocationList)
