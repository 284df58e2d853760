"""``create_service_app``: the same wiring for every service, so each service's app.py is tiny."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import MetaData
from starlette.types import ASGIApp, Receive, Scope, Send

from tsunagu.auth import AccessPolicy, InternalAuth, ServiceTokenIssuer, ServiceTokenVerifier, TrustStore
from tsunagu.auth.keys import load_private_key
from tsunagu.db import Database, MigrationRunner
from tsunagu.errors import DomainError
from tsunagu.errors.fastapi import domain_error_handler, install_problem_handlers
from tsunagu.events import EventTables, Handler, Outbox
from tsunagu.obs import GcPauses, Metrics, configure_logging
from tsunagu.obs.metrics import watch_event_loop
from tsunagu.obs.middleware import ObservabilityMiddleware
from tsunagu.obs.ratelimit import RateLimitMiddleware
from tsunagu.service import diagnostics
from tsunagu.service.runtime import ServiceRuntime, get_runtime, start_events
from tsunagu.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group of this service: its name (suffix of the group id), topics and handlers."""

    name: str
    topics: Sequence[str]
    handlers: Mapping[str, Handler]
    tables: EventTables
    # How long a fetch may wait for records, when this group's events are not urgent (None: the
    # service's ``kafka.fetch_max_wait_ms``). On tansu every fetch waits this long, so each
    # consumer polls the broker 1000/max_wait times a second, busy or idle.
    fetch_max_wait_ms: int | None = None


