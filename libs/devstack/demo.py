"""The demo story, run against a running stack. It grows with each issue. Today: an operator's ping
is recorded by one service, published through its outbox to Kafka and received by every other
service's consumer (service tokens on every call); then a CA key is made inside the HSM and a root
certificate is signed with it through the signer, which refuses a service outside the key's ACL;
J-LIS tells the platform about a move; a citizen enrolls two phones with the My Number Card (one
user identification number), loses one, and J-LIS's death notice revokes the rest; a municipality
registers relying parties and a citizen logs in to them with the wallet (pairwise subjects, refresh
rotation, logout); then the sample relying parties of examples/ (demo_apps): two phones, pairwise
subjects per app, consent asked in the login and signed item by item, hospital A served and B
refused, a move pushed to the consenting bank and not the market, a withdrawal, the exchange log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tsunagu.auth import ServiceTokenIssuer, load_private_key
from tsunagu.clients import DiagnosticsClient
from tsunagu.devstack.demo_apps import run_apps_chapter
from tsunagu.devstack.demo_ca import run_ca_chapter
from tsunagu.devstack.demo_idp import run_idp_chapter
from tsunagu.devstack.demo_jlis import run_jlis_chapter
from tsunagu.devstack.demo_signer import run_signer_chapter


async def run_demo(
    urls: Mapping[str, str],
    credentials_dir: Path,
    say: Callable[[str], None] = print,
    *,
    jlis_url: str = "",
    apps: Mapping[str, str] | None = None,
    records_file: str = "",
) -> bool:
    """Run the story; returns True if every step succeeded. ``apps`` and ``records_file``: the
    sample relying parties and the city's records (``RunningStack.apps``, ``.records_file``)."""
    if not await _events_chapter(urls, credentials_dir, say):
        return False
    if not await _service_chapters(urls, credentials_dir, jlis_url, say):
        return False
    if jlis_url and apps and records_file and {"idp", "consent", "broker"} <= set(urls):
        return await run_apps_chapter(
            urls, apps, Path(records_file), credentials_dir, jlis_url=jlis_url, say=say
        )
    return True


async def _events_chapter(
    urls: Mapping[str, str], credentials_dir: Path, say: Callable[[str], None], timeout_s: float = 60.0
) -> bool:
    operator = ServiceTokenIssuer("operator", load_private_key(credentials_dir / "operator.key.pem"))
    clients = {name: DiagnosticsClient(name, url, operator) for name, url in urls.items()}
    try:
        origin = "ca" if "ca" in clients else next(iter(clients))
        say(
            f"1. 運用者が {origin} に診断イベントを依頼 / "
            f"the operator asks {origin} to emit a diagnostic event"
        )
        sent = await clients[origin].ping("demo: つなぐ")
        say(f"   event {sent['event_id']} committed with its state change (outbox)")
        say("2. 各サービスが Kafka から受信するのを待つ / waiting for every other service to consume it")
        pending = {name for name in clients if name != origin}
        started = time.monotonic()
        while pending and time.monotonic() - started < timeout_s:
            for name in sorted(pending):
                receipt = await clients[name].receipt(sent["ping_id"])
                if receipt is not None:
                    elapsed = (time.monotonic() - started) * 1000
                    say(f"   ✓ {name:<10} received it (event {receipt['event_id'][:8]}…, {elapsed:.0f} ms)")
                    pending.discard(name)
            if pending:
                await asyncio.sleep(0.1)
        if pending:
            say(f"   ✗ not received by: {', '.join(sorted(pending))}")
            return False
        say("3. 完了 / done: outbox → Kafka → idempotent consumers work across all services")
        return True
    finally:
        for client in clients.values():
            await client.aclose()


async def _service_chapters(
    urls: Mapping[str, str], credentials_dir: Path, jlis_url: str, say: Callable[[str], None]
) -> bool:
    """The signer, J-LIS, CA and idp chapters (each only when its services run)."""
    if "signer" in urls and not await run_signer_chapter(urls["signer"], credentials_dir, say):
        return False
    if jlis_url and "jlis-sync" in urls:
        ok, _ = await run_jlis_chapter(jlis_url, urls["jlis-sync"], credentials_dir, say)
        if not ok:
            return False
    if jlis_url and "ca" in urls and not await run_ca_chapter(jlis_url, urls["ca"], credentials_dir, say):
        return False
    if jlis_url and {"idp", "ca"} <= set(urls):
        return await run_idp_chapter(jlis_url, urls["idp"], urls["ca"], credentials_dir, say) is not None
    return True
