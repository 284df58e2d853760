"""JPKI (公的個人認証サービス) facts the platform relies on: the signing-certificate profile and the
basic 4 information (基本4情報) it carries. Used by services that read My Number Card certificates
(ca, jlis-sync) and by the J-LIS sandbox that writes them."""

from tsunagu.jpki.profile import (
    ERA_CODES,
    JPKI_SIGNING_POLICY,
    OID_ADDRESS,
    OID_ADDRESS_SUBSTITUTES,
    OID_BIRTH_DATE,
    OID_NAME,
    OID_NAME_SUBSTITUTES,
    OID_SEX,
    Basic4,
    Basic4Missing,
    basic4_from_certificate,
    basic4_other_names,
    decode_birth_date,
    encode_birth_date,
)

__all__ = [
    "ERA_CODES",
    "JPKI_SIGNING_POLICY",
    "OID_ADDRESS",
    "OID_ADDRESS_SUBSTITUTES",
    "OID_BIRTH_DATE",
    "OID_NAME",
    "OID_NAME_SUBSTITUTES",
    "OID_SEX",
    "Basic4",
    "Basic4Missing",
    "basic4_from_certificate",
    "basic4_other_names",
    "decode_birth_date",
    "encode_birth_date",
]
