"""Pre-issuance linting of certificates and CRLs with pkilint's RFC 5280 (PKIX) profile.

The CA lints the draft of every certificate and CRL (same content, throwaway signature) before the
signer is asked: a finding at or above the blocking severity stops issuance.

What is linted is exactly what pkilint's ``lint_pkix_cert`` and ``lint_crl -t CRL -p PKIX`` lint,
plus one RFC 5280 rule pkilint defines but does not wire into its CRL linter (§5.3.1: the reason
code entry extension SHOULD be absent rather than ``unspecified``). Neither linter verifies
signatures or compares a certificate with its issuer's (names, key identifiers): they look at one
document at a time.

pkilint is pure Python and builds a node per ASN.1 value: about 3 ms per end-entity certificate
(pkilint's own containers: 4 ms; see ``_IndexedValidatorContainer``), and for CRLs time and memory
grow faster than the number of entries, so large CRLs are linted from a sample (see
:meth:`Linter.lint_crl`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pkilint import document, pkix, validation  # type: ignore[import-untyped]
from pkilint.pkix import certificate, crl, extension, name  # type: ignore[import-untyped]
from pkilint.pkix.crl import crl_extension  # type: ignore[import-untyped]

from tsunagu.errors import DomainError
from tsunagu.x509 import der as x690

# pkilint's ValidationFindingSeverity, most severe first (DEBUG is never reported).
SEVERITIES = ("FATAL", "ERROR", "WARNING", "NOTICE", "INFO")
_REPORTED = SEVERITIES.index("NOTICE")  # lint_* return NOTICE and above
_UNDECODABLE = "tsunagu.lint_document_not_decodable"
_UTC_TIME = 0x17


@dataclass(frozen=True)
class LintFinding:
    """One pkilint finding: its severity, validation code, where in the document, and why."""

    severity: str  # one of SEVERITIES
    code: str  # pkilint validation code, e.g. "pkix.certificate_skid_ca_missing"
    node: str  # path of the node in the document, e.g. "certificate.tbsCertificate.extensions"
    message: str | None  # may quote the document; log it, never put it in a response


class _LintFailed(DomainError):
    """Blocking findings; the problem object lists them (without messages, which quote the DER)."""

    def __init__(self, findings: Sequence[LintFinding]) -> None:
        self.findings = tuple(findings)
        codes = ", ".join(sorted({finding.code for finding in self.findings}))
        super().__init__(
            f"{len(self.findings)} blocking lint finding(s): {codes}",
            extensions={
                "findings": [
                    {"severity": finding.severity, "code": finding.code, "node": finding.node}
                    for finding in self.findings
                ]
            },
        )


class CertificateLintFailed(_LintFailed):
    code: ClassVar[str] = "certificate-lint-failed"
    title: ClassVar[str] = "The certificate would not pass the RFC 5280 lint"
    status: ClassVar[int] = 422


class CrlLintFailed(_LintFailed):
    # A CRL holds nothing the caller chose: a failing one is our fault.
    code: ClassVar[str] = "crl-lint-failed"
    title: ClassVar[str] = "The CRL would not pass the RFC 5280 lint"
    status: ClassVar[int] = 500


class Linter:
    """Validator containers are built once (they are expensive) and reused; thread-safe to call
    from ``asyncio.to_thread`` (a new pkilint document per call; pkilint's validators keep no
    state between documents).

    ``block_at`` is the least severe finding that stops issuance (``FATAL``, ``ERROR``,
    ``WARNING`` or ``NOTICE``). ``allow`` lists validation codes that must never block even at
    that severity; they are still returned by ``check_*`` so the caller logs them. Every entry is a
    deliberate, documented exception to RFC 5280 — none is needed by the CA's current profiles.
    """

    def __init__(self, block_at: str = "WARNING", allow: frozenset[str] = frozenset()) -> None:
        if block_at not in SEVERITIES[: _REPORTED + 1]:
            raise ValueError(f"block_at must be one of {SEVERITIES[: _REPORTED + 1]}, not {block_at!r}")
        self.block_at = block_at
        self.allow = allow
        self._certificate_validator = _indexed(_pkix_certificate_validator())
        self._crl_validator = _indexed(_pkix_crl_validator())

    def lint_certificate(self, der: bytes) -> list[LintFinding]:
        """All findings at NOTICE and above for the DER certificate, in document order.

        A document pkilint cannot decode yields one FATAL ``tsunagu.lint_document_not_decodable``.
        """
        return self._lint(certificate.RFC5280Certificate, self._certificate_validator, der)

    def check_certificate(self, der: bytes) -> list[LintFinding]:
        """Raise :class:`CertificateLintFailed` if a finding is at or above ``block_at`` (and not
        allowed); otherwise return the remaining findings for logging."""
        blocking, rest = self._split(self.lint_certificate(der))
        if blocking:
            raise CertificateLintFailed(blocking)
        return rest

    def lint_crl(self, der: bytes, *, max_entries_linted: int | None = None) -> list[LintFinding]:
        """All findings at NOTICE and above for the DER CRL (PKIX profile; it is linted as a CRL,
        not an ARL, though the PKIX profile lints both alike).

        With ``max_entries_linted=N`` and more than N entries, what is linted is the CRL with
        ``revokedCertificates`` cut to its first N entries and everything else (version, algorithm,
        issuer, thisUpdate, nextUpdate, crlExtensions) byte for byte as given; only the lengths
        around the cut change, and the signature no longer matches, which pkilint does not check.
        Node paths are those of the full CRL. Entries after the first N are NOT linted: this is
        sound only while every entry is built by the same code (their shape is then the same).
        Of pkilint's per-entry rules, cryptography's builder already enforces the serial range
        (1..2^159-1), unique entry extensions and the time encoding; the entry builder must keep
        the other two itself (reasonCode not critical, never ``unspecified``).

        Cost of a full lint (2-core VM): 1,000 entries 0.15-0.25 s, 10,000 2-3.5 s, 100,000
        25-38 s and 1 GB of memory, 1,000,000 265 s and 9.5 GB. A sample of 1,000 entries from a
        1,000,000-entry CRL takes 0.25 s.
        """
        if max_entries_linted is not None:
            if max_entries_linted < 1:
                raise ValueError("max_entries_linted must be at least 1")
            try:
                der = _with_first_entries(der, max_entries_linted)
            except ValueError as exc:  # x690.DerError, or not a SEQUENCE of three
                return [LintFinding("FATAL", _UNDECODABLE, "certificateList", str(exc))]
        return self._lint(crl.RFC5280CertificateList, self._crl_validator, der)

    def check_crl(self, der: bytes, *, max_entries_linted: int | None = None) -> list[LintFinding]:
        """Raise :class:`CrlLintFailed` if a finding is at or above ``block_at`` (and not allowed);
        otherwise return the remaining findings. ``max_entries_linted`` as for :meth:`lint_crl`."""
        findings = self.lint_crl(der, max_entries_linted=max_entries_linted)
        blocking, rest = self._split(findings)
        if blocking:
            raise CrlLintFailed(blocking)
        return rest

    def _lint(self, document_class: Any, validator: Any, der: bytes) -> list[LintFinding]:
        lint_document = document_class(None, der)
        try:
            lint_document.decode()
        except ValueError as exc:  # pkilint's SubstrateDecodingFailedError
            root = document.get_node_name_for_pdu(lint_document.pdu_schema_instance)
            return [LintFinding("FATAL", _UNDECODABLE, root, str(exc))]
        return [
            LintFinding(
                description.finding.severity.name,
                description.finding.code,
                result.node.path,
                description.message,
            )
            for result in validator.validate(lint_document.root)
            for description in result.finding_descriptions
            if description.finding.severity <= _REPORTED
        ]

    def _split(self, findings: Iterable[LintFinding]) -> tuple[list[LintFinding], list[LintFinding]]:
        threshold = SEVERITIES.index(self.block_at)
        blocking: list[LintFinding] = []
        rest: list[LintFinding] = []
        for finding in findings:
            blocks = SEVERITIES.index(finding.severity) <= threshold and finding.code not in self.allow
            (blocking if blocks else rest).append(finding)
        return blocking, rest


# --- the validator containers -----------------------------------------------------------------


def _pkix_certificate_validator() -> Any:
    """The container pkilint's ``lint_pkix_cert`` builds."""
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def _pkix_crl_validator() -> Any:
    """The container ``lint_crl -t CRL -p PKIX`` builds, plus the RFC 5280 §5.3.1 reason code rule."""
    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
            crl_extension.CrlReasonCodeValidator(),
        ],
    )


