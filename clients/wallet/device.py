"""A wallet *device*: one PKCS#11 token, the keys generated in it, and the certificates the CA issued
for them (kept in the wallet state). Enrollment, app certificates and the ``Enrolled`` view the
SDK's login and consent calls sign with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tsunagu.wallet.card import Card
from tsunagu.wallet.enroll import Credential, Enrolled, enroll, request_app_certificate
from tsunagu.wallet.pkcs11_key import DeviceToken, KeyReference, Pkcs11DeviceKey
from tsunagu.wallet.state import KeyRef, StoredCredential, StoredDevice, now

Progress = Callable[[str], None]


def key_reference(key: KeyRef) -> KeyReference:
    return KeyReference(key.key_id, key.label, key.algorithm)


def _stored(
    kind: Any, key: Pkcs11DeviceKey, credential: Credential, app_id: str | None = None
) -> StoredCredential:
    reference = key.reference
    return StoredCredential(
        kind=kind,
        app_id=app_id,
        key=KeyRef(key_id=reference.key_id, label=reference.label, algorithm=reference.algorithm),
        serial=credential.serial,
        certificate=credential.certificate_pem,
        chain=credential.chain,
        issued_at=now(),
    )


def credential_of(token: DeviceToken, stored: StoredCredential) -> Credential:
    """The SDK credential for a stored certificate, its key found again on the token."""
    return Credential(token.key(key_reference(stored.key)), stored.serial, stored.certificate, stored.chain)


def enrolled_view(token: DeviceToken, device: StoredDevice, user_number: str) -> Enrolled:
    """What the SDK signs with: this device's certificates and their keys on the token."""
    return Enrolled(
        user_number,
        device.device_id,
        False,
        credential_of(token, device.signing),
        credential_of(token, device.authentication),
        {app_id: credential_of(token, stored) for app_id, stored in device.apps.items()},
    )


async def enroll_device(
    ca: httpx.AsyncClient,
    card: Card,
    token: DeviceToken,
    *,
    name: str,
    module_path: str,
    signing_algorithm: str = "ES256",
    progress: Progress = lambda _step: None,
) -> tuple[str, StoredDevice]:
    """Generate the signing and authentication keys in the token, prove the card to the CA and get
    both certificates. Answers ``(user_number, device)``. When any step fails the keys made for it
    are deleted from the token again, and the error propagates (nothing is recorded)."""
    progress("keys")
    signing_key = token.generate("signing", signing_algorithm)
    created = [signing_key]
    try:
        authentication_key = token.generate("authentication", "ES256")
        created.append(authentication_key)
        progress("card")
        enrolled = await enroll(ca, card, signing_key=signing_key, authentication_key=authentication_key)
    except BaseException:
        for key in created:
            token.destroy(key.reference)
        raise
    progress("certificates")
    device = StoredDevice(
        name=name,
        token_label=token.label,
        module_path=module_path,
        device_id=enrolled.device_id,
        enrolled_at=now(),
        signing=_stored("signing", signing_key, enrolled.signing),
        authentication=_stored("authentication", authentication_key, enrolled.authentication),
    )
    return enrolled.user_number, device


async def add_app_certificate(
    ca: httpx.AsyncClient, token: DeviceToken, device: StoredDevice, user_number: str, app_id: str
) -> StoredCredential:
    """A per-app key in the token and its certificate, requested with the authentication key."""
    key = token.generate("app", "ES256")
    try:
        credential = await request_app_certificate(ca, enrolled_view(token, device, user_number), app_id, key)
    except BaseException:
        token.destroy(key.reference)
        raise
    return _stored("app", key, credential, app_id)
