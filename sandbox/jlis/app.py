"""The sandbox's HTTP API: thin routes over :class:`JlisSandbox` (README.md has the contract).

Routes are ``async def`` on purpose: every call into the sandbox then runs on the event loop
thread, one at a time, so the push task and the routes never touch the state concurrently. A card
issue blocks the loop for the RSA key generation (≈ 0.1–0.3 s), which a sandbox can afford.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from tsunagu.errors import BadRequest
from tsunagu.errors.fastapi import install_problem_handlers
from tsunagu.sandbox.jlis.crl import CrlDocument
from tsunagu.sandbox.jlis.jws import b64url_encode
from tsunagu.sandbox.jlis.pki import Clock
from tsunagu.sandbox.jlis.sandbox import JlisSandbox
from tsunagu.sandbox.jlis.schemas import (
    Basic4Answer,
    Basic4Request,
    CardIssued,
    CardRequest,
    CardView,
    CrlPublished,
    LifeEvent,
    MoveRequest,
    RenameRequest,
    SignRequest,
    SignResponse,
    Subscription,
    SubscriptionRequest,
)

PUSH_INTERVAL_S = 1.0
CERTIFICATE_NAMES = {"root", "signing", "user-auth", "ocsp", "ocsp-user-auth", "push"}


class InvalidData(BadRequest):
    code = "jlis-invalid-data"
    title = "data is not base64url"


def _not_modified(document: CrlDocument, request: Request) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:  # RFC 9110 §13.1.3: If-None-Match wins over If-Modified-Since
        return if_none_match.strip() == "*" or document.etag in [t.strip() for t in if_none_match.split(",")]
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        moment = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
    return moment.tzinfo is not None and document.this_update.replace(microsecond=0) <= moment


def _crl_response(document: CrlDocument, request: Request) -> Response:
    headers = {
        "ETag": document.etag,
        "Last-Modified": format_datetime(document.this_update.astimezone(UTC), usegmt=True),
        "Cache-Control": "public, max-age=300",
    }
    if _not_modified(document, request):
        return Response(status_code=304, headers=headers)
    return Response(document.der, media_type="application/pkix-crl", headers=headers)


def _add_routes(app: FastAPI, sandbox: JlisSandbox) -> None:
    @app.get("/ca/{name}.pem")
    async def ca_certificate(name: str) -> Response:
        if name not in CERTIFICATE_NAMES:
            return Response(status_code=404)
        return Response(sandbox.certificate_pem(name), media_type="application/x-pem-file")

    @app.post("/cards", status_code=201)
    async def create_card(body: CardRequest) -> CardIssued:
        return sandbox.create_card(body.name, body.address, body.birth_date, body.sex, body.key_storage)

    @app.get("/cards/{card_id}")
    async def get_card(card_id: str) -> CardView:
        return sandbox.card(card_id)

    @app.post("/cards/{card_id}/sign")
    async def sign(card_id: str, body: SignRequest) -> SignResponse:
        try:
            data = base64.urlsafe_b64decode(body.data + "=" * (-len(body.data) % 4))
        except (binascii.Error, ValueError):
            raise InvalidData() from None
        signature, record = sandbox.sign_with_card(card_id, data, body.certificate)
        return SignResponse(signature=b64url_encode(signature), serial=record.serial, certificate=record.pem)

    @app.post("/persons/{person_id}/move")
    async def move(person_id: str, body: MoveRequest) -> LifeEvent:
        return sandbox.move(person_id, body.address)

    @app.post("/persons/{person_id}/rename")
    async def rename(person_id: str, body: RenameRequest) -> LifeEvent:
        return sandbox.rename(person_id, body.name)

    @app.post("/persons/{person_id}/renew")
    async def renew(person_id: str) -> LifeEvent:
        return sandbox.renew(person_id)

    @app.post("/persons/{person_id}/lose")
    async def lose(person_id: str) -> LifeEvent:
        return sandbox.lose(person_id)

    @app.post("/persons/{person_id}/die")
    async def die(person_id: str) -> LifeEvent:
        return sandbox.die(person_id)

    @app.get("/crl/{kind}.crl")
    async def crl(kind: str, request: Request) -> Response:
        return _crl_response(sandbox.crl(kind), request)

    @app.post("/crl/publish")
    async def publish() -> CrlPublished:
        signing, user_auth = sandbox.publish_crl("signing"), sandbox.publish_crl("user-auth")
        return CrlPublished(signing_crl_number=signing.number, user_auth_crl_number=user_auth.number)

    @app.post("/ocsp")
    async def ocsp(request: Request) -> Response:
        body = await request.body()
        return Response(sandbox.ocsp(body), media_type="application/ocsp-response")

    @app.post("/subscriptions", status_code=201)
    async def subscribe(body: SubscriptionRequest) -> Subscription:
        return sandbox.subscribe(body.url)

    @app.post("/basic4")
    async def basic4(body: Basic4Request) -> Basic4Answer:
        return sandbox.latest_basic4(body.serial, body.consent)


async def _push_loop(sandbox: JlisSandbox, interval_s: float) -> None:
    while True:
        with contextlib.suppress(Exception):  # a broken subscriber must not stop the loop
            await sandbox.adeliver_pending()
        await asyncio.sleep(interval_s)


def create_app(
    state_dir: Path | None,
    clock: Clock | None = None,
    *,
    sandbox: JlisSandbox | None = None,
    push_interval_s: float | None = PUSH_INTERVAL_S,
    **options: Any,
) -> FastAPI:
    """The sandbox app. ``sandbox`` overrides the one built from ``state_dir``/``clock``/``options``
    (keyword arguments of :class:`JlisSandbox`); ``push_interval_s=None`` turns the background
    push task off (tests call ``deliver_pending`` themselves)."""
    jlis = sandbox or JlisSandbox(state_dir, clock, **options)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_push_loop(jlis, push_interval_s)) if push_interval_s else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(title="J-LIS sandbox (JPKI)", version="1", lifespan=lifespan)
    app.state.jlis = jlis
    install_problem_handlers(app)
    _add_routes(app, jlis)
    return app
