"""The dev stack's sample relying parties (``examples/``) and the city's records system they read
through the broker.

As a municipality would, the operator registers each app at the idp for the Ebetsu tenant
(``private_key_jwt``; the private JWK stays in ``<state>/examples/``; one pairwise sector per app),
defines the catalog items at the broker (the health items served by the city's records system,
``resident.address`` by jlis-sync), and writes each app's settings file
(``examples/kit/config.py``). Registrations are reused on later starts while the idp knows them.
The records system is :mod:`tsunagu.devstack.sample_provider` in its own process, reading its
records file (``<state>/examples/records.json``, ``{sub: {item: value}}``) whenever it changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from joserfc.jwk import ECKey

from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key

OPERATOR = "operator"
TENANT = {"id": "ebetsu", "name_ja": "江別市", "name_en": "Ebetsu City"}


@dataclass(frozen=True)
class SampleApp:
    name: str  # also the settings file's name
    app: str  # the examples/ package
    title_ja: str
    title_en: str
    sector: str  # host of its sector_identifier_uri: one pairwise sub per app
    scope: str = "broker:exchange broker:subscribe"


APPS = (
    SampleApp("e-diary", "e_diary", "江別市 e-diary", "Ebetsu e-diary", "e-diary.ebetsu.example"),
    SampleApp(
        "e-life-trainer",
        "e_life_trainer",
        "江別市 e-ライフトレーナー",
        "Ebetsu e-life trainer",
        "e-life.ebetsu.example",
    ),
    SampleApp("ebetsu-market", "ebetsu_market", "江別マルシェ", "Ebetsu market", "market.ebetsu.example"),
    SampleApp("hospital-a", "hospital", "A病院", "Hospital A", "hospital-a.example"),
    SampleApp("hospital-b", "hospital", "B病院", "Hospital B", "hospital-b.example"),
    SampleApp("bank", "bank", "北海道みらい銀行", "Hokkaido Mirai Bank", "bank.example"),
)
RECORDS = SampleApp(
    "records", "", "江別市 健康記録", "Ebetsu health records", "records.ebetsu.example", "broker:provide"
)

_DATE = {"type": "string", "format": "date"}
HEALTH_ITEMS: dict[str, dict[str, Any]] = {
    "health.allergy": {
        "label_ja": "アレルギー情報",
        "label_en": "Allergies",
        "schema": {
            "type": "object",
            "properties": {"allergens": {"type": "array", "items": {"type": "string"}}, "recorded_on": _DATE},
            "required": ["allergens"],
        },
    },
    "health.blood_pressure": {
        "label_ja": "血圧",
        "label_en": "Blood pressure",
        "schema": {
            "type": "object",
            "properties": {
                "systolic": {"type": "integer", "minimum": 40, "maximum": 300},
                "diastolic": {"type": "integer", "minimum": 20, "maximum": 200},
                "measured_on": _DATE,
            },
            "required": ["systolic", "diastolic"],
        },
    },
    "health.checkup": {
        "label_ja": "健診結果",
        "label_en": "Health check-up results",
        "schema": {
            "type": "object",
            "properties": {
                "examined_on": _DATE,
                "hba1c": {"type": "number"},
                "ldl_cholesterol": {"type": "integer"},
                "judgement": {"type": "string", "maxLength": 200},
            },
            "required": ["examined_on"],
        },
    },
}
ADDRESS_ITEM = {
    "label_ja": "住所",
    "label_en": "Address",
    "sensitivity": "normal",
    "schema": {"type": "object", "properties": {"address": {"type": "string", "maxLength": 400}}},
    "providers": [{"client_id": "jlis-sync", "endpoint": "internal:jlis-sync"}],
}


@dataclass(frozen=True)
class SampleApps:
    configs: dict[str, Path]  # app name → settings file
    urls: dict[str, str]  # app name → its home page
    records_client_id: str
    records_file: Path
    records_port: int


def _auth(credentials_dir: Path, audience: str) -> ServiceTokenAuth:
    key = load_private_key(credentials_dir / f"{OPERATOR}.key.pem")
    return ServiceTokenAuth(ServiceTokenIssuer(OPERATOR, key), audience)


def _key(path: Path) -> ECKey:
    if path.exists():
        key = ECKey.import_key(json.loads(path.read_text()))
    else:
        key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"}, private=True)
        key.ensure_kid()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(key.as_dict(private=True), file)
    key.ensure_kid()
    return key


async def _register(idp: httpx.AsyncClient, folder: Path, app: SampleApp, base_url: str) -> str:
    """The app's client id at the idp: the saved one while the idp knows it, else a new one."""
    saved = folder / f"{app.name}.client.json"
    redirect_uri = f"{base_url}/callback"
    known = json.loads(saved.read_text()) if saved.exists() else {}
    client_id = known.get("client_id") if known.get("redirect_uri") == redirect_uri else None
    if client_id and (await idp.get(f"/admin/v1/clients/{client_id}")).status_code == 200:
        return str(client_id)
    key = _key(folder / f"{app.name}.jwk.json")
    registered = await idp.post(
        f"/admin/v1/tenants/{TENANT['id']}/clients",
        json={
            "redirect_uris": [redirect_uri],
            "client_name": app.title_en,
            "client_name#ja": app.title_ja,
            "client_name#en": app.title_en,
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [key.as_dict(private=False)]},
            "sector_identifier_uri": f"https://{app.sector}/sector.json",
            "scope": app.scope,
        },
    )
    registered.raise_for_status()
    client_id = registered.json()["client_id"]
    saved.write_text(json.dumps({"client_id": client_id, "redirect_uri": redirect_uri}))
    return str(client_id)


