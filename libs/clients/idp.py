"""The idp's internal routes the broker calls (service token, ``idp:subjects:read``): which tenant
and sector a client belongs to, and a party's pairwise ``sub`` to the person and back."""

from __future__ import annotations

from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient, UpstreamError


class IdpClient(InternalClient):
    def __init__(self, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 5.0) -> None:
        super().__init__("idp", base_url, issuer, timeout_s=timeout_s)

    async def client(self, client_id: str) -> dict[str, Any] | None:
        """``{client_id, tenant_id, state, sector_identifier, client_name}``, or None if unknown."""
        try:
            return dict(await self.request("GET", f"/internal/v1/clients/{client_id}"))
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise

    async def resolve_subject(self, client_id: str, sub: str) -> str | None:
        """The user number behind ``sub`` as this client received it, or None."""
        try:
            answer = await self.request(
                "POST", "/internal/v1/subjects/resolve", json={"client_id": client_id, "sub": sub}
            )
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise
        return str(answer["user_number"])

    async def pairwise_subject(self, client_id: str, user_number: str) -> str:
        """The person's ``sub`` for this client (the idp remembers it as issued)."""
        answer = await self.request(
            "POST",
            "/internal/v1/subjects/pairwise",
            json={"client_id": client_id, "user_number": user_number},
        )
        return str(answer["sub"])
