"""NGSI-LD subscriptions: notifications reach a real loopback HTTP server after the change
commits, only for matching changes, only to subscribers allowed to read the dataset; a failing
receiver gets retries; a crash before sending loses nothing."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from tests.broker import ngsild_support
from tests.broker.ngsild_support import (
    ENTITIES,
    SUBSCRIPTIONS,
    NgsiLdHarness,
    Party,
    Receiver,
    ngsild_broker,
    problem,
    rows_when,
)
from tests.fixtures.services import table_rows
from tsunagu.broker.store.models import ngsild_notification
from tsunagu.devstack.postgres import scratch_database

ngsild = ngsild_support.ngsild
receiver = ngsild_support.receiver


def spot(number: int, status: str = "free", lon: float = 141.55) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:ParkingSpot:nopporo-{number}",
        "type": "ParkingSpot",
        "status": {"type": "Property", "value": status},
        "capacity": {"type": "Property", "value": number},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 43.08]}},
    }


@pytest.fixture(scope="module")
async def parties(ngsild: NgsiLdHarness) -> tuple[Party, Party, Party]:
    writer = await ngsild.party()
    reader = await ngsild.party("ngsi-ld:read")
    outsider = await ngsild.party("ngsi-ld:read")
    suffix = secrets.token_hex(3)
    await ngsild.dataset(f"parking-{suffix}", ["ParkingSpot"], [reader.client_id], [writer.client_id])
    await ngsild.dataset(f"bus-{suffix}", ["BusStop"], "public", [writer.client_id])
    return writer, reader, outsider


def subscription(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Subscription",
        "entities": [{"type": "ParkingSpot"}],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}},
        **extra,
    }


async def _subscribe(ngsild: NgsiLdHarness, party: Party, body: dict[str, Any]) -> str:
    response = await ngsild.client.post(SUBSCRIPTIONS, json=body, headers=party.headers)
    assert response.status_code == 201, response.text
    location: str = response.headers["location"]
    return location.rsplit("/", 1)[1]


async def test_a_subscription_notification_reaches_the_subscriber(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party], receiver: Receiver
) -> None:
    writer, reader, _outsider = parties
    subscription_id = await _subscribe(
        ngsild,
        reader,
        subscription(
            receiver.url,
            watchedAttributes=["status"],
            q='status=="free"',
            geoQ={"georel": "near;maxDistance==5000", "geometry": "Point", "coordinates": [141.55, 43.08]},
            notification={"attributes": ["status"], "format": "keyValues", "endpoint": {"uri": receiver.url}},
        ),
    )
    listed = await ngsild.client.get(SUBSCRIPTIONS, headers=reader.headers)
    assert [s["id"] for s in listed.json()] == [subscription_id]
    assert listed.json()[0]["status"] == "active"

    assert (await ngsild.client.post(ENTITIES, json=spot(1), headers=writer.headers)).status_code == 201
    [first] = await receiver.wait(1)
    assert first["type"] == "Notification" and first["subscriptionId"] == subscription_id
    assert first["id"].startswith("urn:ngsi-ld:Notification:") and first["notifiedAt"].endswith("Z")
    assert first["data"] == [{"id": spot(1)["id"], "type": "ParkingSpot", "status": "free"}]
    headers = receiver.received[0][0]
    assert headers["Content-Type"] == "application/json" and "json-ld#context" in headers["Link"]

    # not notified: an unwatched attribute changes; q no longer holds; outside the circle
    url = f"{ENTITIES}/{spot(1)['id']}/attrs"
    await ngsild.client.patch(
        url, json={"capacity": {"type": "Property", "value": 9}}, headers=writer.headers
    )
    await ngsild.client.patch(
        url, json={"status": {"type": "Property", "value": "occupied"}}, headers=writer.headers
    )
    far = spot(2, lon=142.5)
    assert (await ngsild.client.post(ENTITIES, json=far, headers=writer.headers)).status_code == 201
    # notified: back to free
    await ngsild.client.patch(
        url, json={"status": {"type": "Property", "value": "free"}}, headers=writer.headers
    )
    bodies = await receiver.wait(2)
    assert [b["data"][0]["id"] for b in bodies] == [spot(1)["id"], spot(1)["id"]]
    delivered = await rows_when(
        ngsild, ngsild_notification, lambda rows: all(r["state"] == "delivered" for r in rows)
    )
    assert len(delivered) == 2 and len(receiver.received) == 2

    # deleted: no more notifications, and it is gone for its owner
    assert (
        await ngsild.client.delete(f"{SUBSCRIPTIONS}/{subscription_id}", headers=reader.headers)
    ).status_code == 204
    problem(
        await ngsild.client.get(f"{SUBSCRIPTIONS}/{subscription_id}", headers=reader.headers),
        404,
        "ResourceNotFound",
    )
    await ngsild.client.patch(
        url, json={"status": {"type": "Property", "value": "occupied"}}, headers=writer.headers
    )
    await ngsild.client.patch(
        url, json={"status": {"type": "Property", "value": "free"}}, headers=writer.headers
    )
    assert len(await table_rows(ngsild.app, ngsild_notification)) == 2


async def test_subscriptions_respect_dataset_access(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party], receiver: Receiver
) -> None:
    writer, reader, outsider = parties
    before = await ngsild.snapshot()
    problem(
        await ngsild.client.post(SUBSCRIPTIONS, json=subscription(receiver.url), headers=outsider.headers),
        403,
        "urn:tsunagu:problem:dataset-access-denied",
    )
    problem(
        await ngsild.client.post(SUBSCRIPTIONS, json=subscription(receiver.url)),
        401,
        "urn:tsunagu:problem:invalid-token",
    )
    assert await ngsild.snapshot() == before
    # anyone with a token may follow a public dataset
    public = subscription(
        receiver.url, entities=[{"type": "BusStop", "idPattern": "^urn:ngsi-ld:BusStop:ebetsu-"}]
    )
    public_id = await _subscribe(ngsild, outsider, public)
    # the reader's subscription is not the outsider's to see or delete
    reader_id = await _subscribe(
        ngsild,
        reader,
        subscription(receiver.url, entities=[{"type": "ParkingSpot", "id": "urn:ngsi-ld:ParkingSpot:none"}]),
    )
    problem(
        await ngsild.client.get(f"{SUBSCRIPTIONS}/{reader_id}", headers=outsider.headers),
        404,
        "ResourceNotFound",
    )
    problem(
        await ngsild.client.delete(f"{SUBSCRIPTIONS}/{reader_id}", headers=outsider.headers),
        404,
        "ResourceNotFound",
    )
    stop = {
        "id": "urn:ngsi-ld:BusStop:ebetsu-1",
        "type": "BusStop",
        "name": {"type": "Property", "value": "江別駅"},
    }
    other = {
        "id": "urn:ngsi-ld:BusStop:sapporo-1",
        "type": "BusStop",
        "name": {"type": "Property", "value": "札幌駅"},
    }
    for entity in (other, stop):
        assert (await ngsild.client.post(ENTITIES, json=entity, headers=writer.headers)).status_code == 201
    [notified] = await receiver.wait(1)
    assert notified["subscriptionId"] == public_id and notified["data"] == [stop]
    for subscription_id, owner in ((public_id, outsider), (reader_id, reader)):
        await ngsild.client.delete(f"{SUBSCRIPTIONS}/{subscription_id}", headers=owner.headers)


def _bad_subscriptions(endpoint: str) -> list[tuple[str, dict[str, Any], int, str]]:
    good = subscription(endpoint)
    return [
        ("not a Subscription", {**good, "type": "Sub"}, 400, "BadRequestData"),
        ("no entities", {k: v for k, v in good.items() if k != "entities"}, 400, "BadRequestData"),
        ("unknown type", {**good, "entities": [{"type": "Unheard"}]}, 400, "BadRequestData"),
        ("plain http off loopback", subscription("http://city.example/notify"), 400, "BadRequestData"),
        ("not a URL", subscription("notify-me"), 400, "BadRequestData"),
        ("bad q", {**good, "q": "status=="}, 400, "BadRequestData"),
        (
            "bad geoQ",
            {**good, "geoQ": {"georel": "near", "geometry": "Point", "coordinates": [141, 43]}},
            400,
            "BadRequestData",
        ),
        (
            "bad idPattern",
            {**good, "entities": [{"type": "ParkingSpot", "idPattern": "("}]},
            400,
            "BadRequestData",
        ),
        (
            "bad format",
            {**good, "notification": {"format": "xml", "endpoint": {"uri": endpoint}}},
            400,
            "BadRequestData",
        ),
        ("bad expiresAt", {**good, "expiresAt": "tomorrow"}, 400, "BadRequestData"),
        ("unsupported member", {**good, "timeInterval": 60}, 422, "OperationNotSupported"),
    ]


async def test_bad_subscriptions_are_refused_and_nothing_is_written(
    ngsild: NgsiLdHarness, parties: tuple[Party, Party, Party], receiver: Receiver
) -> None:
    reader = parties[1]
    before = await ngsild.snapshot()
    for case, body, status, kind in _bad_subscriptions(receiver.url):
        response = await ngsild.client.post(SUBSCRIPTIONS, json=body, headers=reader.headers)
        assert response.status_code == status, (case, response.text)
        problem(response, status, kind)
    assert await ngsild.snapshot() == before
    taken = await _subscribe(
        ngsild, reader, {**subscription(receiver.url), "id": "urn:ngsi-ld:Subscription:fixed"}
    )
    problem(
        await ngsild.client.post(
            SUBSCRIPTIONS, json={**subscription(receiver.url), "id": taken}, headers=reader.headers
        ),
        409,
        "AlreadyExists",
    )
    await ngsild.client.delete(f"{SUBSCRIPTIONS}/{taken}", headers=reader.headers)


async def test_a_failing_receiver_is_retried_and_a_queued_notification_survives_a_restart(
    ngsild_platform: Any, receiver: Receiver
) -> None:
    """The notification row commits with the change: a broker stopped while the receiver fails
    loses nothing; the next broker process on the same database sends it."""
    async with scratch_database("tsunagu_ngsild") as url:
        async with ngsild_broker(ngsild_platform, url) as first:
            writer, reader = await first.party(), await first.party("ngsi-ld:read")
            await first.dataset("parking", ["ParkingSpot"], [reader.client_id], [writer.client_id])
            await _subscribe(first, reader, subscription(receiver.url))
            receiver.answer = 503
            assert (
                await first.client.post(ENTITIES, json=spot(7), headers=writer.headers)
            ).status_code == 201
            [row] = await rows_when(
                first, ngsild_notification, lambda rows: rows and rows[0]["attempts"] >= 1
            )
            assert row["state"] == "pending" and row["last_error"] == "HTTP 503"
        assert receiver.received == []
        receiver.answer = 204
        async with ngsild_broker(ngsild_platform, url) as second:
            [body] = await receiver.wait(1)
            assert body["data"][0]["id"] == spot(7)["id"]
            [row] = await rows_when(second, ngsild_notification, lambda rows: rows[0]["state"] != "pending")
            assert row["state"] == "delivered" and row["attempts"] >= 2
