"""Verify an exported decision offline, with nothing but the platform CA's certificates.

What holds when :func:`verify_export` returns:
- the statement JWS verifies with the key of its first x5c certificate, and its payload is the
  RFC 8785 canonical form of a well-formed decision statement;
- that certificate chains through x5c to one of the given CA certificates (each link's signature,
  each certificate valid at the signing time), is a signing certificate (nonRepudiation) and names
  the person (subject serialNumber = user identification number);
- the receipt JWS countersigns exactly this statement (its SHA-256, the decision id); its signature
  is checked with ``receipt_keys`` when given (the signer's published receipt keys) — otherwise with
  the key carried in the export, and ``receipt_key_trusted`` is False.
Revocation status at the signing time is the CA's answer recorded with the decision
(``ca_evidence``); it is reported, not cryptographically proven (see the README: OCSP evidence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tsunagu.consent.domain import jws_rfc7515
from tsunagu.consent.domain.jcs_rfc8785 import is_canonical, sha256_hex
from tsunagu.consent.domain.receipts import RECEIPT_TYP
from tsunagu.consent.domain.statement import DECISION_TYP, Statement, read_statement


class ExportInvalid(Exception):
    """The export does not verify; the message says which check failed."""


@dataclass(frozen=True)
class VerifiedExport:
    decision_id: str
    user_number: str
    statement: Statement
    certificate_serial: str
    decision_sha256: str
    receipt: dict[str, Any]
    receipt_key_trusted: bool
    ca_status_at_signing: str | None


def _valid_at(certificate: x509.Certificate, moment: datetime) -> bool:
    return certificate.not_valid_before_utc <= moment <= certificate.not_valid_after_utc


def _chain_to_anchor(chain: list[x509.Certificate], anchors: list[x509.Certificate], at: datetime) -> None:
    anchor_der = {a.public_bytes(serialization.Encoding.DER) for a in anchors}
    for child, parent in pairwise(chain):
        try:
            child.verify_directly_issued_by(parent)
        except Exception as error:
            raise ExportInvalid(f"x5c link does not verify: {error}") from None
    for certificate in chain:
        if not _valid_at(certificate, at):
            raise ExportInvalid("a certificate of the chain was not valid at the signing time")
    last = chain[-1]
    if last.public_bytes(serialization.Encoding.DER) in anchor_der:
        return
    for anchor in anchors:
        try:
            last.verify_directly_issued_by(anchor)
        except Exception:  # noqa: S112 - try the next anchor
            continue
        if _valid_at(anchor, at):
            return
    raise ExportInvalid("the chain does not end at one of the given CA certificates")


def _receipt(token: str, key: Any) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        raise ExportInvalid("the receipt is not a compact JWS")
    parsed_header, payload_segment, signature = parts
    header = json.loads(jws_rfc7515.b64url_decode(parsed_header))
    if header.get("typ") != RECEIPT_TYP:
        raise ExportInvalid("the receipt's typ is wrong")
    payload = jws_rfc7515.b64url_decode(payload_segment)
    if not is_canonical(payload):
        raise ExportInvalid("the receipt payload is not canonical JSON")
    jws_rfc7515.verify_with_key(
        key,
        str(header.get("alg")),
        f"{parsed_header}.{payload_segment}".encode("ascii"),
        jws_rfc7515.b64url_decode(signature),
    )
    claims: dict[str, Any] = json.loads(payload)
    claims["kid"] = header.get("kid")
    return claims


def _receipt_key(export: dict[str, Any], receipt_token: str, receipt_keys: dict[str, Any] | None) -> Any:
    try:
        header = json.loads(jws_rfc7515.b64url_decode(receipt_token.split(".", maxsplit=1)[0]))
    except Exception:
        raise ExportInvalid("the receipt header does not parse") from None
    if receipt_keys is not None:
        key = receipt_keys.get(header.get("kid"))
        if key is None:
            raise ExportInvalid("the receipt was signed by a key not among the given receipt keys")
        return key
    carried = (export.get("receipt_key") or {}).get("pem")
    if not isinstance(carried, str):
        raise ExportInvalid("no receipt key to check the receipt with")
    return serialization.load_pem_public_key(carried.encode())


def verify_export(
    export: dict[str, Any],
    ca_certificates: list[x509.Certificate],
    receipt_keys: dict[str, Any] | None = None,
) -> VerifiedExport:
    """Check an export (``GET /internal/v1/decisions/{id}/export``); raise :class:`ExportInvalid`."""
    token = export.get("statement_jws")
    if not isinstance(token, str):
        raise ExportInvalid("no statement_jws")
    try:
        parsed = jws_rfc7515.parse(token, DECISION_TYP)
        jws_rfc7515.verify_signature(parsed)
        statement = read_statement(parsed.payload)
    except Exception as error:
        raise ExportInvalid(f"the statement does not verify: {error}") from None
    signed_at = statement.signed_time
    _chain_to_anchor(parsed.chain, ca_certificates, signed_at)
    certificate = parsed.certificate
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    if not usage.content_commitment:
        raise ExportInvalid("the statement was not signed with a signing (nonRepudiation) certificate")
    numbers = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not numbers:
        raise ExportInvalid("the certificate names no user identification number")
    subject = ((export.get("record") or {}).get("header") or {}).get("data_subject") or {}
    if subject.get("user_number") not in (None, numbers[0].value):
        raise ExportInvalid("the record names another person than the certificate")
    digest = sha256_hex(token.encode("ascii"))
    receipt_token = export.get("receipt_jws")
    if not isinstance(receipt_token, str):
        raise ExportInvalid("no receipt_jws")
    key = _receipt_key(export, receipt_token, receipt_keys)
    try:
        receipt = _receipt(receipt_token, key)
    except ExportInvalid:
        raise
    except Exception as error:
        raise ExportInvalid(f"the receipt does not verify: {error}") from None
    if receipt.get("decision_sha256") != digest or receipt.get("decision_id") != export.get("decision_id"):
        raise ExportInvalid("the receipt countersigns another decision")
    evidence = export.get("ca_evidence") or {}
    return VerifiedExport(
        decision_id=str(export["decision_id"]),
        user_number=str(numbers[0].value),
        statement=statement,
        certificate_serial=format(certificate.serial_number, "x"),
        decision_sha256=digest,
        receipt=receipt,
        receipt_key_trusted=receipt_keys is not None,
        ca_status_at_signing=evidence.get("status"),
    )


def load_certificates(pems: list[str]) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate(text.encode()) for text in pems]
