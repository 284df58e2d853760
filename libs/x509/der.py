"""The little DER (ITU-T X.690) this package needs: the primitives RFC 6960 OCSP structures use,
splitting a SEQUENCE, and swapping the signature of a
``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature, ... }``.

Certificates, CRLs and BasicOCSPResponses share that outer shape (RFC 5280 §4.1, §5.1; RFC 6960
§4.2.1), so replacing the placeholder signature of a draft signed with a throwaway key keeps the
to-be-signed bytes exactly as ``cryptography`` encoded them.
"""

from __future__ import annotations

import datetime

BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
ENUMERATED = 0x0A
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
CONTEXT_0 = 0xA0  # [0] constructed (EXPLICIT, or IMPLICIT of a constructed type)
CONTEXT_1 = 0xA1
CONTEXT_2 = 0xA2

_HIGH_TAG_NUMBER = 0x1F
_LONG_LENGTH = 0x80


class DerError(ValueError):
    """The input is not DER this module can handle (an internal fault, never user input)."""


def encode(tag: int, content: bytes) -> bytes:
    """Encode one TLV with a definite, minimal length (X.690 §10.1)."""
    size = len(content)
    if size < _LONG_LENGTH:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, _LONG_LENGTH | len(length)]) + length + content


def integer(value: int) -> bytes:
    """A (two's complement, minimal) INTEGER, e.g. a certificate serial number."""
    size = value.bit_length() // 8 + 1  # room for the sign bit
    return encode(INTEGER, value.to_bytes(size, "big", signed=True))


def object_identifier(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form (X.690 §8.19)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    content = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:  # base 128, high bit set on all but the last octet
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        content += bytes(reversed(chunk))
    return encode(OBJECT_IDENTIFIER, bytes(content))


def generalized_time(moment: datetime.datetime) -> bytes:
    """A GeneralizedTime in UTC without fractional seconds (RFC 5280 §4.1.2.5.2)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined instant; pass an aware one")
    text = moment.astimezone(datetime.UTC).strftime("%Y%m%d%H%M%SZ")
    return encode(GENERALIZED_TIME, text.encode("ascii"))


def bit_string(data: bytes) -> bytes:
    """A BIT STRING holding whole octets (no unused bits), as signatures are."""
    return encode(BIT_STRING, b"\x00" + data)


def _element_end(data: bytes, offset: int) -> tuple[int, int]:
    """Return (content start, element end) of the TLV at ``offset``."""
    if len(data) < offset + 2:
        raise DerError("truncated DER header")
    if data[offset] & _HIGH_TAG_NUMBER == _HIGH_TAG_NUMBER:
        raise DerError("high tag numbers are not used by X.509 outer structures")
    first = data[offset + 1]
    if first < _LONG_LENGTH:
        start, size = offset + 2, first
    else:
        count = first & ~_LONG_LENGTH
        if count == 0:  # indefinite length is BER, never DER
            raise DerError("indefinite length")
        start = offset + 2 + count
        size = int.from_bytes(data[offset + 2 : start], "big")
    if len(data) < start + size:
        raise DerError("truncated DER content")
    return start, start + size


def content_of(element: bytes, tag: int) -> bytes:
    """The content octets of a single TLV, checking its tag and that nothing follows it."""
    if not element or element[0] != tag:
        raise DerError(f"expected tag {tag:#04x}")
    start, end = _element_end(element, 0)
    if end != len(element):
        raise DerError("trailing bytes after DER element")
    return element[start:end]


def sequence_items(der: bytes) -> list[bytes]:
    """The elements (each a full TLV) of the SEQUENCE ``der``."""
    content = content_of(der, SEQUENCE)
    items: list[bytes] = []
    offset = 0
    while offset < len(content):
        _, end = _element_end(content, offset)
        items.append(content[offset:end])
        offset = end
    return items


def with_signature(signed: bytes, signature: bytes) -> bytes:
    """Replace the signature of a signed structure, keeping its TBS and signatureAlgorithm bytes.

    Anything after the signature (the ``certs`` of a BasicOCSPResponse) is kept as it is.
    """
    tbs, algorithm, placeholder, *rest = sequence_items(signed)
    content_of(placeholder, BIT_STRING)  # the shape is what we think it is
    return encode(SEQUENCE, tbs + algorithm + bit_string(signature) + b"".join(rest))


__all__ = [
    "DerError",
    "bit_string",
    "content_of",
    "encode",
    "generalized_time",
    "integer",
    "object_identifier",
    "sequence_items",
    "with_signature",
]
