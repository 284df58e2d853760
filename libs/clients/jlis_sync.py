"""Client of services/jlis-sync: link a card to a person, ask J-LIS about a card (ca); read a
resident's current basic 4 information (idp, broker — only to release it with consent).

jlis = JlisSyncClient("http://jlis-sync:8106", issuer)
status = await jlis.card_status(pem)          # {"status": "good" | "revoked" | "unknown", ...}
owner = await jlis.link_owner(serial_hex)     # user number, or None if nobody's
await jlis.link(user_number, pem, basic4_consent)
resident = await jlis.resident(user_number)  # name, address, birth_date, sex, deceased_at
"""

from __future__ import annotations

from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient, UpstreamError


class JlisSyncClient(InternalClient):
    def __init__(self, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 10.0) -> None:
        super().__init__("jlis-sync", base_url, issuer, timeout_s=timeout_s)

    async def card_status(self, certificate_pem: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/internal/v1/jpki/status", json={"certificate_pem": certificate_pem}
        )
        return result

    async def link_owner(self, serial: str) -> str | None:
        """The user number linked to a JPKI serial (also after a move/renewal), or None."""
        try:
            result = await self.request("GET", f"/internal/v1/links/by-serial/{serial}")
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise
        return str(result["user_number"])

    async def link_or_owner(self, proposed: str, certificate_pem: str, basic4_consent: str | None) -> str:
        """Link the card to ``proposed`` unless it already belongs to someone; returns the owner."""
        body: dict[str, Any] = {"certificate_pem": certificate_pem, "user_number": proposed}
        if basic4_consent is not None:
            body["basic4_consent"] = basic4_consent
        result = await self.request("POST", "/internal/v1/links", json=body)
        return str(result["user_number"])

    async def link(self, user_number: str, certificate_pem: str, basic4_consent: str | None) -> str:
        body: dict[str, Any] = {"certificate_pem": certificate_pem}
        if basic4_consent is not None:
            body["basic4_consent"] = basic4_consent
        result = await self.request("PUT", f"/internal/v1/links/{user_number}", json=body)
        return str(result["jpki_serial"])

    async def resident(self, user_number: str) -> dict[str, Any] | None:
        """The person's current basic 4 information, or None when jlis-sync knows none."""
        try:
            result: dict[str, Any] = await self.request("GET", f"/internal/v1/residents/{user_number}")
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise
        return result
