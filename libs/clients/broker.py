"""The broker's internal routes other services call with their service token: a citizen's
exchange log ("やりとり履歴") for the consent dashboard and the wallet (``broker:log:read``)."""

from __future__ import annotations

from typing import Any

from tsunagu.auth import ServiceTokenIssuer
from tsunagu.clients.internal import InternalClient


class BrokerClient(InternalClient):
    def __init__(self, base_url: str, issuer: ServiceTokenIssuer, *, timeout_s: float = 5.0) -> None:
        super().__init__("broker", base_url, issuer, timeout_s=timeout_s)

    async def exchanges(
        self, user_number: str, *, before: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        """One page of the person's exchanges and denials, newest first (no values: items only):
        ``{"exchanges": […], "next_before": <cursor> | None}``; ``before`` continues a page."""
        params: dict[str, Any] = {"user_number": user_number, "limit": limit}
        if before is not None:
            params["before"] = before
        answer = await self.request("GET", "/internal/v1/exchanges", params=params)
        return {"exchanges": list(answer["exchanges"]), "next_before": answer.get("next_before")}
