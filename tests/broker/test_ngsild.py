"""NGSI-LD subset: entity round trip, queries (q, geo, paging, projection), dataset access."""

from __future__ import annotations

import json
import secrets
from typing import Any

import httpx
import pytest

from tests.broker import ngsild_support
from tests.broker.ngsild_support import ENTITIES, NgsiLdHarness, Party, problem

# the stack and the in-process broker (fixtures shared by the NGSI-LD test modules)
ngsild = ngsild_support.ngsild

CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
CITY_CONTEXT = "https://context.tsunagu.example/city.jsonld"
JSON_LD_CONTEXT = "http://www.w3.org/ns/json-ld#context"


def sensor(number: int, *, lon: float, lat: float, temperature: float, kind: str = "air") -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:WeatherObserved:ebetsu-{number}",
        "type": "WeatherObserved",
        "temperature": {
            "type": "Property",
            "value": temperature,
            "unitCode": "CEL",
            "observedAt": "2026-11-24T01:00:00Z",
            "accuracy": {"type": "Property", "value": 0.5},
        },
        "kind": {"type": "Property", "value": kind},
        "online": {"type": "Property", "value": number % 2 == 0},
        "address": {"type": "Property", "value": {"city": "Ebetsu", "ward": f"w{number}"}},
        "refStation": {"type": "Relationship", "object": f"urn:ngsi-ld:Station:{number % 3}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
    }


async def _datasets(ngsild: NgsiLdHarness) -> tuple[Party, Party, Party]:
    writer = await ngsild.party()
    reader = await ngsild.party("ngsi-ld:read")
    outsider = await ngsild.party("ngsi-ld:read ngsi-ld:write")
    suffix = secrets.token_hex(3)
    await ngsild.dataset(f"weather-{suffix}", ["WeatherObserved"], "public", [writer.client_id])
    await ngsild.dataset(f"parking-{suffix}", ["ParkingSpot"], [reader.client_id], [writer.client_id])
    return writer, reader, outsider


@pytest.fixture(scope="module")
async def parties(ngsild: NgsiLdHarness) -> tuple[Party, Party, Party]:
    return await _datasets(ngsild)


