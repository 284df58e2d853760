"""The consent service's routes other services call with their service token: the catalog,
recipients and requests (the idp's RFC 9396 data access) and effective consent (the idp's claim
release, the broker's fallback when its event-fed view is behind). One client per caller, so it
keeps one connection pool to consent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tsunagu.clients.internal import InternalClient


class ConsentApi(InternalClient):
    """The consent service's routes the idp calls (service token ``idp``)."""

    async def catalog(self) -> dict[str, dict[str, str]]:
        """Item id → its Japanese and English names."""
        answer = await self.request("GET", "/v1/catalog")
        return {
            str(entry["item"]): {"ja": str(entry["name_ja"]), "en": str(entry["name_en"])}
            for entry in answer["items"]
        }

    async def register_recipient(self, recipient: str, name_ja: str, name_en: str) -> None:
        await self.request(
            "PUT", f"/internal/v1/recipients/{recipient}", json={"name_ja": name_ja, "name_en": name_en}
        )

    async def create_request(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("POST", "/internal/v1/requests", json=body))

    async def get_request(self, request_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/internal/v1/requests/{request_id}"))

    async def effective(
        self, user_number: str, recipient: str, items: list[str], purpose: str, at: datetime
    ) -> dict[str, str]:
        answer = await self.request(
            "POST",
            "/internal/v1/effective",
            json={
                "user_number": user_number,
                "recipient": recipient,
                "items": items,
                "purpose": purpose,
                "at": at.isoformat(),
            },
        )
        decisions = answer.get("decisions") if isinstance(answer, dict) else None
        if not isinstance(decisions, dict):
            return dict.fromkeys(items, "deny")
        return {item: "allow" if decisions.get(item) == "allow" else "deny" for item in items}