class _IndexedValidatorContainer(validation.ValidatorContainer):  # type: ignore[misc]
    """A ValidatorContainer that offers each node only the validators that can match it.

    pkilint asks every validator of a container whether it matches every node below it (about
    5,000 ``match`` calls per certificate, a third of the lint time). ``NodeVisitor.match`` is
    false unless the node has the validator's ``path`` and is an instance of its ``pdu_class``;
    validators that override ``match`` call it first. So the candidates depend only on (path,
    type of the node's value) and are cached per pair; ``match`` is still asked of each candidate,
    and the order of validators and of results is unchanged. Tests compare the findings with
    pkilint's own containers.
    """

    def __init__(self, original: Any) -> None:
        super().__init__(
            validators=[_indexed(validator) for validator in original.validators],
            path=original._path,
            path_re=original._path_re,
            pdu_class=original._pdu_class,
            pdu_supertype=original._pdu_supertype,
            predicate=original._predicate,
        )
        self._paths = frozenset(v._path for v in self.validators if v._path is not None)
        # Filled lazily; concurrent fills compute the same list, and dict stores are atomic.
        self._candidates: dict[tuple[str | None, type], list[Any]] = {}

    def _candidates_for(self, path: str | None, pdu_type: type) -> list[Any]:
        return [
            v
            for v in self.validators
            if (v._path is None or v._path == path)
            and (v._pdu_class is None or issubclass(pdu_type, v._pdu_class))
        ]

    def _validate_rec(self, node: document.PDUNode, results: list[Any]) -> None:
        key = (node.path if node.path in self._paths else None, type(node.pdu))
        candidates = self._candidates.get(key)
        if candidates is None:
            candidates = self._candidates[key] = self._candidates_for(*key)
        for validator in candidates:
            if validator.match(node):
                result = validator.validate_wrapper(node)
                if isinstance(result, list):
                    results += result
                else:
                    results.append(result)
        for child in node.children.values():
            self._validate_rec(child, results)


