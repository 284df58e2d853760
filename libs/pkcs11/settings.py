"""Configuration of one PKCS#11 token connection."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Pkcs11Settings(BaseModel):
    """Where the token is and how to log in.

    ``user_pin`` is a :class:`~pydantic.SecretStr`: its ``repr``/``str`` and ``model_dump_json`` show
    ``**********``; only :class:`tsunagu.pkcs11.token.Pkcs11Token` unwraps it, to pass it to
    ``C_Login``.
    """

    model_config = ConfigDict(frozen=True)

    module_path: str
    """Path of the PKCS#11 shared object (e.g. ``/usr/lib/softhsm/libsofthsm2.so``)."""
    token_label: str
    """``CKA_LABEL`` of the token to use."""
    user_pin: SecretStr
    """User PIN (CKU_USER)."""
    call_timeout_s: float = Field(default=5.0, gt=0)
    """Upper bound on one call (queueing on the worker thread included)."""
    inline_calls: bool = False
    """Let short calls run on the caller's thread when the token is idle (``Pkcs11Token.run(…,
    inline=True)``): for a module in this process's memory (SoftHSM2), whose calls take
    microseconds and cannot hang on a network. Never for a network HSM: an inline call has no
    timeout."""
