"""jlis-sync CRL benchmark: apply a million-entry J-LIS CRL against a city's linked certificates.

    python -m bench.jlis_crl [--quick] [--entries 1000000] [--linked 330000] [--overlap 10000]
                             [--output-dir bench/results] [--profile sync.prof]

One run (everything on loopback):

1. Setup, not timed in the metrics: the sandbox's ``generate_large_crl`` writes a CRL of
   ``--entries`` serials signed by an in-memory J-LIS signing CA; a fresh PostgreSQL database
   (``scratch_database``, dropped at the end) gets the jlis-sync migrations and, by COPY,
   ``--linked`` ``jpki_link`` rows (state ``current``, one distinct user number each) with their
   ``resident`` rows (no basic-4 consent, so no move needs a J-LIS basic-4 call). ``--overlap`` of
   the linked serials are taken from the CRL's serial range (spread evenly over it and over the four
   revocation reasons the generated entries cycle through); the others are outside it.
2. The CRL is served by a ``http.server`` thread of this process (with ETag / Last-Modified).
3. ``crl_1m_parse_s``: a first child process (``multiprocessing`` spawn) times
   ``JlisClient.fetch_crl`` + ``check_crl`` + the DER walk over revokedCertificates (``count_entries``).
4. ``crl_1m_apply_s``: a second, fresh child builds a ``JlisSyncService`` on the database and times
   ``sync_crl()`` end to end (after one ``SELECT 1`` to open the pool). ``crl_1m_peak_rss_mb`` is
   that child's ``ru_maxrss``: the sync's own peak, interpreter and imports included.
5. Checked afterwards, or the run fails: ``sync_crl`` reports every entry and ``--overlap``
   matched and acted on; the outbox holds exactly one event per matched entry, of the type its
   reason calls for; ``revocation_seen`` holds the matched serials; the other links are current.

Writes ``<output-dir>/jlis_crl.json`` and regenerates the report: ``BENCHMARKS.md`` at the root for
the default output directory, ``<output-dir>/BENCHMARKS.md`` otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import logging
import multiprocessing as mp
import os
import pstats
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, metric
from bench.report import publish

log = logging.getLogger("bench.jlis_crl")

# generate_large_crl numbers its entries first_serial + index (sandbox/jlis/crl.py) and gives entry
# ``index`` the reason _BENCH_REASONS[index % 4]; the parse pass checks the first and last serials.
CRL_FIRST_SERIAL = 0x4A50_4B49_0000_0000
REASON_BY_INDEX = ("affiliationChanged", "superseded", "keyCompromise", "cessationOfOperation")
# what JlisSyncService._act publishes for each (no basic-4 consent: a move is a resident.updated)
EVENT_BY_REASON = {
    "affiliationChanged": "tsunagu.jlis_sync.resident.updated",
    "superseded": "tsunagu.jlis_sync.resident.card_revoked",
    "keyCompromise": "tsunagu.jlis_sync.resident.card_revoked",
    "cessationOfOperation": "tsunagu.jlis_sync.resident.deceased",
}
UNRELATED_FIRST_SERIAL = 0x2000_0000_0000_0000  # linked serials outside the CRL: far below it
UNRELATED_STRIDE = 0x1_0001
CRL_PATH = "/crl/signing.crl"
COPY_CHUNK = 50_000


@dataclass
class Config:
    entries: int
    linked: int
    overlap: int
    quick: bool
    output_dir: Path
    profile: Path | None
    timeout_s: float
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The data set


def overlap_indices(entries: int, overlap: int) -> list[int]:
    """CRL indices of the linked serials: evenly spread, cycling through the four reasons."""
    step = entries // overlap
    return [i * step + (i % 4) for i in range(overlap)]


def linked_serials(config: Config) -> list[int]:
    inside = [CRL_FIRST_SERIAL + index for index in overlap_indices(config.entries, config.overlap)]
    outside = [UNRELATED_FIRST_SERIAL + k * UNRELATED_STRIDE for k in range(config.linked - config.overlap)]
    return inside + outside


def expected_events(config: Config) -> Counter[str]:
    return Counter(
        EVENT_BY_REASON[REASON_BY_INDEX[index % 4]]
        for index in overlap_indices(config.entries, config.overlap)
    )


async def fill_database(db_url: str, config: Config) -> float:
    """Migrations, then the linked certificates and their residents by COPY; returns seconds."""
    import asyncpg

    from tsunagu.db import Database
    from tsunagu.jlis_sync.app import service_spec
    from tsunagu.jlis_sync.settings import JlisSyncSettings
    from tsunagu.service.app import migration_runner

    started = time.perf_counter()
    db = Database(db_url)
    try:
        await migration_runner(service_spec(JlisSyncSettings()), db_url).upgrade(db.engine)
    finally:
        await db.dispose()
    now = datetime.now(UTC)
    serials = linked_serials(config)
    connection = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for offset in range(0, len(serials), COPY_CHUNK):
            chunk = range(offset, min(len(serials), offset + COPY_CHUNK))
            await connection.copy_records_to_table(
                "jpki_link",
                records=[(format(serials[n], "x"), f"U{n:011d}", "current", None, now) for n in chunk],
                columns=["serial", "user_number", "state", "superseded_by", "linked_at"],
            )
            await connection.copy_records_to_table(
                "resident",
                records=[
                    (
                        f"U{n:011d}",
                        f"前橋 住民{n}",
                        f"群馬県前橋市大手町二丁目{n % 50 + 1}番{n % 30 + 1}号",
                        date(1950 + n % 60, n % 12 + 1, n % 28 + 1),
                        "12"[n % 2],
                        None,
                        None,
                        now,
                    )
                    for n in chunk
                ],
                columns=[
                    "user_number",
                    "name",
                    "address",
                    "birth_date",
                    "sex",
                    "basic4_consent",
                    "deceased_at",
                    "updated_at",
                ],
            )
        await connection.execute("ANALYZE")
        count = await connection.fetchval("SELECT count(*) FROM jpki_link WHERE state = 'current'")
    finally:
        await connection.close()
    if count != config.linked:
        raise RuntimeError(f"setup: {count} current links, expected {config.linked}")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# J-LIS over HTTP


@contextlib.contextmanager
def serve_crl(der: bytes, this_update: datetime) -> Any:
    """Serve ``der`` at CRL_PATH on 127.0.0.1 from a thread; yields the base URL."""
    etag = f'"bench-{len(der)}"'
    last_modified = format_datetime(this_update, usegmt=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path != CRL_PATH:
                self.send_error(404)
                return
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/pkix-crl")
            self.send_header("Content-Length", str(len(der)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            self.wfile.write(der)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="crl-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ---------------------------------------------------------------------------------------------
# The measured children (spawned: their memory is only what they do)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _endpoints(base_url: str, trust_dir: str) -> Any:
    from tsunagu.jlis_sync.settings import JlisEndpoints

    return JlisEndpoints(
        base_url=base_url,
        signing_crl_path=CRL_PATH,
        root_ca_file=Path(trust_dir) / "root.pem",
        signing_ca_file=Path(trust_dir) / "signing.pem",
    )


class _Everything:
    def __contains__(self, _item: object) -> bool:
        return True


async def _parse_pass(base_url: str, trust_dir: str) -> dict[str, Any]:
    from cryptography import x509

    from tsunagu.jlis_sync.domain.crl_der_walk import count_entries, matching_entries
    from tsunagu.jlis_sync.domain.crl_rfc5280 import check_crl
    from tsunagu.jlis_sync.jlis.client import JlisClient

    endpoints = _endpoints(base_url, trust_dir)
    issuer = x509.load_pem_x509_certificate(Path(trust_dir, "signing.pem").read_bytes())  # noqa: ASYNC240
    client = JlisClient(endpoints)
    result: dict[str, Any] = {"rss_before_mib": _rss_mib()}
    try:
        started = time.perf_counter()
        fetched = await client.fetch_crl(None, None)
        fetched_at = time.perf_counter()
        assert fetched.der is not None
        checked = check_crl(fetched.der, issuer, now=datetime.now(UTC))
        checked_at = time.perf_counter()
        count = count_entries(fetched.der)  # the service's pass: a DER walk, no object per entry
        finished = time.perf_counter()
        # Untimed: decode every entry once to report what the CRL carries.
        reasons: Counter[str] = Counter()
        first, last = None, None
        for entry in matching_entries(fetched.der, _Everything()):
            reasons[entry.reason] += 1
            last = entry.serial
            if first is None:
                first = entry.serial
    finally:
        await client.aclose()
    result |= {
        "fetch_s": fetched_at - started,
        "check_s": checked_at - fetched_at,
        "iterate_s": finished - checked_at,
        "total_s": finished - started,
        "bytes": len(fetched.der),
        "entries": count,
        "first": first,
        "last": last,
        "reasons": dict(reasons),
        "crl_number": checked.number,
    }
    return result


def parse_child(base_url: str, trust_dir: str, connection: Any) -> None:
    try:
        result = asyncio.run(_parse_pass(base_url, trust_dir))
        result["peak_rss_mib"] = _peak_rss_mib()
        connection.send(("ok", result))
    except BaseException as exc:
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        connection.close()


class _Clock:
    """Accumulated wall time of wrapped calls, by name."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.marks: dict[str, float] = {}

    def wrap(self, name: str, function: Any) -> Any:
        clock = self

        if asyncio.iscoroutinefunction(function):

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await function(*args, **kwargs)
                finally:
                    clock.seconds[name] += time.perf_counter() - started
                    clock.calls[name] += 1

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                clock.seconds[name] += time.perf_counter() - started
                clock.calls[name] += 1

        return timed

    def iteration(self, function: Any) -> Any:
        """Wrap a generator function: note when its first item is asked for and when it ends."""
        clock = self

        def timed_iteration(*args: Any, **kwargs: Any) -> Any:
            clock.marks["loop_start"] = time.perf_counter()
            yield from function(*args, **kwargs)
            clock.marks["loop_end"] = time.perf_counter()

        return timed_iteration