def _indexed(validator: Any) -> Any:
    """``validator`` with every plain ValidatorContainer in it replaced by an indexed one."""
    if type(validator) is validation.ValidatorContainer:
        return _IndexedValidatorContainer(validator)
    return validator


# --- CRL sampling ---------------------------------------------------------------------------------


def _with_first_entries(crl_der: bytes, limit: int) -> bytes:
    """The CRL with ``revokedCertificates`` cut to its first ``limit`` entries, all else as is."""
    tbs, algorithm, signature = x690.sequence_items(crl_der)
    fields = x690.sequence_items(tbs)
    index = _revoked_certificates_index(fields)
    if index is None:
        return crl_der
    entries = x690.content_of(fields[index], x690.SEQUENCE)
    cut = _end_of_first(entries, limit)
    if cut == len(entries):
        return crl_der
    fields[index] = x690.encode(x690.SEQUENCE, entries[:cut])
    return x690.encode(x690.SEQUENCE, x690.encode(x690.SEQUENCE, b"".join(fields)) + algorithm + signature)


def _revoked_certificates_index(fields: list[bytes]) -> int | None:
    """Where ``revokedCertificates`` is among the TBSCertList fields (RFC 5280 §5.1), if present."""
    # version (INTEGER) OPTIONAL, signature, issuer, thisUpdate, nextUpdate OPTIONAL, revoked...
    position = (1 if fields and fields[0][0] == x690.INTEGER else 0) + 3
    if position < len(fields) and fields[position][0] in (_UTC_TIME, x690.GENERALIZED_TIME):
        position += 1
    if position < len(fields) and fields[position][0] == x690.SEQUENCE:
        return position
    return None


def _end_of_first(content: bytes, count: int) -> int:
    """The offset just after the first ``count`` TLVs of ``content`` (or its length)."""
    offset = 0
    for _ in range(count):
        if offset >= len(content):
            break
        if offset + 2 > len(content):
            raise x690.DerError("truncated CRL entry")
        length, start = content[offset + 1], offset + 2
        if length & 0x80:  # long form: the low bits count the length octets (X.690 §8.1.3.5)
            start += length & 0x7F
            length = int.from_bytes(content[offset + 2 : start], "big")
        offset = start + length
        if offset > len(content):
            raise x690.DerError("truncated CRL entry")
    return offset


__all__ = ["SEVERITIES", "CertificateLintFailed", "CrlLintFailed", "LintFinding", "Linter"]
