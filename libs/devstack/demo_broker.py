"""Demo chapter: data linkage with dynamic consent. The city's records system offers the allergy
item through the broker; the citizen allows it for hospital A and refuses it for hospital B in the
wallet (signed decisions, countersigned receipts); A receives it — each party knowing the citizen
only by its own pairwise subject — and B is refused; the citizen withdraws and A is refused from
then on; the citizen's exchange log shows every attempt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import ECKey

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key
from tsunagu.devstack.demo_idp import _App
from tsunagu.devstack.sample_provider import SampleProvider, serve
from tsunagu.wallet import Enrolled
from tsunagu.wallet import consent as wallet

ALLERGY = "health.allergy"
ALLERGY_SCHEMA = {
    "type": "object",
    "properties": {
        "allergens": {"type": "array", "items": {"type": "string"}},
        "recorded_on": {"type": "string", "format": "date"},
    },
    "required": ["allergens"],
}
PURPOSE = {"code": "treatment", "ja": "診療のため", "en": "For treatment"}


class _Platform:
    def __init__(
        self,
        credentials_dir: Path,
        idp: httpx.AsyncClient,
        consent: httpx.AsyncClient,
        broker: httpx.AsyncClient,
    ) -> None:
        self.credentials_dir = credentials_dir
        self.idp = idp
        self.consent = consent
        self.broker = broker

    def auth(self, caller: str, audience: str) -> httpx.Auth:
        key = load_private_key(self.credentials_dir / f"{caller}.key.pem")
        return ServiceTokenAuth(ServiceTokenIssuer(caller, key), audience)


async def _party(idp: httpx.AsyncClient, platform: _Platform, name_ja: str, name_en: str, host: str) -> _App:
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
    key.ensure_kid()
    response = await idp.post(
        "/admin/v1/tenants/ebetsu/clients",
        json={
            "redirect_uris": [f"https://{host}/callback"],
            "client_name#ja": name_ja,
            "client_name#en": name_en,
            "client_name": name_en,
            "grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
            "scope": "broker:exchange",
        },
        auth=platform.auth("operator", "idp"),
    )
    response.raise_for_status()
    return _App(response.json()["client_id"], key, f"https://{host}/callback")


async def _token(idp: httpx.AsyncClient, app: _App, idp_url: str, broker_url: str) -> dict[str, str]:
    response = await idp.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "scope": "broker:exchange",
            "resource": broker_url,
            **app.assertion(idp_url.rstrip("/") + "/token"),
        },
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _sub(idp: httpx.AsyncClient, platform: _Platform, app: _App, citizen: Enrolled) -> str:
    """What the idp gives this party as the citizen's ``sub`` (here asked as the broker would)."""
    response = await idp.post(
        "/internal/v1/subjects/pairwise",
        json={"client_id": app.client_id, "user_number": citizen.user_number},
        auth=platform.auth("broker", "idp"),
    )
    response.raise_for_status()
    return str(response.json()["sub"])


async def _decide(
    consent: httpx.AsyncClient, platform: _Platform, citizen: Enrolled, app: _App, allow: bool
) -> dict[str, Any]:
    operator = platform.auth("operator", "consent")
    names = {"name_ja": app.client_id, "name_en": app.client_id}
    (
        await consent.put(f"/internal/v1/recipients/{app.client_id}", json=names, auth=operator)
    ).raise_for_status()
    asked = await consent.post(
        "/internal/v1/requests",
        json={
            "user_number": citizen.user_number,
            "recipient": app.client_id,
            "items": [{"item": ALLERGY, "required": True}],
            "purpose": PURPOSE,
            "validity": {"until": (datetime.now(UTC) + timedelta(days=365)).isoformat()},
        },
        auth=operator,
    )
    asked.raise_for_status()
    pending = [
        p
        for p in await wallet.fetch_requests(consent, citizen)
        if p["request_id"] == asked.json()["request_id"]
    ]
    return await wallet.decide(consent, citizen, pending[0], {ALLERGY: allow})


