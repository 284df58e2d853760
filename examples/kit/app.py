"""A sample relying party as a small Starlette app: the home page, login and callback, logout,
``/me`` (what the app knows, as JSON — the story and the tests read it), the diary or data view of
the example, and — for an example that subscribes — the broker's webhook.

Sessions are server-side (the cookie carries only a random, signed session id); the tokens never
reach the browser.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuthError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from examples.kit import pages
from examples.kit.broker import BadPush, Broker, Exchange, KeysUnavailable
from examples.kit.config import RpConfig
from examples.kit.oidc import data_access_details, finish_login, register_idp

log = logging.getLogger("examples")
MAX_FORM_BYTES = 4_096


@dataclass(frozen=True)
class DataAccess:
    """The items an example asks the citizen for in the login, and why."""

    items: list[str]
    purpose: dict[str, str]  # {"code", "ja", "en"}
    pull: bool = True  # read them through the broker on each visit
    subscribe: bool = False  # and/or receive their changes by push


@dataclass(frozen=True)
class Example:
    app: str
    about_ja: str
    about_en: str
    data_access: DataAccess | None = None
    diary: bool = False  # keeps the citizen's own notes (e-diary)


@dataclass
class Citizen:
    """What the app keeps about a logged-in citizen: its own ``sub`` and what the login granted."""

    sub: str
    grant: dict[str, Any] = field(default_factory=dict)
    diary: list[str] = field(default_factory=list)


@dataclass
class State:
    example: Example
    config: RpConfig
    sessions: dict[str, str] = field(default_factory=dict)  # session id → sub
    citizens: dict[str, Citizen] = field(default_factory=dict)  # sub → what we keep
    notices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sub → pushes
    broker: Broker | None = None


def _citizen(state: State, request: Request) -> Citizen | None:
    sub = state.sessions.get(str(request.session.get("sid", "")))
    return state.citizens.get(sub) if sub else None


def _grant_view(token: dict[str, Any]) -> dict[str, Any]:
    details = token.get("authorization_details") or [{}]
    return {
        "grant_id": token.get("grant_id"),
        "items": details[0].get("items", []),
        "refused_items": details[0].get("refused_items", []),
    }


async def _data(state: State, citizen: Citizen) -> Exchange | None:
    access = state.example.data_access
    if access is None or not access.pull or state.broker is None:
        return None
    try:
        return await state.broker.exchange(citizen.sub, access.items, access.purpose["code"])
    except (httpx.HTTPError, OAuthError) as error:  # the broker, or the idp for its token
        log.warning("no broker answer: %s", type(error).__name__)
        return Exchange(503, {}, {"type": "urn:example:broker-unreachable", "status": 503})


async def _view(state: State, citizen: Citizen) -> dict[str, Any]:
    exchange = await _data(state, citizen)
    return {
        "app": state.example.app,
        "title": state.config.title_ja,
        "client_id": state.config.client_id,
        "sub": citizen.sub,
        "grant": citizen.grant,
        "data": None if exchange is None else exchange.items,
        "refused": None if exchange is None else exchange.refused,
        "status": None if exchange is None else exchange.status,
        "notices": state.notices.get(citizen.sub, []),
        "diary": citizen.diary,
    }


class RelyingParty:
    """The routes of one example (thin: the login is Authlib's, the data the broker's)."""

    def __init__(self, example: Example, config: RpConfig) -> None:
        self.state = State(example, config)
        self.example = example
        self.config = config
        self.idp = register_idp(config)

    async def home(self, request: Request) -> Response:
        citizen = _citizen(self.state, request)
        view = await _view(self.state, citizen) if citizen else None
        return pages.render(self.example, self.config, view)

    async def login(self, request: Request) -> Response:
        extra: dict[str, str] = {}
        access = self.example.data_access
        if access is not None:
            extra["authorization_details"] = data_access_details(access.items, access.purpose, [])
        redirect: Response = await self.idp.authorize_redirect(request, self.config.redirect_uri, **extra)
        return redirect

    async def callback(self, request: Request) -> Response:
        try:
            token = await finish_login(self.idp, request, self.config.issuer)
        except OAuthError as error:
            return pages.failure(self.config, error.error, error.description or "")
        sub = str(token["userinfo"]["sub"])
        citizen = self.state.citizens.setdefault(sub, Citizen(sub))
        citizen.grant = _grant_view(token)
        sid = secrets.token_urlsafe(24)
        self.state.sessions[sid] = sub
        request.session.clear()
        request.session["sid"] = sid
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        self.state.sessions.pop(str(request.session.get("sid", "")), None)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    async def me(self, request: Request) -> Response:
        citizen = _citizen(self.state, request)
        if citizen is None:
            return JSONResponse({"error": "not logged in"}, status_code=401)
        return JSONResponse(await _view(self.state, citizen))

    async def write_diary(self, request: Request) -> Response:
        citizen = _citizen(self.state, request)
        if citizen is None:
            return RedirectResponse("/", status_code=303)
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return pages.failure(self.config, "too_large", "4 KiB まで / at most 4 KiB", status=413)
        async with request.form() as form:
            entry = str(form.get("entry", "")).strip()[:500]
        if entry:
            citizen.diary.append(entry)
        return RedirectResponse("/", status_code=303)

    async def webhook(self, request: Request) -> Response:
        broker = self.state.broker
        if broker is None:
            return Response(status_code=404)
        try:
            claims = await broker.verify_push(await request.body())
        except BadPush as refused:
            log.warning("push refused: %s", refused)
            return Response(status_code=400)
        except KeysUnavailable as error:
            log.warning("the broker's keys are unavailable (%s): the delivery will be retried", error)
            return Response(status_code=503, headers={"Retry-After": "5"})
        if claims:  # empty: a redelivery already kept
            notice = {k: claims.get(k) for k in ("item", "value", "purpose", "sequence", "iat", "jti")}
            self.state.notices.setdefault(str(claims["sub"]), []).append(notice)
        return Response(status_code=204)

    @asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        access = self.example.data_access
        subscribing: asyncio.Task[None] | None = None
        if access is not None:
            scope = "broker:exchange broker:subscribe" if access.subscribe else "broker:exchange"
            self.state.broker = Broker(self.config, scope)
            if access.subscribe:
                subscribing = asyncio.create_task(self._subscribe(self.state.broker, access))
        try:
            yield
        finally:
            if subscribing is not None:
                subscribing.cancel()
            if self.state.broker is not None:
                await self.state.broker.aclose()

    async def _subscribe(self, broker: Broker, access: DataAccess) -> None:
        """Subscribe the webhook, retrying while the idp or the broker cannot be reached: the
        app serves meanwhile (a push needs the subscription; a page does not)."""
        delay = 0.5
        while True:
            try:
                await broker.ensure_subscription(access.items, access.purpose["code"])
                log.info("%s: subscribed to %s", self.config.app, ", ".join(access.items))
                return
            except (httpx.HTTPError, OAuthError) as error:
                log.warning("%s: cannot subscribe yet (%s); retrying", self.config.app, type(error).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def create_app(example: Example, config: RpConfig) -> Starlette:
    rp = RelyingParty(example, config)
    routes = [
        Route("/", rp.home),
        Route("/login", rp.login),
        Route("/callback", rp.callback),
        Route("/logout", rp.logout, methods=["POST"]),
        Route("/me", rp.me),
    ]
    if example.diary:
        routes.append(Route("/diary", rp.write_diary, methods=["POST"]))
    if example.data_access is not None and example.data_access.subscribe:
        routes.append(Route("/webhooks/tsunagu", rp.webhook, methods=["POST"]))
    middleware = [
        Middleware(
            SessionMiddleware,
            secret_key=secrets.token_urlsafe(32),  # sessions live as long as the process
            session_cookie=f"rp{config.port}_session",  # cookies ignore ports: one name per app
            same_site="lax",
            https_only=config.base_url.startswith("https://"),
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=rp.lifespan)