async def _sync_pass(db_url: str, base_url: str, trust_dir: str, profile: str | None) -> dict[str, Any]:
    from datetime import timedelta

    from cryptography import x509

    from tsunagu.db import Database
    from tsunagu.events import Outbox
    from tsunagu.jlis_sync.domain import service as service_module
    from tsunagu.jlis_sync.jlis.client import JlisClient
    from tsunagu.jlis_sync.store.models import event_tables
    from tsunagu.jlis_sync.store.repository import JlisRepository

    trust = Path(trust_dir)
    db = Database(db_url)
    client = JlisClient(_endpoints(base_url, trust_dir))
    service = service_module.JlisSyncService(
        db,
        Outbox(event_tables, source="/tsunagu/jlis-sync"),
        client,
        signing_ca=x509.load_pem_x509_certificate((trust / "signing.pem").read_bytes()),
        root_ca=x509.load_pem_x509_certificate((trust / "root.pem").read_bytes()),
        operator_id="tsunagu",
        push_max_age=timedelta(days=1),
    )
    # Timing wrappers (one call each, or one per matched entry): only this process is patched.
    clock = _Clock()
    client.fetch_crl = clock.wrap("fetch", client.fetch_crl)  # type: ignore[method-assign]
    service.apply_batch = clock.wrap("apply", service.apply_batch)  # type: ignore[method-assign]
    service_module.check_crl = clock.wrap("check", service_module.check_crl)  # type: ignore[assignment]
    service_module.matching_entries = clock.iteration(service_module.matching_entries)  # type: ignore[assignment]
    current_serials = JlisRepository.current_serials
    JlisRepository.current_serials = clock.wrap("load_linked", current_serials)  # type: ignore[method-assign]
    profiler = cProfile.Profile() if profile else None
    try:
        await db.ping()
        rss_before = _rss_mib()
        cpu_before = _cpu_s()
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        outcome = await service.sync_crl()
        elapsed = time.perf_counter() - started
        cpu_s = _cpu_s() - cpu_before
        if profiler:
            profiler.disable()
    finally:
        JlisRepository.current_serials = current_serials  # type: ignore[method-assign]
        await client.aclose()
        await db.dispose()
    profile_text = None
    if profiler and profile:
        profiler.dump_stats(profile)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        profile_text = out.getvalue()
    loop_s = clock.marks.get("loop_end", 0.0) - clock.marks.get("loop_start", 0.0)
    return {
        "status": outcome.status,
        "crl_number": outcome.crl_number,
        "entries": outcome.entries,
        "matched": outcome.matched,
        "acted": outcome.acted,
        "total_s": elapsed,
        "fetch_s": clock.seconds["fetch"],
        "check_s": clock.seconds["check"],
        "load_linked_s": clock.seconds["load_linked"],
        "loop_s": loop_s,
        "apply_s": clock.seconds["apply"],
        "apply_calls": clock.calls["apply"],
        "rss_before_mib": rss_before,
        "cpu_s": cpu_s,
        "profile_text": profile_text,
    }