async def test_entity_round_trip(ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]) -> None:
    writer, _reader, _outsider = parties
    entity = sensor(1, lon=141.536, lat=43.104, temperature=3.5)
    created = await ngsild.client.post(
        ENTITIES,
        json=entity,
        headers={
            **writer.headers,
            "Link": f'<{CITY_CONTEXT}>; rel="{JSON_LD_CONTEXT}"; type="application/ld+json"',
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"{ENTITIES}/{entity['id']}"

    # public dataset: no token needed; the writer's @context is echoed (Link for application/json)
    read = await ngsild.client.get(f"{ENTITIES}/{entity['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == entity
    assert read.headers["content-type"].startswith("application/json")
    assert CITY_CONTEXT in read.headers["link"]
    ld = await ngsild.client.get(f"{ENTITIES}/{entity['id']}", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"].startswith("application/ld+json")
    assert ld.json()["@context"] == CITY_CONTEXT

    key_values = await ngsild.client.get(
        f"{ENTITIES}/{entity['id']}", params={"options": "keyValues", "attrs": "temperature,refStation"}
    )
    assert key_values.json() == {
        "id": entity["id"],
        "type": "WeatherObserved",
        "temperature": 3.5,
        "refStation": "urn:ngsi-ld:Station:1",
    }

    again = await ngsild.client.post(ENTITIES, json=entity, headers=writer.headers)
    problem(again, 409, "AlreadyExists")

    # PATCH updates existing attributes; one the entity lacks is reported (207), not added
    patch = await ngsild.client.patch(
        f"{ENTITIES}/{entity['id']}/attrs",
        json={
            "temperature": {"type": "Property", "value": 4.0},
            "humidity": {"type": "Property", "value": 80},
        },
        headers=writer.headers,
    )
    assert patch.status_code == 207, patch.text
    assert patch.json() == {
        "updated": ["temperature"],
        "notUpdated": [{"attributeName": "humidity", "reason": "attribute does not exist"}],
    }
    # POST appends (and with noOverwrite keeps what exists)
    append = await ngsild.client.post(
        f"{ENTITIES}/{entity['id']}/attrs",
        json={"humidity": {"type": "Property", "value": 80}},
        headers=writer.headers,
    )
    assert append.status_code == 204, append.text
    kept = await ngsild.client.post(
        f"{ENTITIES}/{entity['id']}/attrs",
        params={"options": "noOverwrite"},
        json={"humidity": {"type": "Property", "value": 10}},
        headers=writer.headers,
    )
    assert kept.status_code == 207
    now = (await ngsild.client.get(f"{ENTITIES}/{entity['id']}", params={"options": "keyValues"})).json()
    assert now["temperature"] == 4.0 and now["humidity"] == 80

    deleted = await ngsild.client.delete(f"{ENTITIES}/{entity['id']}", headers=writer.headers)
    assert deleted.status_code == 204
    problem(await ngsild.client.get(f"{ENTITIES}/{entity['id']}"), 404, "ResourceNotFound")
    problem(
        await ngsild.client.delete(f"{ENTITIES}/{entity['id']}", headers=writer.headers),
        404,
        "ResourceNotFound",
    )


async def test_ld_json_bodies_carry_their_context(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]
) -> None:
    writer = parties[0]
    entity = {**sensor(2, lon=141.5, lat=43.1, temperature=1.0), "@context": [CITY_CONTEXT, CORE]}
    headers = {**writer.headers, "Content-Type": "application/ld+json"}
    created = await ngsild.client.post(ENTITIES, content=json.dumps(entity), headers=headers)
    assert created.status_code == 201, created.text
    ld = await ngsild.client.get(f"{ENTITIES}/{entity['id']}", headers={"Accept": "application/ld+json"})
    assert ld.json()["@context"] == [CITY_CONTEXT, CORE]
    plain = await ngsild.client.get(f"{ENTITIES}/{entity['id']}")
    assert CORE in plain.headers["link"]  # a context that is not one URL: the core context's Link
    # ld+json without @context, or application/json with one in the body: refused
    before = await ngsild.snapshot()
    bare = {k: v for k, v in entity.items() if k != "@context"} | {"id": "urn:ngsi-ld:WeatherObserved:x"}
    problem(
        await ngsild.client.post(ENTITIES, content=json.dumps(bare), headers=headers), 400, "BadRequestData"
    )
    inline = {**entity, "id": "urn:ngsi-ld:WeatherObserved:y"}
    problem(await ngsild.client.post(ENTITIES, json=inline, headers=writer.headers), 400, "BadRequestData")
    assert await ngsild.snapshot() == before
    await ngsild.client.delete(f"{ENTITIES}/{entity['id']}", headers=writer.headers)


@pytest.fixture(scope="module")
async def city(ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]) -> list[dict[str, Any]]:
    """Ten sensors around Ebetsu (one per 0.01° of longitude eastwards) and one in Sapporo."""
    writer = parties[0]
    entities = [
        sensor(
            100 + n, lon=141.50 + n * 0.01, lat=43.10, temperature=float(n), kind="air" if n < 5 else "water"
        )
        for n in range(10)
    ]
    entities.append(sensor(200, lon=141.35, lat=43.06, temperature=-2.0))
    for entity in entities:
        response = await ngsild.client.post(ENTITIES, json=entity, headers=writer.headers)
        assert response.status_code == 201, response.text
    return entities


async def _ids(ngsild: NgsiLdHarness, **params: Any) -> list[str]:
    response = await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", "limit": 100, **params})
    assert response.status_code == 200, response.text
    return [e["id"].rsplit("-", 1)[1] for e in response.json()]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("temperature>7", ["108", "109"]),
        ('temperature>=8;kind=="water"', ["108", "109"]),
        ("temperature<1|temperature==9", ["100", "109", "200"]),
        ('(kind=="air"|temperature==9);temperature>=3', ["103", "104", "109"]),
        ('kind!="air";temperature<6', ["105"]),
        ("online==true;temperature<=4", ["100", "102", "104", "200"]),
        ("temperature.accuracy==0.5;temperature>8", ["109"]),
        ('address[ward]=="w104"', ["104"]),
        ("refStation==urn:ngsi-ld:Station:2;temperature<6", ["101", "104", "200"]),
        ("kind>5", []),  # a string never compares with a number
        ("humidity", []),  # existence
    ],
)
async def test_q_filters(
    ngsild: NgsiLdHarness, city: list[dict[str, Any]], q: str, expected: list[str]
) -> None:
    assert await _ids(ngsild, q=q) == expected


