"""Enrollment of this phone with the CA, and the requests a proven phone signs afterwards."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from tsunagu.wallet.card import Card, basic4_consent
from tsunagu.wallet.keys import DeviceKey, SoftwareKey, b64url, request_claims


class WalletError(Exception):
    """The CA refused a step; ``problem`` is its problem+json document."""

    def __init__(self, step: str, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{step}: {status} {problem.get('type', '')}")
        self.step = step
        self.status = status
        self.problem = problem


@dataclass
class Credential:
    key: DeviceKey
    serial: str
    certificate_pem: str
    chain: list[str]


@dataclass
class Enrolled:
    user_number: str
    device_id: str
    new_person: bool
    signing: Credential
    authentication: Credential
    apps: dict[str, Credential] = field(default_factory=dict)


def answer(response: httpx.Response, step: str) -> Any:
    """The JSON of a platform answer, or :class:`WalletError` with its problem document."""
    if response.is_error:
        try:
            problem = response.json()
        except ValueError:
            problem = {"title": response.reason_phrase}
        raise WalletError(step, response.status_code, problem)
    return response.json()


async def _call(ca: httpx.AsyncClient, step: str, path: str, body: dict[str, Any] | None = None) -> Any:
    return answer(await ca.post(path, json=body if body is not None else {}), step)


async def enroll(
    ca: httpx.AsyncClient,
    card: Card,
    *,
    signing_key: DeviceKey | None = None,
    authentication_key: DeviceKey | None = None,
    consent_operator: str | None = "tsunagu",
) -> Enrolled:
    """The four steps: challenge, card proof (+ basic-4 consent), signing and authentication certificates."""
    signing_key = signing_key or SoftwareKey()
    authentication_key = authentication_key or SoftwareKey()
    started = await _call(ca, "start", "/v1/enrollments")
    enrollment = started["enrollment_id"]
    signature = await card.sign(started["signed_data"].encode("ascii"))
    proof: dict[str, Any] = {
        "jpki_certificate": await card.signing_certificate_pem(),
        "signature": b64url(signature),
    }
    if consent_operator is not None:
        proof["basic4_consent"] = await basic4_consent(card, consent_operator)
    proofed = await _call(ca, "proof", f"/v1/enrollments/{enrollment}/jpki-proof", proof)
    signing = await _call(
        ca, "signing", f"/v1/enrollments/{enrollment}/signing-certificate", {"csr": signing_key.csr_pem()}
    )
    request = signing_key.sign_jws(
        request_claims(enrollment_id=enrollment, csr=authentication_key.csr_pem()), kid=signing["serial"]
    )
    authentication = await _call(
        ca, "authentication", f"/v1/enrollments/{enrollment}/authentication-certificate", {"request": request}
    )
    return Enrolled(
        proofed["user_number"],
        proofed["device_id"],
        proofed["new_person"],
        Credential(signing_key, signing["serial"], signing["certificate"], signing["chain"]),
        Credential(
            authentication_key,
            authentication["serial"],
            authentication["certificate"],
            authentication["chain"],
        ),
    )


async def request_app_certificate(
    ca: httpx.AsyncClient, enrolled: Enrolled, app_id: str, key: DeviceKey | None = None
) -> Credential:
    """A per-app certificate, on a request signed with this phone's authentication key."""
    key = key or SoftwareKey()
    auth = enrolled.authentication
    request = auth.key.sign_jws(request_claims(app_id=app_id, csr=key.csr_pem()), kid=auth.serial)
    issued = await _call(ca, "app", "/v1/app-certificates", {"request": request})
    credential = Credential(key, issued["serial"], issued["certificate"], issued["chain"])
    enrolled.apps[app_id] = credential
    return credential


async def revoke(
    ca: httpx.AsyncClient,
    signed_by: Enrolled,
    *,
    device_id: str | None = None,
    serials: list[str] | None = None,
    reason: str = "keyCompromise",
) -> list[str]:
    """Revoke a phone's certificates (``device_id``) or some certificates (``serials``), signed with
    ``signed_by``'s authentication key (e.g. another phone of the same person after a loss)."""
    claims: dict[str, Any] = {"reason": reason}
    if device_id is not None:
        claims["device_id"] = device_id
    if serials is not None:
        claims["serials"] = serials
    auth = signed_by.authentication
    request = auth.key.sign_jws(request_claims(**claims), kid=auth.serial)
    result = await _call(ca, "revoke", "/v1/revocations", {"request": request})
    return list(result["revoked"])
