"""Shared PKCS#11 access (python-pkcs11): one worker thread, one logged-in session per token.

See :mod:`tsunagu.pkcs11.token` for why all token access is serialised on a single thread.
"""

from tsunagu.pkcs11.errors import (
    KeyNotFound,
    PinIncorrect,
    Pkcs11ModuleNotFound,
    TokenNotFound,
    TokenUnavailable,
)
from tsunagu.pkcs11.keys import (
    ecdsa_der_to_raw,
    ecdsa_raw_to_der,
    find_private_key,
    find_public_key,
    generate_ec_p256_keypair,
    generate_rsa_keypair,
    read_public_key,
    sign_ecdsa_p256_sha256,
    sign_rsa_pkcs1v15_sha256,
    sign_rsa_pss_sha256,
    to_cryptography_public_key,
)
from tsunagu.pkcs11.settings import Pkcs11Settings
from tsunagu.pkcs11.token import Pkcs11Token

__all__ = [
    "KeyNotFound",
    "PinIncorrect",
    "Pkcs11ModuleNotFound",
    "Pkcs11Settings",
    "Pkcs11Token",
    "TokenNotFound",
    "TokenUnavailable",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "find_private_key",
    "find_public_key",
    "generate_ec_p256_keypair",
    "generate_rsa_keypair",
    "read_public_key",
    "sign_ecdsa_p256_sha256",
    "sign_rsa_pkcs1v15_sha256",
    "sign_rsa_pss_sha256",
    "to_cryptography_public_key",
]