async def test_geo_queries(ngsild: NgsiLdHarness, city: list[dict[str, Any]]) -> None:
    centre = json.dumps([141.50, 43.10])
    # 0.01° of longitude at 43.1° N is ≈ 812 m: within 2 km are the first three sensors
    near = await _ids(ngsild, georel="near;maxDistance==2000", geometry="Point", coordinates=centre)
    assert near == ["100", "101", "102"]
    far = await _ids(
        ngsild, georel="near;minDistance==5000", geometry="Point", coordinates=centre, q="temperature<9"
    )
    assert far == ["107", "108", "200"]  # 108: 6.5 km, 200 (Sapporo): ≈ 13 km; 109 excluded by q
    polygon = [[[141.535, 43.05], [141.575, 43.05], [141.575, 43.15], [141.535, 43.15], [141.535, 43.05]]]
    within = await _ids(ngsild, georel="within", geometry="Polygon", coordinates=json.dumps(polygon))
    assert within == ["104", "105", "106", "107"]
    # a triangle: the point-in-polygon test, not just its bounding box
    triangle = [[[141.495, 43.09], [141.595, 43.09], [141.495, 43.11], [141.495, 43.09]]]
    inside = await _ids(ngsild, georel="within", geometry="Polygon", coordinates=json.dumps(triangle))
    assert inside == ["100", "101", "102", "103", "104"]
    disjoint = await _ids(
        ngsild, georel="disjoint", geometry="Polygon", coordinates=json.dumps(polygon), q="temperature<2"
    )
    assert disjoint == ["100", "101", "200"]


async def test_paging_count_and_projection(ngsild: NgsiLdHarness, city: list[dict[str, Any]]) -> None:
    page = await ngsild.client.get(
        ENTITIES,
        params={
            "type": "WeatherObserved",
            "q": 'kind=="air"',
            "limit": 2,
            "offset": 1,
            "count": "true",
            "attrs": "temperature",
            "options": "keyValues",
        },
    )
    assert page.status_code == 200, page.text
    assert page.headers["NGSILD-Results-Count"] == "6"  # 100–104 and 200
    assert page.json() == [
        {"id": "urn:ngsi-ld:WeatherObserved:ebetsu-101", "type": "WeatherObserved", "temperature": 1.0},
        {"id": "urn:ngsi-ld:WeatherObserved:ebetsu-102", "type": "WeatherObserved", "temperature": 2.0},
    ]
    only_count = await ngsild.client.get(
        ENTITIES, params={"type": "WeatherObserved", "limit": 0, "count": "true"}
    )
    assert only_count.json() == [] and int(only_count.headers["NGSILD-Results-Count"]) >= 11
    problem(
        await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", "limit": 5000}),
        403,
        "TooManyResults",
    )
    problem(await ngsild.client.get(ENTITIES), 400, "BadRequestData")  # no type, attrs, q or geo
    assert (await ngsild.client.get(ENTITIES, params={"type": "Unheard"})).json() == []


