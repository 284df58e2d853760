"""Streaming over a CRL's revokedCertificates without building an object per entry.

A J-LIS CRL lists every revoked card in the country (a million entries and more); the platform
cares about the few it links. This walks the DER (RFC 5280 §5.1: TBSCertList) entry by entry,
compares each serial as an integer, and decodes the date and reason only of the entries that
match. Run it only on bytes that :func:`~tsunagu.jlis_sync.domain.crl_rfc5280.check_crl` accepted
(signature verified), so the structure is trusted; bounds are still checked, and anything odd is
a :class:`CrlRejected`, never an exception from deep inside.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from datetime import UTC, datetime

from tsunagu.jlis_sync.domain.crl_rfc5280 import RevokedEntry
from tsunagu.jlis_sync.domain.errors import CrlRejected

SEQUENCE, INTEGER, ENUMERATED, OCTET_STRING, OID = 0x30, 0x02, 0x0A, 0x04, 0x06
UTC_TIME, GENERALIZED_TIME, CRL_EXTENSIONS = 0x17, 0x18, 0xA0
CRL_REASON_OID = bytes.fromhex("551d15")  # 2.5.29.21
# CRLReason (RFC 5280 §5.3.1) → the names cryptography's x509.ReasonFlags uses
REASONS = {
    0: "unspecified",
    1: "keyCompromise",
    2: "cACompromise",
    3: "affiliationChanged",
    4: "superseded",
    5: "cessationOfOperation",
    6: "certificateHold",
    8: "removeFromCRL",
    9: "privilegeWithdrawn",
    10: "aACompromise",
}


def _header(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at ``at``."""
    if at + 2 > end:
        raise CrlRejected("truncated CRL")
    tag, first = data[at], data[at + 1]
    if first < 0x80:
        start, length = at + 2, first
    else:
        size = first & 0x7F
        if size == 0 or size > 4 or at + 2 + size > end:
            raise CrlRejected("bad DER length in CRL")
        start, length = at + 2 + size, int.from_bytes(data[at + 2 : at + 2 + size], "big")
    if start + length > end:
        raise CrlRejected("truncated CRL")
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    at = start
    while at < end:
        tag, content, after = _header(data, at, end)
        yield tag, content, after
        at = after


def _revoked_list(der: bytes) -> tuple[int, int]:
    """Where revokedCertificates' content lies; (0, 0) if the CRL lists nothing."""
    _, outer, outer_end = _header(der, 0, len(der))
    tag, tbs, tbs_end = _header(der, outer, outer_end)
    if tag != SEQUENCE:
        raise CrlRejected("CRL without TBSCertList")
    seen_times = 0
    for tag, start, end in _children(der, tbs, tbs_end):
        if tag in (UTC_TIME, GENERALIZED_TIME):
            seen_times += 1
        elif tag == SEQUENCE and seen_times:  # the first SEQUENCE after thisUpdate(/nextUpdate)
            return start, end
        elif tag == CRL_EXTENSIONS:
            break
    return 0, 0


def _time(data: bytes, tag: int, start: int, end: int) -> datetime:
    text = data[start:end].decode("ascii")
    pattern = "%y%m%d%H%M%SZ" if tag == UTC_TIME else "%Y%m%d%H%M%SZ"
    return datetime.strptime(text, pattern).replace(tzinfo=UTC)


def _reason(data: bytes, start: int, end: int) -> str:
    for _, extension, extension_end in _children(data, start, end):
        parts = list(_children(data, extension, extension_end))
        if parts and parts[0][0] == OID and data[parts[0][1] : parts[0][2]] == CRL_REASON_OID:
            tag, value, value_end = parts[-1]  # extnValue OCTET STRING (critical BOOLEAN may precede)
            if tag == OCTET_STRING:
                inner_tag, code, code_end = _header(data, value, value_end)
                if inner_tag == ENUMERATED:
                    return REASONS.get(int.from_bytes(data[code:code_end], "big"), "unspecified")
    return "unspecified"


def count_entries(der: bytes) -> int:
    start, end = _revoked_list(der)
    return sum(1 for _ in _children(der, start, end))


def matching_entries(der: bytes, serials: Container[int]) -> Iterator[RevokedEntry]:
    """The entries whose serial is in ``serials``, in CRL order, decoded; the rest only counted."""
    start, end = _revoked_list(der)
    for _, entry, entry_end in _children(der, start, end):
        tag, serial_start, serial_end = _header(der, entry, entry_end)
        if tag != INTEGER:
            raise CrlRejected("CRL entry without a serial number")
        serial = int.from_bytes(der[serial_start:serial_end], "big", signed=True)
        if serial not in serials:
            continue
        time_tag, time_start, time_end = _header(der, serial_end, entry_end)
        if time_tag not in (UTC_TIME, GENERALIZED_TIME):
            raise CrlRejected("CRL entry without a revocation date")
        reason = "unspecified"
        if time_end < entry_end:
            tag, extensions, extensions_end = _header(der, time_end, entry_end)
            if tag == SEQUENCE:
                reason = _reason(der, extensions, extensions_end)
        yield RevokedEntry(format(serial, "x"), _time(der, time_tag, time_start, time_end), reason)
