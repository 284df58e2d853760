"""Push notifications: a JWS the subscriber can verify, bounded retries with backoff."""

from __future__ import annotations

import base64
import json
from datetime import date
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request, Response
from joserfc import jws
from joserfc.jwk import RSAKey

from tests.sandbox.conftest import FakeClock, KeyPool
from tsunagu.sandbox.jlis import JlisSandbox, RetryPolicy


def _subscriber(root: x509.Certificate, received: list[dict[str, object]]) -> FastAPI:
    """What the platform's jlis-sync does: check x5c chains to the J-LIS root, verify, keep."""
    app = FastAPI()

    @app.post("/push")
    async def push(request: Request) -> Response:
        token = (await request.body()).decode()
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        certificate = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        certificate.verify_directly_issued_by(root)
        public_key = certificate.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)
        key = RSAKey.import_key(public_key)
        # joserfc refuses headers over 512 bytes by default; an x5c header is ≈ 1.7 kB
        registry = jws.JWSRegistry(algorithms=["RS256"])
        registry.max_header_length = 4096
        try:
            verified = jws.deserialize_compact(token, key, registry=registry)
        except Exception:
            return Response(status_code=400)
        received.append(json.loads(verified.payload))
        return Response(status_code=204)

    return app


async def test_subscriber_receives_a_verifiable_notification(
    state_dir: Path, clock: FakeClock, jlis: JlisSandbox, key_pool: KeyPool
) -> None:
    received: list[dict[str, object]] = []
    transport = httpx.ASGITransport(app=_subscriber(jlis.hierarchy.root.certificate, received))
    pusher = JlisSandbox(state_dir, clock, push_async_transport=transport, card_key_factory=key_pool)
    pusher.subscribe("http://jlis-sync/push")
    card = pusher.create_card("佐藤 次郎", "東京都港区芝公園4-2-8", date(1960, 3, 3), "1")
    event = pusher.move(card.person_id, "神奈川県横浜市中区本町6-50-10")
    assert await pusher.adeliver_pending() == 1
    assert received == [
        {
            "id": received[0]["id"],
            "type": "move",
            "issued_at": "2026-04-01T01:00:00Z",
            "old_serial": card.signing_serial,
            "new_serial": event.new_serial,
            "issuer": "signing",
        }
    ]
    assert pusher.store.state.deliveries[0].status == "delivered"
    # nothing is sent twice
    assert await pusher.adeliver_pending() == 0 and len(received) == 1
    # a renewal tells about both certificates
    pusher.renew(card.person_id)
    assert await pusher.adeliver_pending() == 2
    assert sorted(str(n["issuer"]) for n in received[1:]) == ["signing", "user-auth"]
    assert {n["type"] for n in received[1:]} == {"renew"}


def test_retry_after_a_500_then_success(state_dir: Path, clock: FakeClock, key_pool: KeyPool) -> None:
    answers = [500, 500]
    seen: list[str] = []

    def subscriber(request: httpx.Request) -> httpx.Response:
        seen.append(request.content.decode())
        assert request.headers["content-type"] == "application/jose"
        return httpx.Response(answers.pop(0))

    jlis = JlisSandbox(
        state_dir, clock, push_transport=httpx.MockTransport(subscriber), card_key_factory=key_pool
    )
    jlis.subscribe("http://jlis-sync/push")
    card = jlis.create_card("鈴木 三郎", "千葉県千葉市中央区市場町1-1", date(2001, 2, 3), "1")
    jlis.die(card.person_id)
    assert jlis.deliver_pending() == 0
    delivery = jlis.store.state.deliveries[0]
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 500")
    # not due yet: backoff of 1 s for each of the two notifications
    clock.advance(seconds=0.5)
    assert jlis.deliver_pending() == 0 and len(seen) == 2
    clock.advance(seconds=1)
    answers[:] = [204, 204]
    assert jlis.deliver_pending() == 2
    assert seen[0] == seen[2]  # the same signed notification, so the same idempotency key
    assert {d.status for d in jlis.store.state.deliveries} == {"delivered"}


def test_delivery_gives_up_after_the_last_attempt(
    state_dir: Path, clock: FakeClock, key_pool: KeyPool
) -> None:
    policy = RetryPolicy(max_attempts=3)
    failing = JlisSandbox(
        state_dir,
        clock,
        retry_policy=policy,
        push_transport=httpx.MockTransport(lambda _r: httpx.Response(503)),
    )
    failing.subscribe("http://jlis-sync/push")
    card = failing.create_card("田中 四郎", "埼玉県さいたま市浦和区高砂3-15-1", date(1999, 9, 9), "2")
    failing.lose(card.person_id)
    delays = []
    for _ in range(3):
        before = clock.now
        failing.deliver_pending()
        delivery = failing.store.state.deliveries[0]
        delays.append((delivery.next_attempt_at - before).total_seconds())
        clock.advance(minutes=10)
    assert delays[:2] == [1.0, 2.0]
    assert {d.status for d in failing.store.state.deliveries} == {"failed"}
    assert failing.deliver_pending() == 0
    # and the outbox survived on disk
    assert [d.status for d in JlisSandbox(state_dir, clock).store.state.deliveries] == ["failed", "failed"]


async def test_subscribe_over_http(client: httpx.AsyncClient, jlis: JlisSandbox) -> None:
    first = await client.post("/subscriptions", json={"url": "http://jlis-sync:8080/push"})
    again = await client.post("/subscriptions", json={"url": "http://jlis-sync:8080/push"})
    assert first.status_code == 201 and first.json() == again.json()
    assert (await client.post("/subscriptions", json={"url": "ftp://x"})).status_code == 422
    assert [s.url for s in jlis.store.state.subscribers] == ["http://jlis-sync:8080/push"]