async def test_dataset_access(ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]) -> None:
    writer, reader, outsider = parties
    spot = {
        "id": "urn:ngsi-ld:ParkingSpot:ebetsu-station-1",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": "free"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141.55, 43.11]}},
    }
    before = await ngsild.snapshot()
    # writes: a writer's token with ngsi-ld:write only
    problem(await ngsild.client.post(ENTITIES, json=spot), 401, "urn:tsunagu:problem:invalid-token")
    problem(
        await ngsild.client.post(ENTITIES, json=spot, headers=reader.headers),
        403,
        "urn:tsunagu:problem:insufficient-scope",
    )
    problem(
        await ngsild.client.post(ENTITIES, json=spot, headers=outsider.headers),
        403,
        "urn:tsunagu:problem:dataset-access-denied",
    )
    assert await ngsild.snapshot() == before
    assert (await ngsild.client.post(ENTITIES, json=spot, headers=writer.headers)).status_code == 201

    url = f"{ENTITIES}/{spot['id']}"
    no_token = await ngsild.client.get(url)
    problem(no_token, 401, "urn:tsunagu:problem:invalid-token")
    assert "invalid_token" in no_token.headers["www-authenticate"]
    problem(
        await ngsild.client.get(url, headers=outsider.headers),
        403,
        "urn:tsunagu:problem:dataset-access-denied",
    )
    assert (await ngsild.client.get(url, headers=reader.headers)).json()["status"]["value"] == "free"
    bad_token = {"Authorization": "Bearer " + reader.token[:-4] + "AAAA"}
    problem(await ngsild.client.get(url, headers=bad_token), 401, "urn:tsunagu:problem:invalid-token")

    # queries: naming a type one may not read is refused; without a type, only readable datasets
    problem(
        await ngsild.client.get(ENTITIES, params={"type": "ParkingSpot"}),
        401,
        "urn:tsunagu:problem:invalid-token",
    )
    problem(
        await ngsild.client.get(ENTITIES, params={"type": "ParkingSpot"}, headers=outsider.headers),
        403,
        "urn:tsunagu:problem:dataset-access-denied",
    )
    found = await ngsild.client.get(ENTITIES, params={"type": "ParkingSpot"}, headers=reader.headers)
    assert [e["id"] for e in found.json()] == [spot["id"]]
    anonymous = await ngsild.client.get(ENTITIES, params={"attrs": "status"})
    assert anonymous.json() == []
    assert [
        e["id"]
        for e in (
            await ngsild.client.get(ENTITIES, params={"attrs": "status"}, headers=reader.headers)
        ).json()
    ] == [spot["id"]]

    # changing and deleting: writers only
    patch = {"status": {"type": "Property", "value": "occupied"}}
    problem(
        await ngsild.client.patch(f"{url}/attrs", json=patch, headers=outsider.headers),
        403,
        "urn:tsunagu:problem:dataset-access-denied",
    )
    problem(
        await ngsild.client.delete(url, headers=reader.headers), 403, "urn:tsunagu:problem:insufficient-scope"
    )
    assert (await ngsild.client.get(url, headers=reader.headers)).json()["status"]["value"] == "free"


async def test_a_changed_read_rule_holds_from_the_next_read_in_every_replica(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]
) -> None:
    """Reads by id check the rule stored at that moment: no replica serves a revoked reader from
    a copy it kept (here a second broker process on the same database made the change)."""
    writer, reader, outsider = parties
    dataset = f"kiosks-{secrets.token_hex(3)}"
    await ngsild.dataset(dataset, ["Kiosk"], "public", [writer.client_id])
    kiosk = {"id": "urn:ngsi-ld:Kiosk:ebetsu-1", "type": "Kiosk", "open": {"type": "Property", "value": True}}
    assert (await ngsild.client.post(ENTITIES, json=kiosk, headers=writer.headers)).status_code == 201
    url = f"{ENTITIES}/{kiosk['id']}"
    assert (await ngsild.client.get(url)).status_code == 200
    async with ngsild_support.ngsild_broker(ngsild.stack, ngsild.app.state.runtime.db.url) as replica:
        replica.tenant = ngsild.tenant
        await replica.dataset(dataset, ["Kiosk"], [reader.client_id], [writer.client_id])
        problem(await ngsild.client.get(url), 401, "urn:tsunagu:problem:invalid-token")
        assert (await ngsild.client.get(url, headers=reader.headers)).status_code == 200
        await replica.dataset(dataset, ["Kiosk"], [outsider.client_id], [writer.client_id])
        problem(
            await ngsild.client.get(url, headers=reader.headers),
            403,
            "urn:tsunagu:problem:dataset-access-denied",
        )
        assert (await ngsild.client.get(url, headers=outsider.headers)).status_code == 200
    # served before the routing (ServiceSpec.fast_routes), still labelled by its route in the metrics
    metrics = (await ngsild.client.get("/metrics")).text
    assert 'route="/ngsi-ld/v1/entities/{entity_id}",status="403"' in metrics


