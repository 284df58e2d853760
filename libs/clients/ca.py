"""Client of services/ca for the services that check citizens' certificates (idp, consent, broker).

    ca = CaClient("http://ca:8102", issuer)
    status = await ca.validate(pem)             # ours? status now (or at=…), user number, kind, chain
    status = await ca.certificate(serial_hex)   # by serial, or None when the CA never issued it

Answers are the CA's ``CertificateStatus``: ``serial``, ``issuer_id``, ``user_number``,
``device_id``, ``kind`` (signing | authentication | app), ``app_id``, ``status``
(good | revoked | expired | …), ``not_before``, ``not_after``, ``revoked_at``, ``certificate``,
``chain`` (PEM). A certificate the CA does not know comes back as None.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient, UpstreamError


class CaClient(InternalClient):
    def __init__(self, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 10.0) -> None:
        super().__init__("ca", base_url, issuer, timeout_s=timeout_s)

    async def validate(self, certificate_pem: str, at: datetime | None = None) -> dict[str, Any] | None:
        body: dict[str, Any] = {"certificate": certificate_pem}
        if at is not None:
            body["at"] = at.isoformat()
        try:
            result: dict[str, Any] = await self.request(
                "POST", "/internal/v1/certificates/validate", json=body
            )
        except UpstreamError as error:
            if error.status in (400, 404):
                return None
            raise
        return result

    async def certificate(self, serial: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self.request("GET", f"/internal/v1/certificates/{serial}")
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise
        return result
