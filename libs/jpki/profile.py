"""The JPKI signing-certificate profile: basic 4 information in subjectAltName otherNames.

Each value is an otherName whose value is a UTF8String (shared/NOTES.md):
``1.2.392.200149.8.5.5.1`` name, ``.2`` name substitute-character positions, ``.3`` sex
(1 male, 2 female, 3 other), ``.4`` date of birth ``EYYYYMMDD`` (the era code of that date, then
the Gregorian date), ``.5`` address, ``.6`` address substitute-character positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from cryptography import x509

from tsunagu.errors import BadRequest

ARC = "1.2.392.200149.8.5.5"
OID_NAME = x509.ObjectIdentifier(f"{ARC}.1")
OID_NAME_SUBSTITUTES = x509.ObjectIdentifier(f"{ARC}.2")
OID_SEX = x509.ObjectIdentifier(f"{ARC}.3")
OID_BIRTH_DATE = x509.ObjectIdentifier(f"{ARC}.4")
OID_ADDRESS = x509.ObjectIdentifier(f"{ARC}.5")
OID_ADDRESS_SUBSTITUTES = x509.ObjectIdentifier(f"{ARC}.6")
JPKI_SIGNING_POLICY = x509.ObjectIdentifier("1.2.392.200149.8.5.1.1.20")

# era code → first day of the era (明治, 大正, 昭和, 平成, 令和)
ERA_CODES: dict[str, date] = {
    "1": date(1868, 10, 23),
    "2": date(1912, 7, 30),
    "3": date(1926, 12, 25),
    "4": date(1989, 1, 8),
    "5": date(2019, 5, 1),
}
SEXES = {"1", "2", "3"}


class Basic4Missing(BadRequest):
    code = "jpki-basic4-missing"
    title = "The certificate does not carry valid JPKI basic 4 information"


@dataclass(frozen=True)
class Basic4:
    """基本4情報: name, address, date of birth, sex (1 male, 2 female, 3 other)."""

    name: str
    address: str
    birth_date: date
    sex: str

    def differences(self, other: Basic4) -> list[str]:
        """Names of the fields that differ from ``other`` (in a fixed order)."""
        return [
            field
            for field in ("name", "address", "birth_date", "sex")
            if getattr(self, field) != getattr(other, field)
        ]


def _era_of(day: date) -> str:
    code = max((c for c, start in ERA_CODES.items() if start <= day), default=None)
    if code is None:
        raise ValueError(f"{day} is before the Meiji era")
    return code


def encode_birth_date(day: date) -> str:
    return f"{_era_of(day)}{day:%Y%m%d}"


def decode_birth_date(text: str) -> date:
    if len(text) != 9 or not text.isdigit():
        raise ValueError("expected EYYYYMMDD")
    day = date(int(text[1:5]), int(text[5:7]), int(text[7:9]))
    if _era_of(day) != text[0]:
        raise ValueError("era code does not match the date")
    return day


def basic4_other_names(
    info: Basic4, name_substitutes: str = "", address_substitutes: str = ""
) -> list[x509.OtherName]:
    """The subjectAltName entries of a JPKI signing certificate for ``info``."""

    def utf8(text: str) -> bytes:
        raw = text.encode("utf-8")
        if len(raw) > 127:  # long-form length
            length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
            return bytes([0x0C, 0x80 | len(length)]) + length + raw
        return bytes([0x0C, len(raw)]) + raw

    return [
        x509.OtherName(OID_NAME, utf8(info.name)),
        x509.OtherName(OID_NAME_SUBSTITUTES, utf8(name_substitutes)),
        x509.OtherName(OID_SEX, utf8(info.sex)),
        x509.OtherName(OID_BIRTH_DATE, utf8(encode_birth_date(info.birth_date))),
        x509.OtherName(OID_ADDRESS, utf8(info.address)),
        x509.OtherName(OID_ADDRESS_SUBSTITUTES, utf8(address_substitutes)),
    ]


def _utf8_value(der: bytes) -> str:
    if len(der) < 2 or der[0] != 0x0C:
        raise ValueError("not a UTF8String")
    length, offset = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(der[2 : 2 + size], "big"), 2 + size
    if offset + length != len(der):
        raise ValueError("bad UTF8String length")
    return der[offset:].decode("utf-8")


def basic4_from_certificate(certificate: x509.Certificate) -> Basic4:
    """The basic 4 information of a JPKI signing certificate (raises :class:`Basic4Missing`)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        values = {
            other.type_id: _utf8_value(other.value) for other in names.get_values_for_type(x509.OtherName)
        }
        info = Basic4(
            name=values[OID_NAME],
            address=values[OID_ADDRESS],
            birth_date=decode_birth_date(values[OID_BIRTH_DATE]),
            sex=values[OID_SEX],
        )
    except (x509.ExtensionNotFound, KeyError, ValueError, UnicodeDecodeError):
        raise Basic4Missing("no well-formed JPKI basic 4 otherNames in subjectAltName") from None
    if info.sex not in SEXES or not info.name or not info.address:
        raise Basic4Missing("basic 4 values out of range")
    return info
