"""The reference citizen wallet (SDK): enroll a phone with the My Number Card, hold the phone's
keys and certificates, sign requests for the platform.

Keys sit behind :class:`~tsunagu.wallet.keys.DeviceKey`: :class:`~tsunagu.wallet.keys.SoftwareKey`
keeps one in memory (tests, benchmarks); :class:`~tsunagu.wallet.pkcs11_key.Pkcs11DeviceKey` lives in
a PKCS#11 token (the phone's secure element; SoftHSM2 here) — the CLI's devices (``tsunagu wallet …``,
:mod:`tsunagu.wallet.cli`) are such tokens. The card is reached through
:class:`~tsunagu.wallet.card.Card` (the J-LIS sandbox's card API in dev).
"""

from tsunagu.wallet.card import Card, SandboxCard
from tsunagu.wallet.enroll import Enrolled, WalletError, enroll, request_app_certificate, revoke
from tsunagu.wallet.keys import DeviceKey, SoftwareKey
from tsunagu.wallet.login import (
    approve_login_with_consent,
    decide_login,
    fetch_inbox,
    fetch_login,
    send_login_decision,
    signed_decision,
)

__all__ = [
    "Card",
    "DeviceKey",
    "Enrolled",
    "SandboxCard",
    "SoftwareKey",
    "WalletError",
    "approve_login_with_consent",
    "decide_login",
    "enroll",
    "fetch_inbox",
    "fetch_login",
    "request_app_certificate",
    "revoke",
    "send_login_decision",
    "signed_decision",
]
