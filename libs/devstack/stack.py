"""The embedded platform on one machine: tansu, a SoftHSM2 token, credentials and every service.

State lives in one directory (``.tsunagu/`` by default): ``credentials/`` (service keys and the
trust file), ``softhsm/`` (the token), ``data/`` (SQLite files), ``logs/`` (one JSON log per
process) and ``stack.json`` (the URLs of the running stack, for ``tsunagu demo``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tsunagu.auth import provision_service_credentials
from tsunagu.devstack.ca_ceremony import ensure_active_keys, initialise_ca
from tsunagu.devstack.dashboard_client import ensure_dashboard_client
from tsunagu.devstack.ports import port_is_free, wait_for_port
from tsunagu.devstack.postgres import create_database
from tsunagu.devstack.sample_apps import APPS, ensure_sample_apps
from tsunagu.devstack.softhsm import SoftHsmToken, init_token
from tsunagu.devstack.tansu import TansuBroker

# service name → (python package, default port)
SERVICES: dict[str, tuple[str, int]] = {
    "signer": ("signer", 8101),
    "ca": ("ca", 8102),
    "idp": ("idp", 8103),
    "consent": ("consent", 8104),
    "broker": ("broker", 8105),
    "jlis-sync": ("jlis_sync", 8106),
}
OPERATOR = "operator"
REPO_ROOT = Path(__file__).resolve().parents[2]  # examples/ is run from the checkout
# Started once the others are ready: consent's dashboard is a client of the idp, registered first.
STARTED_LAST = ("consent",)
TOKEN_LABEL = "tsunagu-dev"  # noqa: S105 - a label, not a secret


@dataclass
class StackConfig:
    state_dir: Path = Path(".tsunagu")
    kafka_port: int = 19092
    base_port: int = 8101
    # A PostgreSQL URL; its database name is the prefix of one database per service
    # (…/tsunagu → tsunagu_ca, tsunagu_idp, …), created when missing.
    postgres_url: str | None = None
    log_level: str = "INFO"
    jlis_port: int = 8190  # the J-LIS sandbox (outside the platform; a stand-in in dev)
    crl_interval_s: float = 15.0  # how often jlis-sync looks at the J-LIS CRL in dev
    # The sample relying parties of examples/ and the city's records system (``make run``):
    # the records system on ``apps_port``, the apps on the ports after it. 0: not started.
    apps_port: int = 0


@dataclass
class RunningStack:
    config: StackConfig
    broker: TansuBroker
    token: SoftHsmToken
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)  # the platform's services only
    dashboard_url: str = ""  # the citizen dashboard (served by consent)
    jlis: subprocess.Popen[bytes] | None = None
    jlis_url: str = ""
    apps: dict[str, str] = field(default_factory=dict)  # sample app → its home page
    records_file: str = ""  # the city's records system's data (the story adds to it)

    def describe(self) -> dict[str, object]:
        return {
            "kafka": self.broker.bootstrap_servers,
            "services": self.urls,
            "jlis_sandbox": self.jlis_url,
            "dashboard": self.dashboard_url,
            "apps": self.apps,
            "records_file": self.records_file,
            "credentials": str(self.config.state_dir / "credentials"),
            "softhsm_conf": str(self.token.conf_path),
        }

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM every service (graceful shutdown), SIGKILL what is left, then the broker."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self.jlis is not None and self.jlis.poll() is None:
            os.killpg(self.jlis.pid, signal.SIGTERM)
            try:
                self.jlis.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.jlis.pid, signal.SIGKILL)
                self.jlis.wait()
        self.broker.stop()
        (self.config.state_dir / "stack.json").unlink(missing_ok=True)


def _database_url(config: StackConfig, service: str) -> str:
    if not config.postgres_url:
        return f"sqlite+aiosqlite:///{config.state_dir.resolve() / 'data' / (service + '.db')}"
    base = make_url(config.postgres_url).set(drivername="postgresql+asyncpg")
    return base.set(database=_database_name(config, service)).render_as_string(hide_password=False)


def _database_name(config: StackConfig, service: str) -> str:
    prefix = make_url(config.postgres_url or "").database or "tsunagu"
    return f"{prefix}_{service.replace('-', '_')}"


def _create_postgres_databases(config: StackConfig) -> None:
    if not config.postgres_url:
        return

    admin_dsn = (
        make_url(config.postgres_url)
        .set(drivername="postgresql", database="postgres")
        .render_as_string(hide_password=False)
    )

    async def create() -> None:
        for service in SERVICES:
            await create_database(_database_name(config, service), admin_dsn, exist_ok=True)

    asyncio.run(create())


def _token(state_dir: Path) -> SoftHsmToken:
    """Initialise (once) the dev token; its PINs are generated and kept in files, mode 0600."""
    directory = state_dir / "softhsm"
    directory.mkdir(parents=True, exist_ok=True)
    pins = directory / "pins.json"
    if not pins.exists():
        pins.write_text(json.dumps({"user": secrets.token_hex(8), "so": secrets.token_hex(8)}))
        pins.chmod(0o600)
    values = json.loads(pins.read_text())
    token = init_token(directory, TOKEN_LABEL, user_pin=values["user"], so_pin=values["so"])
    pin_file = directory / "user-pin"
    pin_file.write_text(values["user"])
    pin_file.chmod(0o600)
    return token


def _service_env(
    config: StackConfig, service: str, port: int, kafka: str, token: SoftHsmToken
) -> dict[str, str]:
    prefix = f"TSUNAGU_{SERVICES[service][0].upper()}_"
    credentials = config.state_dir.resolve() / "credentials"
    values = {
        "PORT": str(port),
        "DATABASE_URL": _database_url(config, service),
        "LOG_LEVEL": config.log_level,
        "ENVIRONMENT": "dev",
        "KAFKA__BOOTSTRAP_SERVERS": kafka,
        "KAFKA__SESSION_TIMEOUT_MS": "3000",
        "KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "AUTH__PRIVATE_KEY_FILE": str(credentials / f"{service}.key.pem"),
        "AUTH__TRUST_FILE": str(credentials / "trust.json"),
    }
    env = {**os.environ, **{prefix + key: value for key, value in values.items()}, **token.env()}
    if service == "jlis-sync":
        trust = (config.state_dir / "jlis-trust").resolve()
        env.update(
            {
                prefix + "JLIS__BASE_URL": f"http://127.0.0.1:{config.jlis_port}",
                prefix + "JLIS__ROOT_CA_FILE": str(trust / "root.pem"),
                prefix + "JLIS__SIGNING_CA_FILE": str(trust / "signing.pem"),
                prefix + "CRL_INTERVAL_S": str(config.crl_interval_s),
            }
        )
    if service == "ca":
        trust = (config.state_dir / "jlis-trust").resolve()
        env.update(
            {
                prefix + "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
                prefix + "SIGNER_URL": f"http://127.0.0.1:{config.base_port}",
                prefix
                + "JLIS_SYNC_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('jlis-sync')}",
                prefix + "JPKI__ROOT_CA_FILE": str(trust / "root.pem"),
                prefix + "JPKI__SIGNING_CA_FILE": str(trust / "signing.pem"),
            }
        )
    if service == "idp":
        env.update(
            {
                prefix + "ISSUER": f"http://127.0.0.1:{port}",
                prefix + "SIGNER_URL": f"http://127.0.0.1:{config.base_port}",
                prefix + "CA_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('ca')}",
                prefix
                + "JLIS_SYNC_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('jlis-sync')}",
                prefix + "DATA_DIR": str((config.state_dir / "data").resolve()),
                prefix
                + "CONSENT_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('consent')}",
            }
        )
    if service == "consent":
        env.update(
            {
                prefix + "SIGNER_URL": f"http://127.0.0.1:{config.base_port}",
                prefix + "CA_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('ca')}",
                prefix
                + "BROKER_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('broker')}",
            }
        )
    if service == "broker":
        idp = f"http://127.0.0.1:{config.base_port + list(SERVICES).index('idp')}"
        env.update(
            {
                prefix + "RESOURCE": f"http://127.0.0.1:{port}",
                prefix + "IDP_ISSUER": idp,
                prefix + "IDP_URL": idp,
                prefix + "SIGNER_URL": f"http://127.0.0.1:{config.base_port}",
                prefix
                + "CONSENT_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('consent')}",
                prefix
                + "JLIS_SYNC_URL": f"http://127.0.0.1:{config.base_port + list(SERVICES).index('jlis-sync')}",
            }
        )
    if service == "signer":
        env.update(
            {
                prefix + "PKCS11__MODULE_PATH": token.module_path,
                prefix + "PKCS11__TOKEN_LABEL": token.label,
                prefix + "PKCS11__USER_PIN_FILE": str((config.state_dir / "softhsm" / "user-pin").resolve()),
                # SoftHSM2 lives in the signer's memory: short calls need no thread hand-off.
                prefix + "PKCS11__INLINE_CALLS": "true",
            }
        )
    return env


def start_stack(config: StackConfig, progress: Callable[[str], None] = print) -> RunningStack:
    """Start everything and wait until every service is ready; on failure nothing is left running."""
    state = config.state_dir
    for sub in ("data", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    _ensure_ports_free(config)
    provision_service_credentials(state / "credentials", [*SERVICES, OPERATOR])
    token = _token(state)
    progress(f"SoftHSM2 token '{token.label}' ready ({state / 'softhsm'})")
    _create_postgres_databases(config)
    broker = TansuBroker(port=config.kafka_port, log_path=state / "logs" / "tansu.log").start()
    progress(f"Kafka-compatible broker (tansu) on {broker.bootstrap_servers}")
    stack = RunningStack(config, broker, token)
    try:
        _start_jlis_sandbox(stack)
        progress(f"J-LIS sandbox (stand-in for J-LIS) on {stack.jlis_url}")
        for service in SERVICES:
            if service not in STARTED_LAST:
                _start_service(stack, service, {})
        _wait_until_ready(stack)
        asyncio.run(initialise_ca(stack.urls["signer"], stack.urls["ca"], state.resolve() / "credentials"))
        progress("CA hierarchy ready (root, issuing CA, OCSP responder; keys in the HSM)")
        asyncio.run(ensure_active_keys(stack.urls["signer"], state.resolve() / "credentials"))
        progress("ID-token (ES256, RS256) and consent receipt signing keys ready (in the HSM)")
        consent_url = f"http://127.0.0.1:{config.base_port + list(SERVICES).index('consent')}"
        dashboard = asyncio.run(
            ensure_dashboard_client(stack.urls["idp"], consent_url, state.resolve() / "credentials")
        )
        for service in STARTED_LAST:
            _start_service(stack, service, dashboard if service == "consent" else {})
        _wait_until_ready(stack)
        stack.dashboard_url = f"{consent_url}/dashboard"
        progress(f"citizen dashboard registered at the idp: {stack.dashboard_url}")
        # J-LIS pushes moves, renewals and deaths to jlis-sync's public receiver.
        httpx.post(
            f"{stack.jlis_url}/subscriptions",
            json={"url": f"{stack.urls['jlis-sync']}/v1/jlis/notifications"},
            timeout=10,
        ).raise_for_status()
        if config.apps_port:
            _start_sample_apps(stack)
            progress(f"sample relying parties ready: {', '.join(stack.apps)} (examples/)")
    except BaseException:
        stack.stop()
        raise
    (state / "stack.json").write_text(json.dumps(stack.describe(), indent=2))
    return stack


def _start_service(stack: RunningStack, service: str, extra_env: dict[str, str]) -> None:
    """Start one service process (its log in ``logs/``); extra settings without the prefix."""
    config = stack.config
    package = SERVICES[service][0]
    port = config.base_port + list(SERVICES).index(service)
    env = _service_env(config, service, port, stack.broker.bootstrap_servers, stack.token)
    prefix = f"TSUNAGU_{package.upper()}_"
    env.update({prefix + key: value for key, value in extra_env.items()})
    log = open(config.state_dir / "logs" / f"{service}.log", "ab")  # noqa: SIM115 - owned by the child
    stack.processes[service] = subprocess.Popen(
        [sys.executable, "-m", f"tsunagu.{package}.app"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    stack.urls[service] = f"http://127.0.0.1:{port}"


def _start_sample_apps(stack: RunningStack) -> None:
    """Register and start examples/ (one process) and the city's records system (another)."""
    config = stack.config
    folder = config.state_dir.resolve() / "examples"
    apps = asyncio.run(
        ensure_sample_apps(
            stack.urls["idp"],
            stack.urls["broker"],
            config.state_dir.resolve() / "credentials",
            folder,
            config.apps_port,
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    commands = {
        "records": [
            *(sys.executable, "-m", "tsunagu.devstack.sample_provider"),
            *("--client-id", apps.records_client_id, "--broker-url", stack.urls["broker"]),
            *("--port", str(apps.records_port), "--records", str(apps.records_file)),
        ],
        "examples": [sys.executable, "-m", "examples", *map(str, apps.configs.values())],
    }
    for name, command in commands.items():
        log = open(config.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        stack.processes[name] = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 60
    _wait_for_listener(stack, "records", apps.records_port, deadline)
    for url in apps.urls.values():
        _wait_for_listener(stack, "examples", int(url.rsplit(":", 1)[1]), deadline)
    stack.apps = apps.urls
    stack.records_file = str(apps.records_file)


def _wait_for_listener(
    stack: RunningStack, name: str, port: int, deadline: float, *, ready_url: str | None = None
) -> None:
    """Until ``port`` accepts connections (and ``ready_url`` answers 200); a process that exits
    meanwhile is named at once, with its log."""
    process = stack.processes[name]
    while True:
        if process.poll() is not None:
            log_file = stack.config.state_dir / "logs" / f"{name}.log"
            raise RuntimeError(f"{name} exited with {process.returncode}; see {log_file}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: not ready on port {port} in time")
        try:
            wait_for_port(port, timeout_s=0.5)
            if ready_url is None or httpx.get(ready_url, timeout=2).status_code == 200:
                return
        except (TimeoutError, httpx.HTTPError):
            pass
        time.sleep(0.05 if ready_url is None else 0.2)


def _ensure_ports_free(config: StackConfig) -> None:
    """Refuse to start on a busy port: something else answering there would pass for our process."""
    ports = {"kafka": config.kafka_port, "jlis sandbox": config.jlis_port}
    ports |= {service: config.base_port + offset for offset, service in enumerate(SERVICES)}
    if config.apps_port:
        ports |= {"records": config.apps_port}
        ports |= {app.name: config.apps_port + offset for offset, app in enumerate(APPS, start=1)}
    busy = [f"{name} {port}" for name, port in ports.items() if not port_is_free(port)]
    if busy:
        raise RuntimeError(
            f"ports in use: {', '.join(busy)} (choose others: --base-port, --kafka-port, --jlis-port)"
        )


def _start_jlis_sandbox(stack: RunningStack) -> None:
    """Start the J-LIS stand-in and copy the CA certificates jlis-sync is configured to trust."""
    config = stack.config
    log = open(config.state_dir / "logs" / "jlis-sandbox.log", "ab")  # noqa: SIM115 - owned by the child
    stack.jlis = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsunagu.sandbox.jlis",
            "--port",
            str(config.jlis_port),
            "--state-dir",
            str(config.state_dir / "jlis"),
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    stack.jlis_url = f"http://127.0.0.1:{config.jlis_port}"
    wait_for_port(config.jlis_port, timeout_s=60)
    trust = config.state_dir / "jlis-trust"
    trust.mkdir(exist_ok=True)
    for name in ("root", "signing"):
        response = httpx.get(f"{stack.jlis_url}/ca/{name}.pem", timeout=10)
        response.raise_for_status()
        (trust / f"{name}.pem").write_bytes(response.content)


def _wait_until_ready(stack: RunningStack, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    for service, url in stack.urls.items():
        _wait_for_listener(stack, service, int(url.rsplit(":", 1)[1]), deadline, ready_url=f"{url}/readyz")
