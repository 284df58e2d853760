"""Small, generic key helpers meant to be called inside :meth:`Pkcs11Token.run` callbacks.

All functions take the session (or a key object obtained from it) handed to the callback and
must therefore only run on the PKCS#11 worker thread. Key objects are typed ``Any``: python-pkcs11's
typing does not model the sign/verify mixins of its concrete key classes.

Notes measured on SoftHSM2 2.6: ``CKM_ECDSA_SHA256`` is rejected (``MechanismInvalid``), so ECDSA
hashes with SHA-256 in Python and signs the digest with ``CKM_ECDSA``; the signature comes back raw
(``r || s``, 64 bytes for P-256). ``CKA_EC_POINT`` is a DER OCTET STRING around the point.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from pkcs11 import MGF, Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_named_curve_parameters
from tsunagu.pkcs11.errors import KeyNotFound

P256_SIGNATURE_LEN = 64
RSA_KEY_SIZES = (2048, 3072)

_SIGN_ONLY = MechanismFlag.SIGN | MechanismFlag.VERIFY


def _private_template() -> dict[Any, Any]:
    return {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
        Attribute.DERIVE: False,
    }


def _public_template() -> dict[Any, Any]:
    return {Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True}


def generate_ec_p256_keypair(session: Any, *, label: str, key_id: bytes) -> tuple[Any, Any]:
    """Generate a persistent EC P-256 key pair for signing; returns ``(public_key, private_key)``.

    The private key is ``CKA_TOKEN``, ``CKA_PRIVATE``, ``CKA_SENSITIVE`` and not
    ``CKA_EXTRACTABLE``; both halves carry ``label`` and ``key_id``.
    """
    params = session.create_domain_parameters(
        KeyType.EC,
        {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
        local=True,
    )
    public, private = params.generate_keypair(
        store=True,
        label=label,
        id=key_id,
        capabilities=_SIGN_ONLY,
        public_template=_public_template(),
        private_template=_private_template(),
    )
    return public, private


# DER of the OID id-Ed25519 (1.3.101.112, RFC 8410), the CKA_EC_PARAMS of an Ed25519 key.
ED25519_PARAMS = bytes.fromhex("06032b6570")


def generate_ed25519_keypair(session: Any, *, label: str, key_id: bytes) -> tuple[Any, Any]:
    """Generate a persistent Ed25519 key pair (``CKK_EC_EDWARDS``), same protections as EC."""
    params = session.create_domain_parameters(
        KeyType.EC_EDWARDS, {Attribute.EC_PARAMS: ED25519_PARAMS}, local=True
    )
    public, private = params.generate_keypair(
        store=True,
        label=label,
        id=key_id,
        mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        capabilities=_SIGN_ONLY,
        public_template=_public_template(),
        private_template=_private_template(),
    )
    return public, private


def generate_rsa_keypair(
    session: Any, *, label: str, key_id: bytes, bits: Literal[2048, 3072] = 2048
) -> tuple[Any, Any]:
    """Generate a persistent RSA signing key pair (2048 or 3072 bits, e=65537).

    Same private-key protections as :func:`generate_ec_p256_keypair`. Returns
    ``(public_key, private_key)``. RSA-2048 generation takes ~0.2-0.4 s on SoftHSM.
    """
    if bits not in RSA_KEY_SIZES:
        raise ValueError(f"RSA key size must be one of {RSA_KEY_SIZES}, not {bits}")
    public, private = session.generate_keypair(
        KeyType.RSA,
        bits,
        store=True,
        label=label,
        id=key_id,
        capabilities=_SIGN_ONLY,
        public_template=_public_template(),
        private_template=_private_template(),
    )
    return public, private


def _find_key(session: Any, object_class: ObjectClass, label: str | None, key_id: bytes | None) -> Any:
    if label is None and key_id is None:
        raise ValueError("give a key label, a key id or both")
    what = " ".join(
        part
        for part in (
            f"label={label!r}" if label is not None else "",
            f"id={key_id.hex()}" if key_id is not None else "",
        )
        if part
    )
    try:
        return session.get_key(object_class=object_class, label=label, id=key_id)
    except p11e.NoSuchKey:
        raise KeyNotFound(f"no {object_class.name.lower()} with {what} on the token") from None
    except p11e.MultipleObjectsReturned:
        raise KeyNotFound(f"several {object_class.name.lower()} objects match {what}") from None


def find_private_key(session: Any, *, label: str | None = None, key_id: bytes | None = None) -> Any:
    """The private key with this label and/or id; :class:`KeyNotFound` if none (or several)."""
    return _find_key(session, ObjectClass.PRIVATE_KEY, label, key_id)


def find_public_key(session: Any, *, label: str | None = None, key_id: bytes | None = None) -> Any:
    """The public key with this label and/or id; :class:`KeyNotFound` if none (or several)."""
    return _find_key(session, ObjectClass.PUBLIC_KEY, label, key_id)


def _der_length(der: bytes, offset: int) -> tuple[int, int]:
    """Decode a DER length at ``offset``; returns ``(length, offset of the contents)``."""
    first = der[offset]
    if not first & 0x80:
        return first, offset + 1
    count = first & 0x7F
    if count == 0 or offset + 1 + count > len(der):
        raise ValueError("bad DER length")
    return int.from_bytes(der[offset + 1 : offset + 1 + count], "big"), offset + 1 + count


def _decode_named_curve_oid(ec_params: bytes) -> str:
    """The dotted OID of a ``CKA_EC_PARAMS`` value holding a named curve (DER OBJECT IDENTIFIER)."""
    if len(ec_params) < 3 or ec_params[0] != 0x06:
        raise ValueError("only named-curve EC keys (CKA_EC_PARAMS = OBJECT IDENTIFIER) are supported")
    length, start = _der_length(ec_params, 1)
    body = ec_params[start:]
    if length != len(body) or body[-1] & 0x80:
        raise ValueError("malformed CKA_EC_PARAMS")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    top = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in (top, arcs[0] - 40 * top, *arcs[1:]))


def _unwrap_ec_point(raw: bytes, coordinate_size: int) -> bytes:
    """``CKA_EC_POINT`` is a DER OCTET STRING around the point; some tokens return the bare point."""
    if len(raw) == 1 + 2 * coordinate_size and raw[0] == 0x04:
        return raw  # bare uncompressed point
    if len(raw) >= 2 and raw[0] == 0x04:
        length, start = _der_length(raw, 1)
        if start + length == len(raw):
            return raw[start:]
    raise ValueError("malformed CKA_EC_POINT")


def to_cryptography_public_key(
    public_key: Any,
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """Convert a token public key object into a ``cryptography`` public key.

    EC: decodes ``CKA_EC_PARAMS`` (named curve OID) and ``CKA_EC_POINT`` (DER-wrapped or bare);
    RSA: ``CKA_MODULUS`` and ``CKA_PUBLIC_EXPONENT``.
    """
    key_type = public_key[Attribute.KEY_TYPE]
    if key_type == KeyType.EC:
        oid = _decode_named_curve_oid(bytes(public_key[Attribute.EC_PARAMS]))
        curve = ec.get_curve_for_oid(x509.ObjectIdentifier(oid))()
        point = _unwrap_ec_point(bytes(public_key[Attribute.EC_POINT]), (curve.key_size + 7) // 8)
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    if key_type == KeyType.EC_EDWARDS:
        raw = bytes(public_key[Attribute.EC_POINT])
        # DER OCTET STRING (04 20 ‖ 32 bytes) per PKCS#11 3.0; some tokens return the bare 32 bytes.
        point = raw if len(raw) == 32 else raw[2:] if raw[:2] == b"\x04\x20" and len(raw) == 34 else b""
        if not point:
            raise ValueError("malformed Ed25519 CKA_EC_POINT")
        return ed25519.Ed25519PublicKey.from_public_bytes(point)
    if key_type == KeyType.RSA:
        modulus = int.from_bytes(public_key[Attribute.MODULUS], "big")
        exponent = int.from_bytes(public_key[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    raise ValueError(f"unsupported key type {key_type!r}")


def read_public_key(
    session: Any, *, label: str | None = None, key_id: bytes | None = None
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey:
    """Find a public key on the token (by label and/or id) and return it as a ``cryptography`` key."""
    return to_cryptography_public_key(find_public_key(session, label=label, key_id=key_id))


def sign_ecdsa_p256_sha256(private_key: Any, data: bytes) -> bytes:
    """ECDSA P-256 over SHA-256(data); returns the raw ``r || s`` signature (64 bytes, as JWS ES256).

    Hashes in Python and signs with ``CKM_ECDSA`` (SoftHSM rejects ``CKM_ECDSA_SHA256``).
    """
    signature = bytes(private_key.sign(hashlib.sha256(data).digest(), mechanism=Mechanism.ECDSA))
    if len(signature) != P256_SIGNATURE_LEN:
        raise ValueError(f"expected a {P256_SIGNATURE_LEN}-byte P-256 signature, got {len(signature)} bytes")
    return signature


def sign_rsa_pkcs1v15_sha256(private_key: Any, data: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (JWS RS256); the token hashes (``CKM_SHA256_RSA_PKCS``)."""
    return bytes(private_key.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS))


