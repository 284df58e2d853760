"""Domain errors raised by :mod:`tsunagu.pkcs11`.

They subclass :class:`tsunagu.errors.DomainError`, so a service's problem handler renders them as
RFC 9457 problems without further mapping. Messages name the module path, the token label or the
key label/id, never a PIN: the PIN is only ever handed to ``C_Login`` and never formatted.
"""

from __future__ import annotations

from tsunagu.errors import DomainError, NotFound, ServiceUnavailable


class Pkcs11ModuleNotFound(DomainError):
    """The PKCS#11 module (shared object) is missing or cannot be loaded."""

    code = "pkcs11-module-not-found"
    title = "The PKCS#11 module cannot be loaded"
    status = 503


class TokenNotFound(DomainError):
    """No token with the configured label is present in any slot."""

    code = "pkcs11-token-not-found"
    title = "No PKCS#11 token with the configured label"
    status = 503


class TokenUnavailable(ServiceUnavailable):
    """The token went away (removed, device error, session closed) or did not answer in time.

    Carries ``Retry-After``: the next call transparently reopens the session.
    """

    code = "pkcs11-token-unavailable"
    title = "The PKCS#11 token is unavailable; retry later"
    status = 503


class PinIncorrect(DomainError):
    """The token rejected the user PIN. The message never contains the PIN."""

    code = "pkcs11-pin-incorrect"
    title = "The PKCS#11 token rejected the configured PIN"
    status = 503


class KeyNotFound(NotFound):
    """No key with the requested label/id is on the token."""

    code = "pkcs11-key-not-found"
    title = "No such key on the PKCS#11 token"
    status = 404


__all__ = [
    "KeyNotFound",
    "PinIncorrect",
    "Pkcs11ModuleNotFound",
    "TokenNotFound",
    "TokenUnavailable",
]
