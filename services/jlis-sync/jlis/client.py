"""J-LIS over HTTP: the CRL (conditional GET), OCSP, and the latest-basic-4 service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import ocsp

from tsunagu.jlis_sync.domain.errors import JlisUnavailable
from tsunagu.jlis_sync.settings import JlisEndpoints
from tsunagu.jpki import Basic4


@dataclass(frozen=True)
class CrlFetch:
    der: bytes | None  # None: not modified since the ETag/Last-Modified we sent
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class Basic4Answer:
    info: Basic4
    current_serial: str


@dataclass(frozen=True)
class CardStatus:
    status: str  # good | revoked | unknown
    reason: str | None
    revoked_at: datetime | None
    this_update: datetime
    next_update: datetime | None


class JlisClient:
    def __init__(
        self, endpoints: JlisEndpoints, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.endpoints = endpoints
        self.http = httpx.AsyncClient(
            base_url=endpoints.base_url, timeout=endpoints.timeout_s, transport=transport
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.http.send(request)
        except httpx.HTTPError as exc:
            raise JlisUnavailable(f"J-LIS unreachable ({type(exc).__name__})") from None

    async def fetch_crl(self, etag: str | None, last_modified: str | None) -> CrlFetch:
        headers = {k: v for k, v in (("If-None-Match", etag), ("If-Modified-Since", last_modified)) if v}
        response = await self._send(
            self.http.build_request("GET", self.endpoints.signing_crl_path, headers=headers)
        )
        if response.status_code == 304:
            return CrlFetch(None, etag, last_modified)
        if response.status_code != 200:
            raise JlisUnavailable(f"J-LIS answered {response.status_code} for the CRL")
        return CrlFetch(response.content, response.headers.get("etag"), response.headers.get("last-modified"))

    async def card_status(self, certificate: x509.Certificate, issuer: x509.Certificate) -> CardStatus:
        request = ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, hashes.SHA1()).build()  # noqa: S303 - CertID hash per RFC 6960 profile
        response = await self._send(
            self.http.build_request(
                "POST",
                self.endpoints.ocsp_path,
                content=request.public_bytes(serialization.Encoding.DER),
                headers={"content-type": "application/ocsp-request"},
            )
        )
        if response.status_code != 200:
            raise JlisUnavailable(f"J-LIS OCSP answered {response.status_code}")
        return _card_status(ocsp.load_der_ocsp_response(response.content), issuer)

    async def latest_basic4(self, serial: str, consent: str) -> Basic4Answer:
        response = await self._send(
            self.http.build_request(
                "POST", self.endpoints.basic4_path, json={"serial": serial, "consent": consent}
            )
        )
        if response.status_code != 200:
            raise JlisUnavailable(f"J-LIS latest-basic-4 answered {response.status_code}")
        body = response.json()
        info = Basic4(
            name=body["name"],
            address=body["address"],
            birth_date=date.fromisoformat(body["birth_date"]),
            sex=str(body["sex"]),
        )
        return Basic4Answer(info, str(body["current_serial"]).lower())


def _card_status(answer: ocsp.OCSPResponse, issuer: x509.Certificate) -> CardStatus:
    if answer.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise JlisUnavailable(f"J-LIS OCSP status {answer.response_status.name}")
    # J-LIS signs with RSA: a delegated responder certificate issued by the CA, or the CA itself.
    responder = next(iter(answer.certificates), None)
    try:
        if responder is not None:
            responder.verify_directly_issued_by(issuer)
        key = (responder or issuer).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise TypeError("J-LIS OCSP keys are RSA")
        key.verify(
            answer.signature,
            answer.tbs_response_bytes,
            padding.PKCS1v15(),
            answer.signature_hash_algorithm or hashes.SHA256(),
        )
    except Exception:
        raise JlisUnavailable("the OCSP answer does not verify") from None
    reason = answer.revocation_reason.value if answer.revocation_reason else None
    return CardStatus(
        answer.certificate_status.name.lower(),
        reason,
        answer.revocation_time_utc,
        answer.this_update_utc,
        answer.next_update_utc,
    )