async def _define_items(broker: httpx.AsyncClient, records_client_id: str, records_endpoint: str) -> None:
    records = [{"client_id": records_client_id, "endpoint": records_endpoint}]
    definitions = {
        item: {**spec, "sensitivity": "special-care", "providers": records}
        for item, spec in HEALTH_ITEMS.items()
    }
    definitions["resident.address"] = ADDRESS_ITEM
    for item, definition in definitions.items():
        response = await broker.put(f"/internal/v1/tenants/{TENANT['id']}/items/{item}", json=definition)
        response.raise_for_status()


async def ensure_sample_apps(
    idp_url: str, broker_url: str, credentials_dir: Path, folder: Path, first_port: int
) -> SampleApps:
    """Register the apps and the records system, define the items, write the settings files.
    Ports: the records system on ``first_port``, the apps after it in :data:`APPS` order."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - at startup, nothing serves yet
    configs: dict[str, Path] = {}
    urls: dict[str, str] = {}
    async with (
        httpx.AsyncClient(base_url=idp_url, auth=_auth(credentials_dir, "idp"), timeout=30) as idp,
        httpx.AsyncClient(base_url=broker_url, auth=_auth(credentials_dir, "broker"), timeout=30) as broker,
    ):
        tenant = await idp.post("/admin/v1/tenants", json=TENANT)
        if tenant.status_code not in (201, 409):
            tenant.raise_for_status()
        records_url = f"http://127.0.0.1:{first_port}"
        records_client_id = await _register(idp, folder, RECORDS, records_url)
        await _define_items(broker, records_client_id, f"{records_url}/data")
        for offset, app in enumerate(APPS, start=1):
            port = first_port + offset
            base_url = f"http://127.0.0.1:{port}"
            client_id = await _register(idp, folder, app, base_url)
            settings = {
                "app": app.app,
                "title_ja": app.title_ja,
                "title_en": app.title_en,
                "issuer": idp_url,
                "client_id": client_id,
                "key_file": str((folder / f"{app.name}.jwk.json").resolve()),
                "base_url": base_url,
                "broker_url": broker_url,
                "port": port,
            }
            configs[app.name] = folder / f"{app.name}.json"
            configs[app.name].write_text(json.dumps(settings, ensure_ascii=False, indent=2))
            urls[app.name] = base_url
    records_file = folder / "records.json"
    if not records_file.exists():
        records_file.write_text("{}")
    return SampleApps(configs, urls, records_client_id, records_file, first_port)