async def test_numbers_beyond_64_bits_are_served_exactly(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]
) -> None:
    writer = parties[0]
    entity = sensor(77, lon=141.5, lat=43.1, temperature=1.0)
    entity["count"] = {"type": "Property", "value": 2**70 + 1}
    assert (await ngsild.client.post(ENTITIES, json=entity, headers=writer.headers)).status_code == 201
    read = await ngsild.client.get(f"{ENTITIES}/{entity['id']}")
    assert read.status_code == 200 and read.json()["count"]["value"] == 2**70 + 1
    assert read.json()["address"]["value"] == entity["address"]["value"]


async def test_dataset_definitions(ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party]) -> None:
    writer = parties[0]
    before = await ngsild.snapshot()
    # a type belongs to one dataset
    conflict = await ngsild.dataset("weather-copy", ["WeatherObserved"], "public", [], expect=409)
    assert conflict.json()["type"] == "urn:tsunagu:problem:catalog-conflict"
    await ngsild.dataset("Bad Id", ["Thing"], "public", [], expect=400)
    await ngsild.dataset("things", ["Thing"], "everyone", [], expect=400)
    assert await ngsild.snapshot() == before
    # only the operator defines datasets
    response = await ngsild.client.put(
        f"/internal/v1/tenants/{ngsild.tenant}/datasets/things",
        json={"label_ja": "x", "label_en": "x", "entity_types": ["Thing"], "access": "public", "writers": []},
        headers=writer.headers,
    )
    assert response.status_code == 401
    assert await ngsild.snapshot() == before


def _bad_entities() -> list[tuple[str, Any, str]]:
    good = sensor(900, lon=141.5, lat=43.1, temperature=1.0)
    return [
        ("id not a URI", {**good, "id": "sensor 900"}, "BadRequestData"),
        ("no id", {k: v for k, v in good.items() if k != "id"}, "BadRequestData"),
        ("type no dataset holds", {**good, "type": "Unheard"}, "BadRequestData"),
        ("bad type", {**good, "type": "a b"}, "BadRequestData"),
        ("attribute not an object", {**good, "temperature": 3}, "BadRequestData"),
        ("attribute type", {**good, "temperature": {"type": "Prop", "value": 1}}, "BadRequestData"),
        ("property without value", {**good, "temperature": {"type": "Property"}}, "BadRequestData"),
        (
            "relationship to a non-URI",
            {**good, "refStation": {"type": "Relationship", "object": "x y"}},
            "BadRequestData",
        ),
        (
            "latitude out of range",
            {
                **good,
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [141, 95]}},
            },
            "BadRequestData",
        ),
        (
            "open polygon",
            {
                **good,
                "location": {
                    "type": "GeoProperty",
                    "value": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
                },
            },
            "BadRequestData",
        ),
        (
            "observedAt without zone",
            {**good, "kind": {"type": "Property", "value": "air", "observedAt": "2026-01-01T00:00:00"}},
            "BadRequestData",
        ),
        ("attribute name with a dot", {**good, "a.b": {"type": "Property", "value": 1}}, "BadRequestData"),
        (
            "multi-attribute",
            {**good, "kind": [{"type": "Property", "value": "air", "datasetId": "urn:x:1"}]},
            "OperationNotSupported",
        ),
        ("not an object", [good], "BadRequestData"),
        ("oversize entity", {**good, "note": {"type": "Property", "value": "x" * 70_000}}, "BadRequestData"),
    ]


