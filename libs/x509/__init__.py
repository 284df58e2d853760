"""X.509 certificates, CRLs and OCSP responses whose signatures come from the remote signer.

See :mod:`tsunagu.x509.remote` for how a signature made elsewhere ends up in the DER.
"""

from tsunagu.x509.algorithms import (
    PS256_SALT_LENGTH,
    SIGNATURE_ALGORITHMS,
    SignatureAlgorithm,
    signature_algorithm_for,
)
from tsunagu.x509.errors import (
    RemoteSignatureInvalid,
    SignerAlgorithmMismatch,
    UnsupportedSignatureAlgorithm,
    X509SigningError,
)
from tsunagu.x509.ocsp_rfc6960 import OcspCertId, OcspSingleResponse
from tsunagu.x509.remote import RemoteSigner, sign_certificate, sign_crl, sign_ocsp_response

__all__ = [
    "PS256_SALT_LENGTH",
    "SIGNATURE_ALGORITHMS",
    "OcspCertId",
    "OcspSingleResponse",
    "RemoteSignatureInvalid",
    "RemoteSigner",
    "SignatureAlgorithm",
    "SignerAlgorithmMismatch",
    "UnsupportedSignatureAlgorithm",
    "X509SigningError",
    "sign_certificate",
    "sign_crl",
    "sign_ocsp_response",
    "signature_algorithm_for",
]
