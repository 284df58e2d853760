"""Client of the diagnostics API every service offers (see tsunagu.service.diagnostics)."""

from __future__ import annotations

from typing import Any

from tsunagu.clients.internal import InternalClient, UpstreamError


class DiagnosticsClient(InternalClient):
    async def ping(self, note: str = "") -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/internal/v1/diagnostics/pings", json={"note": note}
        )
        return result

    async def receipt(self, ping_id: str) -> dict[str, Any] | None:
        """The receipt of ``ping_id`` at this service, or None if it has not arrived (yet)."""
        try:
            result: dict[str, Any] = await self.request("GET", f"/internal/v1/diagnostics/receipts/{ping_id}")
        except UpstreamError as error:
            if error.status == 404:
                return None
            raise
        return result