def sign_rsa_pss_sha256(private_key: Any, data: bytes, *, salt_length: int = 32) -> bytes:
    """RSASSA-PSS with SHA-256, MGF1-SHA-256 and a ``salt_length``-byte salt (JWS PS256 uses 32)."""
    return bytes(
        private_key.sign(
            data,
            mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
            mechanism_param=(Mechanism.SHA256, MGF.SHA256, salt_length),
        )
    )


def ecdsa_raw_to_der(signature: bytes) -> bytes:
    """Convert a raw ``r || s`` ECDSA signature (PKCS#11, JWS) into DER (X.509, ``cryptography``)."""
    if not signature or len(signature) % 2:
        raise ValueError("a raw ECDSA signature has an even, non-zero length")
    half = len(signature) // 2
    return encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )


def ecdsa_der_to_raw(signature: bytes, *, size: int = 32) -> bytes:
    """Convert a DER ECDSA signature into raw ``r || s`` with ``size``-byte halves (32 for P-256)."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


__all__ = [
    "ED25519_PARAMS",
    "P256_SIGNATURE_LEN",
    "RSA_KEY_SIZES",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "find_private_key",
    "find_public_key",
    "generate_ec_p256_keypair",
    "generate_ed25519_keypair",
    "generate_rsa_keypair",
    "read_public_key",
    "sign_ecdsa_p256_sha256",
    "sign_rsa_pkcs1v15_sha256",
    "sign_rsa_pss_sha256",
    "to_cryptography_public_key",
]