async def run_broker_chapter(
    urls: dict[str, str], credentials_dir: Path, citizen: Enrolled, say: Callable[[str], None]
) -> bool:
    async with (
        httpx.AsyncClient(base_url=urls["idp"], timeout=30) as idp,
        httpx.AsyncClient(base_url=urls["consent"], timeout=30) as consent,
        httpx.AsyncClient(base_url=urls["broker"], timeout=30) as broker,
    ):
        platform = _Platform(credentials_dir, idp, consent, broker)
        records_app = await _party(
            idp, platform, "江別市 健康記録", "Ebetsu health records", "records.ebetsu.example"
        )
        records = SampleProvider(client_id=records_app.client_id, broker_url=urls["broker"])
        runner, endpoint = await serve(records)
        try:
            return await _story(platform, citizen, (records_app, records, endpoint), say)
        finally:
            await runner.cleanup()


async def _story(
    platform: _Platform,
    citizen: Enrolled,
    provider: tuple[_App, SampleProvider, str],
    say: Callable[[str], None],
) -> bool:
    idp, consent, broker = platform.idp, platform.consent, platform.broker
    records_app, records, endpoint = provider
    defined = await broker.put(
        f"/internal/v1/tenants/ebetsu/items/{ALLERGY}",
        json={
            "label_ja": "アレルギー情報",
            "label_en": "Allergies",
            "sensitivity": "special-care",
            "schema": ALLERGY_SCHEMA,
            "providers": [{"client_id": records_app.client_id, "endpoint": endpoint}],
        },
        auth=platform.auth("operator", "broker"),
    )
    defined.raise_for_status()
    records.records[await _sub(idp, platform, records_app, citizen)] = {
        ALLERGY: {"allergens": ["そば", "ペニシリン"], "recorded_on": "2026-04-01"}
    }
    hospital_a = await _party(idp, platform, "A病院", "Hospital A", "hospital-a.example")
    hospital_b = await _party(idp, platform, "B病院", "Hospital B", "hospital-b.example")
    say(
        "17. 江別市の健康記録がアレルギー情報を提供 / "
        "the city's records offer allergies (special care) via the broker"
    )
    allowed = await _decide(consent, platform, citizen, hospital_a, True)
    refused = await _decide(consent, platform, citizen, hospital_b, False)
    say(
        f"18. 市民がウォレットで署名 / the citizen signs: A病院 {allowed['event']}, B病院 {refused['event']} "
        f"(receipts #{allowed['sequence']}, #{refused['sequence']} countersigned in the HSM)"
    )
    sub_a = await _sub(idp, platform, hospital_a, citizen)
    sub_b = await _sub(idp, platform, hospital_b, citizen)
    headers_a = await _token(idp, hospital_a, str(idp.base_url), str(broker.base_url))
    headers_b = await _token(idp, hospital_b, str(idp.base_url), str(broker.base_url))
    body_a = {"sub": sub_a, "items": [ALLERGY], "purpose": "treatment"}
    got = await broker.post("/v1/exchanges", json=body_a, headers=headers_a)
    denied = await broker.post(
        "/v1/exchanges", json={"sub": sub_b, "items": [ALLERGY], "purpose": "treatment"}, headers=headers_b
    )
    say(
        f"19. A病院 → {got.status_code} {got.json().get('items', {}).get(ALLERGY)}; "
        f"B病院 → {denied.status_code} {denied.json().get('type')}"
    )
    seen = records.seen[-1]["sub"] if records.seen else "-"
    say(f"   each knows the citizen by its own sub: A {sub_a[:8]}…, B {sub_b[:8]}…, the provider {seen[:8]}…")
    if got.status_code != 200 or denied.status_code != 403:
        return False
    await wallet.withdraw(consent, citizen, allowed["decision_id"])
    withdrawn = time.monotonic()
    while True:
        again = await broker.post("/v1/exchanges", json=body_a, headers=headers_a)
        if again.status_code == 403 or time.monotonic() - withdrawn > 10:
            break
        await asyncio.sleep(0.05)
    elapsed_ms = (time.monotonic() - withdrawn) * 1000
    say(f"20. 市民が撤回 / the citizen withdraws → A病院 refused {elapsed_ms:.0f} ms later")
    log = await broker.get(
        "/internal/v1/exchanges",
        params={"user_number": citizen.user_number},
        auth=platform.auth("consent", "broker"),
    )
    say("   やりとり履歴 / the citizen's exchange log:")
    names = {hospital_a.client_id: "A病院", hospital_b.client_id: "B病院"}
    for entry in reversed(log.json()["exchanges"][:5]):
        who = names.get(entry["consumer"], entry["consumer"])
        say(f"   - {entry['at'][:19]} {who} {entry['items']} → {entry['outcome']}")
    return again.status_code == 403