def sync_child(db_url: str, base_url: str, trust_dir: str, profile: str | None, connection: Any) -> None:
    try:
        result = asyncio.run(_sync_pass(db_url, base_url, trust_dir, profile))
        result["peak_rss_mib"] = _peak_rss_mib()
        connection.send(("ok", result))
    except BaseException as exc:
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        connection.close()


def run_child(target: Any, args: tuple[Any, ...], timeout_s: float) -> dict[str, Any]:
    """Run ``target(*args, pipe)`` in a spawned process; its result, or RuntimeError."""
    context = mp.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, sender), name=target.__name__)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise RuntimeError(f"{target.__name__} gave no answer in {timeout_s:.0f} s")
        status, payload = receiver.recv()
        process.join(30)
    finally:
        if process.is_alive():
            process.kill()
            process.join(10)
        receiver.close()
    if status != "ok":
        raise RuntimeError(f"{target.__name__} failed: {payload}")
    return dict(payload)


# ---------------------------------------------------------------------------------------------
# Checks


async def database_state(db_url: str) -> dict[str, Any]:
    import asyncpg

    connection = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        events = await connection.fetch(
            "SELECT convert_from(payload, 'UTF8')::jsonb ->> 'type' AS type, count(*) AS n"
            " FROM event_outbox GROUP BY 1"
        )
        links = await connection.fetch("SELECT state, count(*) AS n FROM jpki_link GROUP BY 1")
        seen = await connection.fetchval("SELECT count(*) FROM revocation_seen")
        checkpoint = await connection.fetchval("SELECT crl_number FROM crl_checkpoint")
        per_serial = await connection.fetchval(
            "SELECT count(*) FROM (SELECT convert_from(payload, 'UTF8')::jsonb -> 'data'"
            " ->> 'old_jpki_serial' FROM event_outbox GROUP BY 1 HAVING count(*) > 1) AS doubled"
        )
    finally:
        await connection.close()
    return {
        "events": {row["type"]: row["n"] for row in events},
        "links": {row["state"]: row["n"] for row in links},
        "revocation_seen": seen,
        "checkpoint": checkpoint,
        "serials_with_several_events": per_serial,
    }