@dataclass(frozen=True)
class ServiceSpec:
    settings: ServiceSettings
    title: str
    description: str
    metadata: MetaData
    tables: EventTables
    migrations_dir: Path
    routers: Sequence[APIRouter] = ()
    consumers: Sequence[ConsumerSpec] = ()
    # Which callers may use which permission; deny by default (extended by settings.auth).
    grants: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # Service-specific resources (an HSM session, clients…): entered after the database and
    # outbox exist, exited before they close; what it yields is ``runtime.resources``.
    resources: Callable[[ServiceRuntime], AbstractAsyncContextManager[Any]] | None = None
    # Extra readiness checks by name (database and Kafka are always checked).
    readiness: Mapping[str, Callable[[ServiceRuntime], Awaitable[bool]]] = field(default_factory=dict)
    # Hot endpoints served as plain ASGI apps before FastAPI's routing (still behind the rate limit,
    # body limit, request id and metrics): (method, path) → app; the path is exact or ends in one
    # ``{parameter}``. FastAPI's router costs ≈ 60–90 µs a request, most of what an OCSP answer
    # from memory costs; with dependencies to solve, ≈ 0.3 ms, more than an NGSI-LD read by id.
    fast_routes: Mapping[tuple[str, str], ASGIApp] = field(default_factory=dict)
    # Errors that are not problem+json by standard (OAuth's RFC 6749 errors): exception type →
    # handler, installed after the problem handlers.
    exception_handlers: Mapping[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = field(
        default_factory=dict
    )
    # Tighter per-address budgets for sensitive path prefixes: prefix → (rate per s, burst),
    # on top of the service-wide one (login and token endpoints, for instance).
    strict_rate_limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    version: str = "0.1.0"


PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"


def migration_runner(spec: ServiceSpec, url: str) -> MigrationRunner:
    """The service's own revisions plus the shared platform branch (outbox, inbox, diagnostics)."""
    return MigrationRunner(spec.metadata, [spec.migrations_dir, PLATFORM_MIGRATIONS], url)


def _build_auth(
    settings: ServiceSettings, grants: Mapping[str, Sequence[str]]
) -> tuple[InternalAuth | None, ServiceTokenIssuer | None]:
    auth = issuer = None
    if settings.auth.trust_file:
        policy = AccessPolicy({**diagnostics.DEFAULT_GRANTS, **grants, **settings.auth.extra_grants})
        verifier = ServiceTokenVerifier(settings.service_name, TrustStore.from_file(settings.auth.trust_file))
        auth = InternalAuth(verifier, policy)
    if settings.auth.private_key_file:
        issuer = ServiceTokenIssuer(settings.service_name, load_private_key(settings.auth.private_key_file))
    if auth is None:
        log.warning("no service trust configured: every internal call will be refused (401)")
    return auth, issuer


def create_service_app(spec: ServiceSpec) -> FastAPI:
    settings = spec.settings
    metrics = Metrics(settings.service_name)
    consumers = [
        *spec.consumers,
        ConsumerSpec(
            "diagnostics",
            [diagnostics.TOPIC],
            diagnostics.handlers(spec.metadata),
            spec.tables,
            fetch_max_wait_ms=diagnostics.FETCH_MAX_WAIT_MS,
        ),
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, pool_size=settings.database_pool_size)
        if settings.migrate_on_start:
            await migration_runner(spec, settings.database_url).upgrade(db.engine)
        auth, issuer = _build_auth(settings, spec.grants)
        runtime = ServiceRuntime(
            settings=settings,
            db=db,
            outbox=Outbox(spec.tables, source=f"/tsunagu/{settings.service_name}"),
            metrics=metrics,
            auth=auth,
            issuer=issuer,
        )
        app.state.runtime = runtime
        app.state.internal_auth = auth
        async with AsyncExitStack() as stack:  # unwinds in reverse: loops, then resources, then db
            gc_pauses = GcPauses(metrics)
            gc_pauses.install()
            stack.callback(gc_pauses.remove)
            stack.push_async_callback(db.dispose)
            if spec.resources is not None:
                runtime.resources = await stack.enter_async_context(spec.resources(runtime))
            stack.push_async_callback(runtime.stop)
            runtime.tasks.append(asyncio.create_task(start_events(runtime, consumers), name="start-events"))
            runtime.tasks.append(
                asyncio.create_task(watch_event_loop(metrics, runtime.stopping), name="event-loop-lag")
            )
            log.info("service started", extra={"port": settings.port})
            yield
        log.info("service stopped")

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,  # the bundled Swagger UI loads from a CDN; serve the spec only
    )
    if spec.fast_routes:
        app.add_middleware(
            FastRoutes, routes=dict(spec.fast_routes), exception_handlers=dict(spec.exception_handlers)
        )
    # Added last = outermost: a refused request costs no more than the bucket check.
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(
        RateLimitMiddleware,
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        strict=spec.strict_rate_limits,
    )
    install_problem_handlers(app)
    for exception_type, handler in spec.exception_handlers.items():
        app.add_exception_handler(exception_type, handler)
    app.include_router(_ops_router(metrics, spec.readiness))
    app.include_router(diagnostics.router(spec.metadata))
    for router in spec.routers:
        app.include_router(router)
    return app


@dataclass(frozen=True)
class FastRoute:
    """What ``scope["route"]`` holds for a request a fast route serves (FastAPI sets it only for its
    own routes): the metrics label requests by its ``path`` template."""

    path: str
    app: ASGIApp
    parameter: str | None = None  # the last segment's name when the path ends in ``{name}``


