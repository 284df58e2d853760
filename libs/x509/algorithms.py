"""The four signer algorithms (JOSE names, RFC 7518 §3 / RFC 8037) as X.509 signatures.

A remote signature starts from a draft signed locally with a *throwaway* key of the same type: the
draft carries the right signatureAlgorithm (inside the TBS too, for certificates and CRLs) and its
placeholder signature is replaced by the signer's. Throwaway keys sign nothing that is kept, so
they are not secrets; they are cached per process because RSA key generation is slow.
"""

from __future__ import annotations

import datetime
import functools
from typing import Final, Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from tsunagu.x509.der import sequence_items
from tsunagu.x509.errors import (
    RemoteSignatureInvalid,
    SignerAlgorithmMismatch,
    UnsupportedSignatureAlgorithm,
)

SignatureAlgorithm: TypeAlias = Literal["ES256", "RS256", "PS256", "EdDSA"]
SIGNATURE_ALGORITHMS: Final[tuple[str, ...]] = get_args(SignatureAlgorithm)

RsaPadding: TypeAlias = padding.PKCS1v15 | padding.PSS
# RFC 7518 §3.5 leaves PS256's salt length to the implementation; the signer uses the hash length.
PS256_SALT_LENGTH: Final = 32

# Throwaway RSA keys only shape a draft: the signature is replaced, so 2048 bits is plenty and the
# algorithm identifier carries no key size.
_THROWAWAY_RSA_BITS: Final = 2048
_ALGORITHM_IDENTIFIER_EPOCH: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def checked_algorithm(algorithm: str) -> SignatureAlgorithm:
    """Return ``algorithm`` if it is one of the four supported ones, else raise."""
    if algorithm == "ES256":
        return "ES256"
    if algorithm == "RS256":
        return "RS256"
    if algorithm == "PS256":
        return "PS256"
    if algorithm == "EdDSA":
        return "EdDSA"
    raise UnsupportedSignatureAlgorithm(
        f"signer algorithm {algorithm!r} is not one of {', '.join(SIGNATURE_ALGORITHMS)}"
    )


def signature_algorithm_for(algorithm: str) -> tuple[hashes.SHA256 | None, RsaPadding | None]:
    """The ``(hash, rsa_padding)`` to hand to a ``cryptography`` builder's ``sign`` for ``algorithm``.

    Ed25519 takes no hash; only RSA takes a padding.
    """
    match checked_algorithm(algorithm):
        case "ES256":
            return hashes.SHA256(), None
        case "RS256":
            return hashes.SHA256(), padding.PKCS1v15()
        case "PS256":
            return hashes.SHA256(), padding.PSS(
                mgf=padding.MGF1(hashes.SHA256()), salt_length=PS256_SALT_LENGTH
            )
        case "EdDSA":
            return None, None


def check_issuer_key(algorithm: str, issuer_public_key: CertificatePublicKeyTypes) -> None:
    """Raise :class:`SignerAlgorithmMismatch` unless ``algorithm`` can sign for this key type."""
    name = checked_algorithm(algorithm)
    if name == "ES256":
        fits = isinstance(issuer_public_key, ec.EllipticCurvePublicKey) and isinstance(
            issuer_public_key.curve, ec.SECP256R1
        )
    elif name == "EdDSA":
        fits = isinstance(issuer_public_key, ed25519.Ed25519PublicKey)
    else:
        fits = isinstance(issuer_public_key, rsa.RSAPublicKey)
    if not fits:
        raise SignerAlgorithmMismatch(
            f"signer algorithm {name} cannot sign for an issuer key of type "
            f"{type(issuer_public_key).__name__}"
        )


@functools.cache
def throwaway_key(algorithm: str) -> CertificateIssuerPrivateKeyTypes:
    """A process-wide throwaway private key of the type ``algorithm`` signs with (lazily made)."""
    match checked_algorithm(algorithm):
        case "ES256":
            return ec.generate_private_key(ec.SECP256R1())
        case "RS256" | "PS256":
            return rsa.generate_private_key(public_exponent=65537, key_size=_THROWAWAY_RSA_BITS)
        case "EdDSA":
            return ed25519.Ed25519PrivateKey.generate()


@functools.cache
def algorithm_identifier(algorithm: str) -> bytes:
    """The DER ``AlgorithmIdentifier`` of ``algorithm`` (with RSASSA-PSS parameters for PS256).

    Taken from a tiny CRL signed with the throwaway key, so it is exactly what ``cryptography``
    writes into certificates and CRLs; OCSP responses, encoded here, reuse it.
    """
    hash_algorithm, rsa_padding = signature_algorithm_for(algorithm)
    draft = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([]))
        .last_update(_ALGORITHM_IDENTIFIER_EPOCH)
        .next_update(_ALGORITHM_IDENTIFIER_EPOCH)
        .sign(throwaway_key(algorithm), hash_algorithm, rsa_padding=rsa_padding)
    )
    return sequence_items(draft.public_bytes(serialization.Encoding.DER))[1]


def verify_signature(
    algorithm: str,
    public_key: CertificatePublicKeyTypes,
    signature: bytes,
    data: bytes,
) -> None:
    """Verify ``signature`` over ``data``; raise :class:`RemoteSignatureInvalid` if it does not hold."""
    check_issuer_key(algorithm, public_key)
    hash_algorithm, rsa_padding = signature_algorithm_for(algorithm)
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and hash_algorithm is not None:
            public_key.verify(signature, data, ec.ECDSA(hash_algorithm))
        elif isinstance(public_key, rsa.RSAPublicKey) and hash_algorithm and rsa_padding:
            public_key.verify(signature, data, rsa_padding, hash_algorithm)
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:  # check_issuer_key let through a combination the branches above do not handle
            raise SignerAlgorithmMismatch(f"cannot verify {algorithm} with {type(public_key).__name__}")
    except InvalidSignature:
        raise RemoteSignatureInvalid(
            f"the {algorithm} signature from the signer does not verify with the issuer's "
            f"{type(public_key).__name__}: wrong key, algorithm or signature encoding at the signer"
        ) from None


__all__ = [
    "PS256_SALT_LENGTH",
    "SIGNATURE_ALGORITHMS",
    "SignatureAlgorithm",
    "algorithm_identifier",
    "check_issuer_key",
    "checked_algorithm",
    "signature_algorithm_for",
    "throwaway_key",
    "verify_signature",
]