def verify(config: Config, parsed: dict[str, Any], synced: dict[str, Any], state: dict[str, Any]) -> None:
    problems = []
    first, last = format(CRL_FIRST_SERIAL, "x"), format(CRL_FIRST_SERIAL + config.entries - 1, "x")
    if (parsed["entries"], parsed["first"], parsed["last"]) != (config.entries, first, last):
        problems.append(
            f"the CRL holds {parsed['entries']} entries {parsed['first']}..{parsed['last']},"
            f" expected {config.entries} entries {first}..{last}"
        )
    wanted = ("applied", config.entries, config.overlap, config.overlap)
    got = (synced["status"], synced["entries"], synced["matched"], synced["acted"])
    if got != wanted:
        problems.append(f"sync_crl gave (status, entries, matched, acted) = {got}, expected {wanted}")
    if state["events"] != dict(expected_events(config)):
        problems.append(f"outbox events {state['events']}, expected {dict(expected_events(config))}")
    if sum(state["events"].values()) != synced["matched"] or state["serials_with_several_events"]:
        problems.append(
            f"{sum(state['events'].values())} events for {synced['matched']} matched entries"
            f" ({state['serials_with_several_events']} serials with several)"
        )
    if state["revocation_seen"] != config.overlap:
        problems.append(f"revocation_seen holds {state['revocation_seen']}, expected {config.overlap}")
    if state["links"].get("current") != config.linked - config.overlap:
        problems.append(f"link states {state['links']}, expected {config.linked - config.overlap} current")
    if state["checkpoint"] != synced["crl_number"]:
        problems.append(f"checkpoint {state['checkpoint']}, expected {synced['crl_number']}")
    if problems:
        raise RuntimeError("verification failed: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# The run


async def _with_database(config: Config, say: Any, work: Any) -> Any:
    from tsunagu.devstack.postgres import scratch_database

    async with scratch_database("tsunagu_bench_crl") as db_url:
        say(f"database: {config.linked:,} links + residents ({config.overlap:,} in the CRL) ...")
        fill_s = await fill_database(db_url, config)
        say(f"  filled in {fill_s:.1f} s")
        config.notes.append(
            f"setup (not timed): jlis-sync migrations, then {config.linked:,} jpki_link rows (state"
            f" current, distinct user numbers) + {config.linked:,} resident rows without basic-4"
            f" consent, by asyncpg COPY, then ANALYZE: {fill_s:.1f} s."
        )
        result = await asyncio.to_thread(work, db_url)
        state = await database_state(db_url)
        return result, state


def run(config: Config) -> dict[str, dict[str, Any]]:
    from tsunagu.sandbox.jlis import JlisSandbox

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    notes = config.notes
    if config.quick:
        notes.append("quick smoke run: figures are not representative")
    if config.profile:
        notes.append(f"sync_crl ran under cProfile ({config.profile}): its time is inflated")
    with tempfile.TemporaryDirectory(prefix="bench-jlis-crl-") as scratch:
        sandbox = JlisSandbox(None)
        trust = Path(scratch) / "trust"
        trust.mkdir()
        (trust / "root.pem").write_bytes(sandbox.certificate_pem("root"))
        (trust / "signing.pem").write_bytes(sandbox.certificate_pem("signing"))
        crl_file = Path(scratch) / "signing.crl"
        say(f"generating a {config.entries:,}-entry CRL ...")
        report = sandbox.generate_large_crl(crl_file, config.entries)
        der = crl_file.read_bytes()
        say(f"  {report.size_bytes / 1e6:.1f} MB in {report.seconds:.1f} s")
        with serve_crl(der, sandbox.clock()) as base_url:

            def measure(db_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
                say("parse pass: fetch + check_crl + DER walk over the entries, no matching ...")
                parsed = run_child(parse_child, (base_url, str(trust)), config.timeout_s)
                say(
                    f"  {parsed['total_s']:.2f} s (fetch {parsed['fetch_s']:.2f}, check"
                    f" {parsed['check_s']:.2f}, iterate {parsed['iterate_s']:.2f});"
                    f" peak RSS {parsed['peak_rss_mib']:.0f} MiB"
                )
                say("sync_crl ...")
                profile = str(config.profile) if config.profile else None
                synced = run_child(sync_child, (db_url, base_url, str(trust), profile), config.timeout_s)
                say(
                    f"  {synced['total_s']:.2f} s, {synced['matched']} matched, {synced['acted']} acted;"
                    f" peak RSS {synced['peak_rss_mib']:.0f} MiB"
                )
                if synced.get("profile_text"):
                    say(synced["profile_text"])
                return parsed, synced

            (parsed, synced), state = asyncio.run(_with_database(config, say, measure))
    verify(config, parsed, synced, state)
    say(f"verified: {state['events']}")
    return _metrics(config, report, parsed, synced, state)


def _metrics(
    config: Config, report: Any, parsed: dict[str, Any], synced: dict[str, Any], state: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    notes = config.notes
    entries, matched = synced["entries"], synced["matched"]
    in_sync_parse = synced["fetch_s"] + synced["check_s"]
    match_s = synced["total_s"] - in_sync_parse
    iterate_s = synced["loop_s"] - synced["apply_s"]
    other_s = match_s - synced["load_linked_s"] - synced["loop_s"]
    events = sum(state["events"].values())
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(parsed["reasons"].items()))
    notes += [
        f"CRL: {entries:,} entries, {report.size_bytes / 1e6:.1f} MB DER, from the sandbox's"
        f" generate_large_crl (RSA-2048 signing CA, consecutive serials from"
        f" {CRL_FIRST_SERIAL:#x}); reasons cycle through {reasons}. Served by a http.server thread"
        " of the benchmark process on 127.0.0.1 (ETag, Last-Modified); JlisClient (httpx) fetches it.",
        f"overlap: {config.overlap:,} of the {config.linked:,} linked serials"
        f" ({config.overlap / entries:.1%} of the CRL's entries, {config.overlap / config.linked:.1%}"
        " of the links) are CRL serials, spread evenly over the list and the four reasons; the"
        f" other {config.linked - config.overlap:,} are outside the CRL's range.",
        f"crl_1m_parse_s: a spawned child times JlisClient.fetch_crl {parsed['fetch_s']:.2f} s +"
        f" check_crl (load_der_x509_crl + RSA signature over the TBS) {parsed['check_s']:.2f} s +"
        f" one DER walk over revokedCertificates (count_entries; no object per entry)"
        f" {parsed['iterate_s']:.2f} s = {parsed['total_s']:.2f} s; that child peaked at"
        f" {parsed['peak_rss_mib']:.0f} MiB RSS ({parsed['rss_before_mib']:.0f} MiB after imports).",
        f"crl_1m_apply_s: a second spawned child times JlisSyncService.sync_crl() end to end (after"
        f" one SELECT 1 to open the pool): {synced['total_s']:.2f} s = fetch {synced['fetch_s']:.2f}"
        f" + check_crl {synced['check_s']:.2f} + load of the {config.linked:,} current serials"
        f" {synced['load_linked_s']:.2f} + loop over the entries {synced['loop_s']:.2f} (of which"
        f" {synced['apply_calls']:,} apply() calls {synced['apply_s']:.2f} s, i.e."
        f" {synced['apply_s'] / max(1, synced['apply_calls']) * 1000:.2f} ms per matched entry, and"
        f" iteration + membership {iterate_s:.2f} s) + rest (checkpoint, sessions) {other_s:.2f} s;"
        f" the child used {synced['cpu_s']:.1f} s of CPU meanwhile (the rest of the wall time it"
        " waited, mostly on PostgreSQL round trips and commits).",
        f"match/act (sync_crl minus fetch and check): {match_s:.2f} s; {entries / synced['total_s']:,.0f}"
        f" entries/s end to end; matched {matched:,}, acted {synced['acted']:,}, events in the outbox"
        f" {events:,} ({', '.join(f'{k} {v:,}' for k, v in sorted(state['events'].items()))}), one per"
        " matched serial, as checked.",
        f"crl_1m_peak_rss_mb: ru_maxrss of the sync_crl child (MiB; interpreter and imports"
        f" included: {synced['rss_before_mib']:.0f} MiB before sync_crl).",
        f"after the run: jpki_link states {state['links']}, revocation_seen {state['revocation_seen']:,},"
        f" checkpoint CRL number {state['checkpoint']}.",
    ]
    return {
        "crl_1m_apply_s": metric(synced["total_s"], "s", "lower", target=20),
        "crl_1m_parse_s": metric(parsed["total_s"], "s", "lower"),
        "crl_1m_peak_rss_mb": metric(synced["peak_rss_mib"], "MiB", "lower", target=1500),
        "crl_1m_match_s": metric(match_s, "s", "lower"),
        "crl_1m_apply_entries_per_s": metric(entries / synced["total_s"], "entries/s", "higher"),
        "crl_1m_matched": metric(matched, "entries", "higher"),
        "crl_1m_events_published": metric(events, "events", "higher"),
    }


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="50k entries, 20k links, 500 overlap")
    parser.add_argument("--entries", type=int, default=None, help="CRL entries (1000000)")
    parser.add_argument("--linked", type=int, default=None, help="linked certificates (330000)")
    parser.add_argument("--overlap", type=int, default=None, help="linked serials in the CRL (1%% of it)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--profile", type=Path, default=None, help="cProfile sync_crl into FILE")
    args = parser.parse_args(argv)
    entries = args.entries or (50_000 if args.quick else 1_000_000)
    linked = args.linked or (20_000 if args.quick else 330_000)
    overlap = args.overlap if args.overlap is not None else max(1, entries // 100)
    if not (1 <= overlap <= linked and overlap * 4 <= entries):
        parser.error("need 1 <= overlap <= linked and overlap <= entries / 4")
    return Config(
        entries=entries,
        linked=linked,
        overlap=overlap,
        quick=args.quick,
        output_dir=args.output_dir,
        profile=args.profile.resolve() if args.profile else None,
        timeout_s=max(120.0, entries / 1000),
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = parse_args(argv)
    started = time.monotonic()
    metrics = run(config)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    config.notes.append(
        f"the whole run took {time.monotonic() - started:.0f} s (load average at the end {load})."
    )
    publish("jlis_crl", metrics, config.notes, config.output_dir)


if __name__ == "__main__":
    main()
