"""The chassis every service runs on: health, readiness, metrics, OpenAPI, errors, auth, limits."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tests.events.support import wait_until
from tests.fixtures.services import SERVICES, build_app, caller_auth, running, service_settings, sqlite_url
from tests.fixtures.softhsm import pkcs11_settings_for
from tsunagu.auth import ProvisionedCredentials
from tsunagu.obs import GcPauses
from tsunagu.service.app import tune_garbage_collector
from tsunagu.settings import KafkaSettings

PING = "/internal/v1/diagnostics/pings"


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_every_service_starts_and_answers_health_readiness_metrics_and_openapi(
    service: str,
    tmp_path: Path,
    kafka_settings: KafkaSettings,
    credentials: ProvisionedCredentials,
    softhsm_signer_token,
):
    extra = {"pkcs11": pkcs11_settings_for(softhsm_signer_token)} if service == "signer" else {}
    settings = service_settings(
        service,
        database_url=sqlite_url(tmp_path, service),
        kafka=kafka_settings,
        credentials=credentials,
        **extra,
    )
    others = [callback for callback in gc.callbacks if isinstance(callback, GcPauses)]  # other apps'
    async with running(build_app(service, settings)) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}

        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until(ready)
        checks = (await client.get("/readyz")).json()["checks"]
        assert checks == {"database": "ok", "kafka": "ok", **({"hsm": "ok"} if service == "signer" else {})}
        spec = (await client.get("/openapi.json")).json()
        assert PING in spec["paths"] and "/healthz" in spec["paths"]
        metrics = (await client.get("/metrics")).text
        assert 'tsunagu_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in metrics
        assert "tsunagu_outbox_pending_events" in metrics
        gc.collect(2)  # timed by the app's gc callback, which leaves with the app
        await asyncio.sleep(0.25)  # the event-loop watcher samples every 0.1 s
        metrics = (await client.get("/metrics")).text
        assert "tsunagu_event_loop_lag_seconds_count 0.0" not in metrics
        assert "tsunagu_event_loop_lag_seconds_count" in metrics
        assert 'tsunagu_gc_pause_seconds_count{generation="2"}' in metrics
        assert 'tsunagu_gc_pause_seconds_count{generation="2"} 0.0' not in metrics
        ours = [callback for callback in gc.callbacks if isinstance(callback, GcPauses)]
        assert len(ours) == len(others) + 1
    assert [callback for callback in gc.callbacks if isinstance(callback, GcPauses)] == others


async def test_readyz_reports_an_unreachable_kafka_and_the_service_still_serves(
    tmp_path: Path, credentials: ProvisionedCredentials
):
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:9")  # discard port: nothing listens
    settings = service_settings(
        "ca", database_url=sqlite_url(tmp_path, "ca"), kafka=dead, credentials=credentials
    )
    async with running(build_app("ca", settings)) as client:
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert response.json()["checks"] == {"database": "ok", "kafka": "unavailable"}
        assert (await client.get("/healthz")).status_code == 200


@pytest.fixture
async def ca(tmp_path: Path, kafka_settings: KafkaSettings, credentials: ProvisionedCredentials):
    settings = service_settings(
        "ca",
        database_url=sqlite_url(tmp_path, "ca"),
        kafka=kafka_settings,
        credentials=credentials,
        max_body_bytes=2048,
    )
    app = build_app("ca", settings)

    @app.get("/test/boom")
    async def boom() -> None:
        raise RuntimeError("secret-value-4711 must not leak")

    async with running(app) as client:
        yield app, client


async def _pings(app) -> int:  # type: ignore[no-untyped-def]
    runtime = app.state.runtime
    table = runtime.outbox.table
    async with runtime.db.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(table))).scalar_one())


async def test_unknown_route_is_a_problem_document(ca):
    _, client = ca
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:tsunagu:problem:not-found"


async def test_internal_call_without_token_is_401_and_changes_nothing(ca):
    app, client = ca
    response = await client.post(PING, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"].startswith("urn:tsunagu:problem:service-token")
    forged = await client.post(PING, json={}, headers={"Authorization": "Bearer e30.e30.AAAA"})
    assert forged.status_code == 401
    assert await _pings(app) == 0


async def test_internal_call_from_a_service_without_the_permission_is_403(ca, credentials):
    app, client = ca
    response = await client.post(PING, json={}, auth=caller_auth(credentials, "idp", "ca"))
    assert response.status_code == 403
    assert response.json()["type"] == "urn:tsunagu:problem:caller-not-allowed"
    # A token minted for another service is not accepted here either.
    wrong_audience = await client.post(PING, json={}, auth=caller_auth(credentials, "operator", "consent"))
    assert wrong_audience.status_code == 401
    assert await _pings(app) == 0


async def test_validation_errors_name_the_field_but_never_echo_the_input(ca, credentials):
    app, client = ca
    secret = "4111-1111-1111-1111-" + "x" * 300
    response = await client.post(PING, json={"note": secret}, auth=caller_auth(credentials, "operator", "ca"))
    assert response.status_code == 422
    body = response.json()
    assert body["type"] == "urn:tsunagu:problem:validation-failed"
    assert body["errors"] == [{"location": "body.note", "type": "string_too_long"}]
    assert "4111" not in response.text
    assert await _pings(app) == 0


async def test_oversize_body_is_413_and_changes_nothing(ca, credentials):
    app, client = ca
    big = json.dumps({"note": "y" * 4096})
    auth = caller_auth(credentials, "operator", "ca")
    declared = await client.post(PING, content=big, headers={"content-type": "application/json"}, auth=auth)
    assert declared.status_code == 413
    assert declared.json()["type"] == "urn:tsunagu:problem:payload-too-large"

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(8):
            yield b"z" * 512

    streamed = await client.post(
        PING, content=chunks(), headers={"content-type": "application/json"}, auth=auth
    )
    assert streamed.status_code == 413
    assert await _pings(app) == 0


async def test_unexpected_error_is_500_without_internals_and_logged_with_the_request_id(ca, caplog):
    _, client = ca
    with caplog.at_level(logging.ERROR):
        response = await client.get("/test/boom", headers={"X-Request-ID": "req-test-12345"})
    assert response.status_code == 500
    assert "secret-value-4711" not in response.text and "Traceback" not in response.text
    assert response.json()["request_id"] == "req-test-12345"
    assert response.headers["x-request-id"] == "req-test-12345"
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged and logged[0].exc_info is not None


async def test_malformed_request_id_is_replaced_not_logged(ca):
    _, client = ca
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith\ncontrol"})
    assert response.headers["x-request-id"] != "bad id\twith\ncontrol"
    assert len(response.headers["x-request-id"]) == 32


async def test_ping_travels_through_outbox_and_kafka_to_another_service_with_its_request_id(
    tmp_path: Path, postgres_url: str, kafka_settings: KafkaSettings, credentials: ProvisionedCredentials
):
    ca_settings = service_settings(
        "ca", database_url=sqlite_url(tmp_path, "ca"), kafka=kafka_settings, credentials=credentials
    )
    consent_settings = service_settings(
        "consent", database_url=postgres_url, kafka=kafka_settings, credentials=credentials
    )
    ca_app, consent_app = build_app("ca", ca_settings), build_app("consent", consent_settings)
    async with (
        running(ca_app, caller_auth(credentials, "operator", "ca")) as ca_client,
        running(consent_app, caller_auth(credentials, "operator", "consent")) as consent_client,
    ):
        sent = await ca_client.post(PING, json={"note": "hello"}, headers={"X-Request-ID": "req-ping-000001"})
        assert sent.status_code == 201
        ping_id = sent.json()["ping_id"]

        async def received() -> bool:
            return (
                await consent_client.get(f"/internal/v1/diagnostics/receipts/{ping_id}")
            ).status_code == 200

        await wait_until(received)
        receipt = (await consent_client.get(f"/internal/v1/diagnostics/receipts/{ping_id}")).json()
        assert receipt["origin"] == "ca" and receipt["event_id"] == sent.json()["event_id"]
        missing = await consent_client.get("/internal/v1/diagnostics/receipts/does-not-exist")
        assert missing.status_code == 404

        runtime = ca_app.state.runtime
        async with runtime.db.sessions() as session:
            payload = (await session.execute(select(runtime.outbox.table.c.payload))).scalar_one()
        assert json.loads(payload)["requestid"] == "req-ping-000001"
        metrics = (await consent_client.get("/metrics")).text
        assert 'tsunagu_consumer_events_total{consumer="consent.diagnostics",outcome="applied"}' in metrics
        # The diagnostics group is not urgent: its fetches wait longer than the service's own
        # groups' (on tansu every fetch waits its full time, so this is how often it polls).
        waits = {
            consumer.name: consumer.consumer._fetch_max_wait_ms
            for app in (ca_app, consent_app)
            for consumer in app.state.runtime.consumers
        }
        assert waits.pop("ca.diagnostics") == waits.pop("consent.diagnostics") == 500
        assert waits and set(waits.values()) == {kafka_settings.fetch_max_wait_ms}, waits


def test_every_service_is_listed():
    assert set(SERVICES) == {p.name for p in Path("services").iterdir() if (p / "app.py").exists()}
    assert httpx  # the client library the fixtures use


async def test_a_client_over_its_rate_gets_429_with_retry_after_and_probes_still_answer(
    tmp_path: Path, kafka_settings: KafkaSettings, credentials: ProvisionedCredentials
):
    settings = service_settings(
        "broker",
        database_url=sqlite_url(tmp_path, "broker"),
        kafka=kafka_settings,
        credentials=credentials,
        rate_limit_per_s=1,
        rate_limit_burst=3,
    )
    async with running(build_app("broker", settings)) as client:
        statuses = [(await client.get("/openapi.json")).status_code for _ in range(5)]
        assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
        refused = await client.get("/openapi.json")
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["type"] == "urn:tsunagu:problem:too-many-requests"
        assert (await client.get("/healthz")).status_code == 200


def test_a_service_process_freezes_its_startup_heap_and_collects_rarely():
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        tune_garbage_collector((20_000, 20, 20))
        assert gc.get_threshold() == (20_000, 20, 20)
        assert gc.get_freeze_count() > frozen  # what existed is out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
