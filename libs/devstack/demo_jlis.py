"""Demo chapter: a My Number Card from the J-LIS sandbox is linked at enrollment; the citizen
moves; J-LIS pushes the change; jlis-sync fetches the new address (the citizen consented) and
announces it — without putting the address in the event log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.wallet import SandboxCard
from tsunagu.wallet.card import basic4_consent

OPERATOR_ID = "tsunagu"  # jlis-sync's default operator id, named in the citizen's consent


def _as(name: str, audience: str, credentials_dir: Path) -> httpx.Auth:
    return ServiceTokenAuth(
        ServiceTokenIssuer(name, load_private_key(credentials_dir / f"{name}.key.pem")), audience
    )


async def run_jlis_chapter(
    jlis_url: str, sync_url: str, credentials_dir: Path, say: Callable[[str], None], timeout_s: float = 60.0
) -> tuple[bool, str]:
    """Returns (success, the demo user's identification number)."""
    user_number = f"DEMO-{uuid.uuid4().hex[:8]}"
    async with (
        httpx.AsyncClient(base_url=jlis_url, timeout=30) as jlis,
        httpx.AsyncClient(base_url=sync_url, timeout=30) as sync,
    ):
        card = (
            await jlis.post(
                "/cards",
                json={
                    "name": "数字 太郎",
                    "address": "群馬県前橋市大手町二丁目12番1号",
                    "birth_date": "1985-06-15",
                    "sex": "1",
                },
            )
        ).json()
        serial = card["signing_serial"][:12]
        say(f"6. J-LIS がマイナンバーカードを発行 / J-LIS issued a test My Number Card (serial {serial}…)")
        linked = await sync.put(
            f"/internal/v1/links/{user_number}",
            auth=_as("ca", "jlis-sync", credentials_dir),
            json={
                "certificate_pem": card["signing_certificate"],
                "basic4_consent": await basic4_consent(SandboxCard(jlis, card["card_id"]), OPERATOR_ID),
            },
        )
        linked.raise_for_status()
        say(f"   enrollment links it to user {user_number}, with the card-signed consent to basic-4 updates")
        await jlis.post(f"/persons/{card['person_id']}/move", json={"address": "北海道江別市高砂町6番地"})
        say("7. 住民が転居 / the citizen moves: J-LIS re-issues the certificate and pushes the change")
        reader = _as("idp", "jlis-sync", credentials_dir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            resident = (await sync.get(f"/internal/v1/residents/{user_number}", auth=reader)).json()
            if resident.get("address") == "北海道江別市高砂町6番地":
                say("   ✓ jlis-sync published tsunagu.jlis_sync.resident.updated")
                say(f"   ✓ idp reads the new address over authenticated HTTP: {resident['address']}")
                return True, user_number
            await asyncio.sleep(0.2)
    say("   ✗ the move did not reach the platform")
    return False, user_number
