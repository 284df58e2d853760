"""Certificates, CRLs and OCSP responses signed by the remote (HSM-backed) signer service.

Keys never leave the signer, so ``builder.sign(private_key, ...)`` cannot be used directly. For
certificates and CRLs a *draft* is signed with a throwaway key of the same type (see
:mod:`tsunagu.x509.algorithms`); for OCSP the to-be-signed ResponseData is encoded directly (see
:mod:`tsunagu.x509.ocsp_rfc6960`). The to-be-signed bytes go to the signer, the returned signature
is verified against the issuer's public key, put into the DER, and the result is loaded back with
``cryptography``. A signer with the wrong key or algorithm therefore raises
:class:`~tsunagu.x509.errors.RemoteSignatureInvalid` instead of yielding a badly signed object.

Building and loading run off the event loop: a CRL with many entries takes real CPU time.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tsunagu.x509 import der
from tsunagu.x509.algorithms import (
    algorithm_identifier,
    check_issuer_key,
    signature_algorithm_for,
    throwaway_key,
    verify_signature,
)
from tsunagu.x509.ocsp_rfc6960 import OcspSingleResponse, ocsp_response, response_data


class RemoteSigner(Protocol):
    """The signer service as this package needs it.

    ``algorithm`` is one of ``ES256``, ``RS256``, ``PS256``, ``EdDSA``. ``sign`` gets the data
    itself (the signer hashes it) and returns the signature as X.509 carries it: DER
    ``Ecdsa-Sig-Value`` for ES256 (the signer's ``der`` format), the raw signature otherwise.
    """

    @property
    def algorithm(self) -> str: ...

    async def sign(self, payload: bytes) -> bytes: ...


async def _remote_signature(
    signer: RemoteSigner, tbs: bytes, issuer_public_key: CertificatePublicKeyTypes
) -> bytes:
    signature = await signer.sign(tbs)
    verify_signature(signer.algorithm, issuer_public_key, signature, tbs)
    return signature


def _draft_certificate(builder: x509.CertificateBuilder, algorithm: str) -> x509.Certificate:
    hash_algorithm, rsa_padding = signature_algorithm_for(algorithm)
    return builder.sign(throwaway_key(algorithm), hash_algorithm, rsa_padding=rsa_padding)


def _draft_crl(
    builder: x509.CertificateRevocationListBuilder, algorithm: str
) -> x509.CertificateRevocationList:
    hash_algorithm, rsa_padding = signature_algorithm_for(algorithm)
    return builder.sign(throwaway_key(algorithm), hash_algorithm, rsa_padding=rsa_padding)


# Called with the DER of the draft (same content, throwaway signature) before the real signature is
# asked for: raise to stop issuance (pre-issuance linting). It runs off the event loop.
DraftCheck = Callable[[bytes], object]


async def sign_certificate(
    builder: x509.CertificateBuilder,
    signer: RemoteSigner,
    *,
    issuer_public_key: CertificateIssuerPublicKeyTypes,
    check_draft: DraftCheck | None = None,
) -> x509.Certificate:
    """Sign the certificate ``builder`` describes with the remote ``signer``.

    ``issuer_public_key`` is the key the signer is expected to hold (the subject key itself for a
    self-signed root); the signature is verified with it before the certificate is returned.
    ``check_draft`` gets the DER of a draft identical but for its signature before the signer is
    asked (lint it there: an exception stops issuance, nothing is signed).
    Raises ``SignerAlgorithmMismatch`` (before calling the signer) if the signer's algorithm
    cannot sign for that key, ``RemoteSignatureInvalid`` if its signature does not verify.
    """
    check_issuer_key(signer.algorithm, issuer_public_key)
    draft = await asyncio.to_thread(_draft_certificate, builder, signer.algorithm)
    if check_draft is not None:
        await asyncio.to_thread(check_draft, draft.public_bytes(Encoding.DER))
    tbs = draft.tbs_certificate_bytes
    signature = await _remote_signature(signer, tbs, issuer_public_key)
    signed = der.with_signature(draft.public_bytes(Encoding.DER), signature)
    return x509.load_der_x509_certificate(signed)


async def sign_crl(
    builder: x509.CertificateRevocationListBuilder,
    signer: RemoteSigner,
    *,
    issuer_public_key: CertificateIssuerPublicKeyTypes,
    check_draft: DraftCheck | None = None,
) -> x509.CertificateRevocationList:
    """Sign the CRL ``builder`` describes with the remote ``signer``.

    Give the builder all revoked entries at once (``revoked_certificates=[...]``): chaining
    ``add_revoked_certificate`` copies the list each time. Errors as for :func:`sign_certificate`;
    ``check_draft`` gets the draft CRL's DER before the signer is asked.
    """
    check_issuer_key(signer.algorithm, issuer_public_key)
    draft = await asyncio.to_thread(_draft_crl, builder, signer.algorithm)
    if check_draft is not None:
        await asyncio.to_thread(check_draft, draft.public_bytes(Encoding.DER))
    tbs = draft.tbs_certlist_bytes
    signature = await _remote_signature(signer, tbs, issuer_public_key)
    signed = der.with_signature(draft.public_bytes(Encoding.DER), signature)
    return await asyncio.to_thread(x509.load_der_x509_crl, signed)


async def sign_ocsp_response(
    responses: Sequence[OcspSingleResponse],
    signer: RemoteSigner,
    *,
    responder_certificate: x509.Certificate,
    produced_at: datetime.datetime,
    extensions: Sequence[x509.Extension[x509.ExtensionType]] = (),
    responder_id: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.HASH,
    include_responder_certificate: bool = True,
) -> ocsp.OCSPResponse:
    """Sign a successful OCSP response with the remote ``signer`` holding the responder's key.

    ``responses`` may hold several SingleResponses (one per CertID of the request; build them with
    ``OcspCertId.from_request`` to echo the client's CertID). ``extensions`` are the
    responseExtensions, typically the request's ``x509.OCSPNonce``. The responder certificate is
    included in ``certs`` unless ``include_responder_certificate`` is false: a client can only
    check a delegated responder's signature if it gets the certificate (RFC 6960 §4.2.2.2).
    ``response.public_bytes(Encoding.DER)`` is the body to serve. Errors as for
    :func:`sign_certificate`, checked against ``responder_certificate``'s public key.
    """
    responder_public_key = responder_certificate.public_key()
    check_issuer_key(signer.algorithm, responder_public_key)
    tbs = response_data(
        responses,
        responder_certificate=responder_certificate,
        responder_id=responder_id,
        produced_at=produced_at,
        extensions=extensions,
    )
    signature = await _remote_signature(signer, tbs, responder_public_key)
    certificates = [responder_certificate] if include_responder_certificate else []
    algorithm = await asyncio.to_thread(algorithm_identifier, signer.algorithm)
    signed = ocsp_response(tbs, algorithm, signature, certificates)
    return ocsp.load_der_ocsp_response(signed)


__all__ = ["RemoteSigner", "sign_certificate", "sign_crl", "sign_ocsp_response"]