@pytest.mark.parametrize(("case", "body", "kind"), _bad_entities(), ids=[c[0] for c in _bad_entities()])
async def test_bad_entities_are_refused_and_nothing_is_written(
    ngsild: NgsiLdHarness,
    parties: tuple[Party, Party, Party],
    case: str,
    body: Any,
    kind: str,
) -> None:
    before = await ngsild.snapshot()
    response = await ngsild.client.post(ENTITIES, json=body, headers=parties[0].headers)
    status = 422 if kind == "OperationNotSupported" else 400
    problem(response, status, kind)
    assert await ngsild.snapshot() == before


async def test_bad_requests(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party], city: list[dict[str, Any]]
) -> None:
    writer = parties[0]
    before = await ngsild.snapshot()
    for q in (
        "temperature>",
        "temperature==1;",
        '(kind=="air"',
        "temperature>>1",
        "temp erature==1",
        'kind=="a\\q"',
        "a==1,2",
        "x" * 3000,
    ):
        body = problem(
            await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", "q": q}),
            400,
            "BadRequestData",
        )
        assert body["detail"].startswith("q:")
    geo_cases = [
        {"georel": "near", "geometry": "Point", "coordinates": "[141.5,43.1]"},
        {"georel": "near;maxDistance==abc", "geometry": "Point", "coordinates": "[141.5,43.1]"},
        {"georel": "within", "geometry": "Point", "coordinates": "[141.5,43.1]"},
        {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "[141.5]"},
        {"georel": "near;maxDistance==10", "geometry": "Point", "coordinates": "not json"},
        {"georel": "within", "geometry": "Polygon"},
    ]
    for geo in geo_cases:
        response = await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", **geo})
        assert response.status_code in (400, 422), (geo, response.text)
        assert response.json()["type"].startswith("https://uri.etsi.org/ngsi-ld/errors/")
    problem(
        await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", "idPattern": "("}),
        400,
        "BadRequestData",
    )
    problem(
        await ngsild.client.get(ENTITIES, params={"type": "WeatherObserved", "options": "sysAttrs"}),
        422,
        "OperationNotSupported",
    )
    problem(await ngsild.client.get(f"{ENTITIES}/not-a-uri"), 400, "BadRequestData")
    target = city[0]["id"]
    problem(
        await ngsild.client.post(
            ENTITIES, content=b"{not json", headers={**writer.headers, "Content-Type": "application/json"}
        ),
        400,
        "InvalidRequest",
    )
    problem(
        await ngsild.client.post(
            ENTITIES, content=b"<x/>", headers={**writer.headers, "Content-Type": "application/xml"}
        ),
        415,
        "InvalidRequest",
    )
    problem(
        await ngsild.client.patch(
            f"{ENTITIES}/{target}/attrs", json={"temperature": {"type": "Property"}}, headers=writer.headers
        ),
        400,
        "BadRequestData",
    )
    problem(
        await ngsild.client.patch(
            f"{ENTITIES}/urn:x:missing/attrs",
            json={"temperature": {"type": "Property", "value": 1}},
            headers=writer.headers,
        ),
        404,
        "ResourceNotFound",
    )
    # over the service's body limit: refused before it is read
    huge = await ngsild.client.post(
        ENTITIES,
        content=b"{" + b" " * 300_000 + b"}",
        headers={**writer.headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert await ngsild.snapshot() == before
    unchanged = await ngsild.client.get(f"{ENTITIES}/{target}")
    assert unchanged.json() == city[0]


async def test_a_broker_on_sqlite_refuses_ngsi_ld_cleanly(ngsild_platform: Any) -> None:
    """The dev stack's own broker process runs on SQLite (embedded mode): 501, nothing else."""
    async with httpx.AsyncClient(base_url=ngsild_platform.urls["broker"], timeout=30) as client:
        response = await client.get(ENTITIES, params={"type": "WeatherObserved"})
        by_id = await client.get(f"{ENTITIES}/urn:ngsi-ld:WeatherObserved:1")  # served before the routing
    problem(response, 501, "OperationNotSupported")
    problem(by_id, 501, "OperationNotSupported")