class FastRoutes:
    """Dispatch ``(method, path)`` straight to its ASGI app; everything else goes to FastAPI.

    A path may end in one parameter (``/ngsi-ld/v1/entities/{entity_id}``): it matches any
    non-empty last segment, given to the app in ``scope["path_params"]`` as FastAPI would.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[tuple[str, str], ASGIApp],
        exception_handlers: Mapping[type[Exception], Callable[[Request, Any], Awaitable[Response]]]
        | None = None,
    ) -> None:
        self.app = app
        # What a fast route raises is answered as the app would answer it: a domain error as its
        # problem+json, and the service's own handlers (``ServiceSpec.exception_handlers``, e.g.
        # OAuth's errors).
        self.exception_handlers: dict[type[Exception], Callable[[Request, Any], Awaitable[Response]]] = {
            DomainError: domain_error_handler,
            **(exception_handlers or {}),
        }
        self.exact: dict[tuple[str, str], FastRoute] = {}
        self.by_parent: dict[tuple[str, str], FastRoute] = {}  # (method, path up to the last "/")
        for (method, path), target in routes.items():
            parent, _, last = path.rpartition("/")
            if last.startswith("{") and last.endswith("}"):
                self.by_parent[method, parent] = FastRoute(path, target, last[1:-1])
            else:
                self.exact[method, path] = FastRoute(path, target)

    def _handler_for(self, error: Exception) -> Callable[[Request, Any], Awaitable[Response]] | None:
        for kind in type(error).__mro__:
            handler = self.exception_handlers.get(kind)
            if handler is not None:
                return handler
        return None

    def _find(self, method: str, path: str) -> tuple[FastRoute, dict[str, str]] | None:
        exact = self.exact.get((method, path))
        if exact is not None:
            return exact, {}
        if self.by_parent:
            parent, _, last = path.rpartition("/")
            route = self.by_parent.get((method, parent)) if last else None
            if route is not None and route.parameter is not None:
                return route, {route.parameter: last}
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._find(scope["method"], scope["path"])
            if found is not None:
                route, scope["path_params"] = found
                scope["route"] = route
                try:
                    await route.app(scope, receive, send)
                except Exception as error:
                    handler = self._handler_for(error)
                    if handler is None:
                        raise
                    await (await handler(Request(scope, receive), error))(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _ops_router(
    metrics: Metrics, extra_checks: Mapping[str, Callable[[ServiceRuntime], Awaitable[bool]]]
) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: the database and Kafka answer")
    async def readyz(request: Request) -> JSONResponse:
        runtime = get_runtime(request)
        checks: dict[str, str] = {}
        try:
            await runtime.db.ping()
            checks["database"] = "ok"
        except Exception:
            checks["database"] = "unavailable"
        checks["kafka"] = "ok" if await runtime.kafka_ready() else "unavailable"
        for name, check in extra_checks.items():
            try:
                checks[name] = "ok" if await check(runtime) else "unavailable"
            except Exception:
                checks[name] = "unavailable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": checks},
            status_code=200 if ready else 503,
            headers=None if ready else {"Retry-After": "2"},
        )

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    return router


SERVER_KEEP_ALIVE_S = 20


def tune_garbage_collector(thresholds: tuple[int, int, int]) -> None:
    """Move what importing the service built (modules, classes, schemas, compiled SQL: hundreds of
    thousands of objects that live as long as the process) out of the garbage collector's sight,
    and collect less often (``GC_THRESHOLDS``). Every collection stops the event loop: full ones
    walked the whole heap (100-250 ms in consent under load before the freeze, under 25 ms
    after), and young ones ran ~11 times a second. Only for a service process of its own: objects
    frozen this way are never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def run_service(
    build_spec: Callable[[Any], ServiceSpec], settings: ServiceSettings, argv: Sequence[str] | None = None
) -> None:
    """Console entry point: ``serve`` (default; uvicorn, graceful stop on SIGTERM) or ``migrate``
    (apply the migrations and exit: the production pre-start Job)."""

    configure_logging(settings.service_name, settings.log_level)
    command = list(sys.argv[1:] if argv is None else argv) or ["serve"]
    spec = build_spec(settings)
    if command == ["migrate"]:
        asyncio.run(migration_runner(spec, settings.database_url).upgrade())
        log.info("migrations applied")
        return
    if command != ["serve"]:
        raise SystemExit(f"usage: tsunagu-{settings.service_name} [serve|migrate]")
    app = create_service_app(spec)
    tune_garbage_collector(settings.gc_thresholds)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
        # Longer than the internal clients keep an idle connection (libs/clients/internal.py), so
        # a service never closes a connection another may be reusing at that very moment.
        timeout_keep_alive=SERVER_KEEP_ALIVE_S,
        proxy_headers=False,
        server_header=False,
        # Our middleware logs each request (request id, route template); uvicorn's line is silenced
        # (libs/obs/logging.py), and off it is not even formatted: its arguments cost every request.
        access_log=False,
    )
