"""Pre-issuance linting (tsunagu.ca.domain.lint) on the profiles the CA issues, and on broken ones.

The builders below mirror the CA's profiles: a root and an issuing CA, end-entity certificates
(digitalSignature or nonRepudiation), an OCSP responder and CRLs. Extensions are kept as a list
so a test can drop one or flip its criticality and show the lint catches it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from pkilint import pkix  # type: ignore[import-untyped]
from pkilint.pkix import certificate, crl, extension, name  # type: ignore[import-untyped]

from tsunagu.ca.domain.lint import CertificateLintFailed, CrlLintFailed, Linter, LintFinding
from tsunagu.ca.domain.lint import _with_first_entries as with_first_entries

NOW = datetime.datetime(2026, 4, 1, 9, 0, tzinfo=datetime.UTC)
POLICY = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1.1")
ROOT_CRL = "http://127.0.0.1:8102/crl/root.crl"
ISSUING_CRL = "http://127.0.0.1:8102/crl/issuing.crl"
OCSP_URL = "http://127.0.0.1:8102/ocsp"
ISSUING_CERT_URL = "http://127.0.0.1:8102/certs/issuing.cer"
# 16 octets with the top bit set: DER needs a leading zero octet (17 in all), still within 20.
EE_SERIAL = int.from_bytes(bytes.fromhex("8f0123456789abcdef0123456789abcd"), "big")
# Every entry reason the CA uses; unspecified (0) must be omitted instead (RFC 5280 §5.3.1).
REASONS: list[x509.ReasonFlags | None] = [
    x509.ReasonFlags.key_compromise,
    x509.ReasonFlags.affiliation_changed,
    x509.ReasonFlags.superseded,
    x509.ReasonFlags.cessation_of_operation,
    x509.ReasonFlags.certificate_hold,
    x509.ReasonFlags.privilege_withdrawn,
    None,
]

Extensions = list[tuple[x509.ExtensionType, bool]]

ROOT_KEY = ec.derive_private_key(1001, ec.SECP256R1())
ISSUING_KEY = ec.derive_private_key(1002, ec.SECP256R1())
SUBJECT_KEY = ec.derive_private_key(1003, ec.SECP256R1())
OCSP_KEY = ec.derive_private_key(1004, ec.SECP256R1())


# --- builders ---------------------------------------------------------------------------------


def ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tsunagu"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def person_name(identifier: str = "0123456789ab") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tsunagu"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "TSU-0001"),
            x509.NameAttribute(NameOID.COMMON_NAME, identifier),
        ]
    )


def key_usage(**bits: bool) -> x509.KeyUsage:
    names = [
        *("digital_signature", "content_commitment", "key_encipherment", "data_encipherment"),
        *("key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
    ]
    return x509.KeyUsage(**{bit: bits.get(bit, False) for bit in names})


def aki(issuer_key: ec.EllipticCurvePrivateKey) -> x509.AuthorityKeyIdentifier:
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


def crl_distribution_point(uri: str) -> x509.CRLDistributionPoints:
    point = x509.DistributionPoint([x509.UniformResourceIdentifier(uri)], None, None, None)
    return x509.CRLDistributionPoints([point])


def root_extensions() -> Extensions:
    return [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (key_usage(key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(ROOT_KEY.public_key()), False),
    ]


def issuing_extensions() -> Extensions:
    return [
        (x509.BasicConstraints(ca=True, path_length=0), True),
        (key_usage(key_cert_sign=True, crl_sign=True), True),
        (x509.SubjectKeyIdentifier.from_public_key(ISSUING_KEY.public_key()), False),
        (aki(ROOT_KEY), False),
        (crl_distribution_point(ROOT_CRL), False),
    ]


def end_entity_extensions(usage: str = "digital_signature") -> Extensions:
    access = [
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL)),
        x509.AccessDescription(
            AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(ISSUING_CERT_URL)
        ),
    ]
    return [
        (x509.BasicConstraints(ca=False, path_length=None), True),
        (key_usage(**{usage: True}), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.CertificatePolicies([x509.PolicyInformation(POLICY, None)]), False),
        (x509.SubjectKeyIdentifier.from_public_key(SUBJECT_KEY.public_key()), False),
        (aki(ISSUING_KEY), False),
        (crl_distribution_point(ISSUING_CRL), False),
        (x509.AuthorityInformationAccess(access), False),
    ]


def ocsp_extensions() -> Extensions:
    return [
        (key_usage(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False),
        (x509.OCSPNoCheck(), False),
        (x509.SubjectKeyIdentifier.from_public_key(OCSP_KEY.public_key()), False),
        (aki(ISSUING_KEY), False),
    ]


def without(extensions: Extensions, kind: type[x509.ExtensionType]) -> Extensions:
    kept = [(value, critical) for value, critical in extensions if not isinstance(value, kind)]
    assert len(kept) == len(extensions) - 1, f"no {kind.__name__} to drop"
    return kept


def with_criticality(extensions: Extensions, kind: type[x509.ExtensionType], critical: bool) -> Extensions:
    return [(value, critical if isinstance(value, kind) else was) for value, was in extensions]


def certificate_der(
    profile: str, extensions: Extensions | None = None, *, subject: x509.Name | None = None, serial: int = 0
) -> bytes:
    """DER of a ``profile`` certificate ("root", "issuing", "end-entity", "ocsp"), optionally with
    other extensions, subject or serial."""
    subject_key, issuer_key, issuer, default_subject, days, default_extensions = {
        "root": (ROOT_KEY, ROOT_KEY, ca_name("Root"), ca_name("Root"), 7300, root_extensions),
        "issuing": (ISSUING_KEY, ROOT_KEY, ca_name("Root"), ca_name("Issuing"), 3650, issuing_extensions),
        "end-entity": (
            SUBJECT_KEY,
            ISSUING_KEY,
            ca_name("Issuing"),
            person_name(),
            730,
            end_entity_extensions,
        ),
        "ocsp": (OCSP_KEY, ISSUING_KEY, ca_name("Issuing"), ca_name("OCSP"), 90, ocsp_extensions),
    }[profile]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject if subject is not None else default_subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(serial or EE_SERIAL)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=days))
    )
    for value, critical in extensions if extensions is not None else default_extensions():
        builder = builder.add_extension(value, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)


def revoked(serial: int, reason: x509.ReasonFlags | None) -> x509.RevokedCertificate:
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW)
    if reason is not None:
        builder = builder.add_extension(x509.CRLReason(reason), critical=False)
    return builder.build()


def entries(count: int) -> list[x509.RevokedCertificate]:
    return [revoked(EE_SERIAL + index, REASONS[index % len(REASONS)]) for index in range(count)]


def crl_der(
    revoked_certificates: list[x509.RevokedCertificate], *, number: bool = True, with_aki: bool = True
) -> bytes:
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=ca_name("Issuing"),
        last_update=NOW,
        next_update=NOW + datetime.timedelta(days=1),
        revoked_certificates=revoked_certificates,
    )
    if with_aki:
        builder = builder.add_extension(aki(ISSUING_KEY), critical=False)
    if number:
        builder = builder.add_extension(x509.CRLNumber(42), critical=False)
    return builder.sign(ISSUING_KEY, hashes.SHA256()).public_bytes(Encoding.DER)


def with_raw_serial(der: bytes, encoded_serial: bytes) -> bytes:
    """A serial-1 certificate with its serial INTEGER content swapped (signature left stale)."""
    before = bytes.fromhex("a003020102" + "020101")  # [0] version v3, INTEGER 1
    assert der.count(before) == 1
    return der.replace(before, bytes.fromhex("a003020102" + "0201") + encoded_serial)


def codes(findings: list[LintFinding]) -> set[str]:
    return {finding.code for finding in findings}


@pytest.fixture(scope="module")
def linter() -> Linter:
    return Linter()


# --- the CA's profiles are clean --------------------------------------------------------------

PROFILES: dict[str, Callable[[], bytes]] = {
    "root": lambda: certificate_der("root"),
    "issuing": lambda: certificate_der("issuing"),
    "end-entity-signature": lambda: certificate_der("end-entity"),
    "end-entity-non-repudiation": lambda: certificate_der(
        "end-entity", end_entity_extensions("content_commitment")
    ),
    "ocsp-responder": lambda: certificate_der("ocsp"),
}


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_have_no_findings_at_notice_or_above(linter: Linter, profile: str) -> None:
    der = PROFILES[profile]()
    assert linter.lint_certificate(der) == []
    assert linter.check_certificate(der) == []


@pytest.mark.parametrize("count", [0, 1, len(REASONS) * 3])
def test_crls_with_every_used_reason_have_no_findings(linter: Linter, count: int) -> None:
    der = crl_der(entries(count))
    assert linter.lint_crl(der) == []
    assert linter.check_crl(der) == []


# --- broken certificates are stopped --------------------------------------------------------------

BROKEN_CERTIFICATES: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "ca-without-key-usage": (
        lambda: certificate_der("issuing", without(issuing_extensions(), x509.KeyUsage)),
        "pkix.ca_certificate_no_ku_extension",
        "ERROR",
    ),
    "ca-without-ski": (
        lambda: certificate_der("issuing", without(issuing_extensions(), x509.SubjectKeyIdentifier)),
        "pkix.certificate_skid_ca_missing",
        "ERROR",
    ),
    "ca-basic-constraints-not-critical": (
        lambda: certificate_der("root", with_criticality(root_extensions(), x509.BasicConstraints, False)),
        "pkix.basic_constraints_extension_not_critical",
        "ERROR",
    ),
    "end-entity-without-aki": (
        lambda: certificate_der("end-entity", without(end_entity_extensions(), x509.AuthorityKeyIdentifier)),
        "pkix.authority_key_identifier_extension_absent",
        "ERROR",
    ),
    "end-entity-without-ski": (
        lambda: certificate_der("end-entity", without(end_entity_extensions(), x509.SubjectKeyIdentifier)),
        "pkix.certificate_skid_end_entity_missing",
        "WARNING",
    ),
    "end-entity-key-usage-not-critical": (
        lambda: certificate_der(
            "end-entity", with_criticality(end_entity_extensions(), x509.KeyUsage, False)
        ),
        "pkix.key_usage_extension_not_critical",
        "WARNING",
    ),
    "serial-zero": (
        lambda: with_raw_serial(certificate_der("end-entity", serial=1), b"\x00"),
        "pkix.certificate_serial_number_out_of_range",
        "ERROR",
    ),
    "serial-negative": (
        lambda: with_raw_serial(certificate_der("end-entity", serial=1), b"\xff"),
        "pkix.certificate_serial_number_out_of_range",
        "ERROR",
    ),
    "not-der": (lambda: b"\x30\x80\x00\x00", "tsunagu.lint_document_not_decodable", "FATAL"),
}


@pytest.mark.parametrize("case", BROKEN_CERTIFICATES)
def test_broken_certificates_raise_with_the_finding(linter: Linter, case: str) -> None:
    make, code, severity = BROKEN_CERTIFICATES[case]
    der = make()

    with pytest.raises(CertificateLintFailed) as raised:
        linter.check_certificate(der)

    error = raised.value
    assert [(f.severity, f.code) for f in error.findings] == [(severity, code)]
    problem = error.to_problem().model_dump()
    assert problem["type"] == "urn:tsunagu:problem:certificate-lint-failed"
    assert problem["status"] == 422
    assert problem["findings"] == [{"severity": severity, "code": code, "node": error.findings[0].node}]
    assert code in problem["detail"]


def test_block_at_error_returns_warnings_instead_of_raising() -> None:
    der = certificate_der("end-entity", without(end_entity_extensions(), x509.SubjectKeyIdentifier))

    findings = Linter(block_at="ERROR").check_certificate(der)

    assert [(f.severity, f.code, f.node) for f in findings] == [
        ("WARNING", "pkix.certificate_skid_end_entity_missing", "certificate")
    ]


def test_allowed_codes_are_returned_and_others_still_block() -> None:
    linter = Linter(allow=frozenset({"pkix.certificate_skid_end_entity_missing"}))
    no_ski = without(end_entity_extensions(), x509.SubjectKeyIdentifier)

    assert codes(linter.check_certificate(certificate_der("end-entity", no_ski))) == {
        "pkix.certificate_skid_end_entity_missing"
    }
    with pytest.raises(CertificateLintFailed) as raised:
        linter.check_certificate(certificate_der("end-entity", without(no_ski, x509.AuthorityKeyIdentifier)))
    assert codes(list(raised.value.findings)) == {"pkix.authority_key_identifier_extension_absent"}


@pytest.mark.parametrize("block_at", ["INFO", "DEBUG", "warning", ""])
def test_block_at_must_be_a_blocking_severity(block_at: str) -> None:
    with pytest.raises(ValueError, match="block_at"):
        Linter(block_at=block_at)


# --- broken CRLs are stopped ------------------------------------------------------------------------

BROKEN_CRLS: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "without-crl-number": (lambda: crl_der(entries(3), number=False), "pkix.crl_number_missing", "ERROR"),
    "without-aki": (
        lambda: crl_der(entries(3), with_aki=False),
        "pkix.authority_key_identifier_missing",
        "ERROR",
    ),
    "unspecified-reason": (
        lambda: crl_der([revoked(7, x509.ReasonFlags.unspecified)]),
        "pkix.crl_unspecified_crl_entry_reason_code",
        "WARNING",
    ),
}


@pytest.mark.parametrize("case", BROKEN_CRLS)
def test_broken_crls_raise_with_the_finding(linter: Linter, case: str) -> None:
    make, code, severity = BROKEN_CRLS[case]

    with pytest.raises(CrlLintFailed) as raised:
        linter.check_crl(make())

    assert [(f.severity, f.code) for f in raised.value.findings] == [(severity, code)]
    problem = raised.value.to_problem().model_dump()
    assert problem["type"] == "urn:tsunagu:problem:crl-lint-failed"
    assert problem["status"] == 500


# --- large CRLs: linting the first N entries ---------------------------------------------------------


def test_sample_keeps_everything_but_the_later_entries() -> None:
    full_der = crl_der(entries(50))

    sample = x509.load_der_x509_crl(with_first_entries(full_der, 10))

    full = x509.load_der_x509_crl(full_der)
    assert [entry.serial_number for entry in sample] == [entry.serial_number for entry in full][:10]
    assert [list(entry.extensions) for entry in sample] == [list(entry.extensions) for entry in full][:10]
    assert sample.issuer == full.issuer
    assert list(sample.extensions) == list(full.extensions)
    assert (sample.last_update_utc, sample.next_update_utc) == (full.last_update_utc, full.next_update_utc)
    assert sample.signature_algorithm_oid == full.signature_algorithm_oid
    assert with_first_entries(full_der, 50) == full_der  # nothing to cut: the very same bytes


def test_max_entries_linted_lints_only_the_first_entries(linter: Linter) -> None:
    # entry 40 is bad: found when linted in full or when the sample reaches it, at the same node
    bad = [*entries(40), revoked(7, x509.ReasonFlags.unspecified), *entries(9)]
    der = crl_der(bad)

    with pytest.raises(CrlLintFailed) as full:
        linter.check_crl(der)
    with pytest.raises(CrlLintFailed) as sampled:
        linter.check_crl(der, max_entries_linted=41)

    assert full.value.findings == sampled.value.findings
    assert full.value.findings[0].node.startswith("certificateList.tbsCertList.revokedCertificates.40.")
    assert linter.check_crl(der, max_entries_linted=40) == []  # honest: entry 40 was not linted


def test_max_entries_linted_still_lints_the_header(linter: Linter) -> None:
    with pytest.raises(CrlLintFailed) as raised:
        linter.check_crl(crl_der(entries(30), number=False), max_entries_linted=5)
    assert codes(list(raised.value.findings)) == {"pkix.crl_number_missing"}


def test_max_entries_linted_must_be_positive(linter: Linter) -> None:
    with pytest.raises(ValueError, match="max_entries_linted"):
        linter.lint_crl(crl_der(entries(3)), max_entries_linted=0)


def test_an_undecodable_crl_is_a_fatal_finding(linter: Linter) -> None:
    for max_entries in (None, 5):
        with pytest.raises(CrlLintFailed) as raised:
            linter.check_crl(b"\x30\x03\x02\x01\x01", max_entries_linted=max_entries)
        assert [(f.severity, f.code) for f in raised.value.findings] == [
            ("FATAL", "tsunagu.lint_document_not_decodable")
        ]


# --- the linter reports what pkilint's own linters report ----------------------------------------


def pkilint_findings(document: Any, validator: Any) -> list[tuple[str, str, str]]:
    document.decode()
    return [
        (description.finding.severity.name, description.finding.code, result.node.path)
        for result in validator.validate(document.root)
        for description in result.finding_descriptions
        if description.finding.severity.name != "INFO" and description.finding.severity.name != "DEBUG"
    ]


def test_certificate_findings_match_lint_pkix_cert(linter: Linter) -> None:
    # the containers lint_pkix_cert builds; Linter indexes its own for speed and must agree
    reference = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    decodable = [make for make, code, _ in BROKEN_CERTIFICATES.values() if not code.startswith("tsunagu.")]
    for make in [*PROFILES.values(), *decodable]:
        der = make()
        expected = pkilint_findings(certificate.RFC5280Certificate(None, der), reference)
        assert [(f.severity, f.code, f.node) for f in linter.lint_certificate(der)] == expected


def test_crl_findings_match_lint_crl_plus_the_reason_code_rule(linter: Linter) -> None:
    reference = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )
    for make, code, _ in BROKEN_CRLS.values():
        der = make()
        expected = pkilint_findings(crl.RFC5280CertificateList(None, der), reference)
        ours = [(f.severity, f.code, f.node) for f in linter.lint_crl(der)]
        assert [
            finding for finding in ours if finding[1] != "pkix.crl_unspecified_crl_entry_reason_code"
        ] == (expected)
        assert code in {finding[1] for finding in ours}


def test_one_linter_serves_many_threads(linter: Linter) -> None:
    cases = [make() for make in PROFILES.values()] + [make() for make, _, _ in BROKEN_CERTIFICATES.values()]
    sequential = [linter.lint_certificate(der) for der in cases]

    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(linter.lint_certificate, cases * 8))

    assert concurrent == sequential * 8
