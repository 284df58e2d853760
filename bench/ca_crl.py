"""CRL generation for a million revoked certificates, on the real signer (part ``crl`` of
``bench/ca.py``).

One run (loopback only):

1. Setup, not timed: a fresh PostgreSQL database (``scratch_database``, dropped at the end) gets
   the CA migrations; an in-process ``CertificateAuthority`` talks to the stack's signer as the
   ``ca`` service and makes its hierarchy from the stack CA's keys in the HSM (the keys are
   shared, the certificates are its own); a ``CrlPublisher`` publishes the first, empty CRLs.
   Then ``ENTRIES`` (``--quick``: ``QUICK_ENTRIES``) revoked certificates of the issuing CA are
   written by one ``INSERT … SELECT generate_series`` — 159-bit serials like ``new_serial``'s,
   revocation dates one second apart, the five reasons in turn (one in five ``unspecified``,
   which has no reason code in the CRL) — the issuer's revocation count is moved as a revocation
   would, and the table is vacuumed and analysed (as long-committed rows would be: the first scan
   of freshly inserted rows also writes their hint bits, ≈ 1.5 s more).
2. Timed: ``publish_due()``, end to end as the CA's loop runs it: read the rows, build the
   entries and the draft, lint the header and the first 1,000 entries, sign through the signer
   (SoftHSM2), store. ``crl_1m_generate_s`` is that wall time; the notes break it down by stage
   (``CrlPublisher.last_stages``) and give this process's CPU time, which varies less than the
   wall time when other work shares the two cores. ``crl_1m_peak_rss_mb`` is this process's peak
   resident memory during the call (``VmHWM`` reset just before it), interpreter and setup
   included.
3. Checked afterwards, or the run fails: exactly one CRL was made (the issuing CA's, number 2);
   it holds every entry; its signature verifies with the issuing CA certificate; a sample of
   entries has the right revocation date and reason code.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
from cryptography import x509

from bench.common import metric
from tsunagu.auth import ServiceTokenAuth, ServiceTokenIssuer, load_private_key

if TYPE_CHECKING:
    from bench.ca import CaBench

ENTRIES, QUICK_ENTRIES = 1_000_000, 100_000
TARGET_S = 15.0
VALIDITY = timedelta(days=1)
REASONS = ("keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "unspecified")
SAMPLE = 200

# $1 issuer, $2 timestamptz base, $3 count. Serial n: "4" then 39 hex digits of md5 — 159 bits,
# unique for n ≤ 10^6 in practice (the primary key would refuse a clash).
FILL = """
INSERT INTO certificate (serial, issuer_id, user_number, device_id, kind, identifier_name,
    spki_sha256, not_before, not_after, certificate_der, issued_at, revoked_at,
    revocation_reason, revoked_by)
SELECT '4' || substr(md5(n::text) || md5((-n)::text), 1, 39), $1, 'B' || lpad(n::text, 11, '0'),
    'bench', 'authentication', 'bench-' || n, md5(n::text) || md5((-n)::text),
    $2::timestamptz - interval '30 days', $2::timestamptz + interval '1800 days', '\\x3000'::bytea,
    $2::timestamptz - interval '30 days', $2::timestamptz - n * interval '1 second',
    (ARRAY['keyCompromise', 'superseded', 'cessationOfOperation', 'affiliationChanged',
           'unspecified'])[n % 5 + 1], 'operator:bench'
FROM generate_series(1, $3::int) AS n
"""


def expected_serial(n: int) -> int:
    """The serial FILL gives row ``n``."""
    text = (hashlib.md5(str(n).encode()).hexdigest() + hashlib.md5(str(-n).encode()).hexdigest())[:39]
    return int("4" + text, 16)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> bool:
    try:  # Linux ≥ 4.0: "5" resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _stack_ca_keys(ctx: CaBench) -> dict[str, str]:
    operator = ServiceTokenIssuer("operator", load_private_key(ctx.credentials / "operator.key.pem"))
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            f"{ctx.stack.urls['ca']}/admin/v1/authorities", auth=ServiceTokenAuth(operator, "ca")
        )
        response.raise_for_status()
        return {authority["kind"]: authority["key_id"] for authority in response.json()}


async def _fill(db_url: str, entries: int, now: datetime) -> float:
    started = time.perf_counter()
    connection = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await connection.execute(FILL, "issuing-1", now, entries)
        await connection.execute(
            "UPDATE authority SET revocation_count = revocation_count + 1 WHERE id = 'issuing-1'"
        )
        # as a table of long-committed rows is: hint bits set, statistics current
        await connection.execute("VACUUM ANALYZE certificate")
    finally:
        await connection.close()
    return time.perf_counter() - started


def _check(crl_der: bytes, issuing: x509.Certificate, entries: int, now: datetime) -> None:
    crl = x509.load_der_x509_crl(crl_der)
    if not crl.is_signature_valid(issuing.public_key()):  # type: ignore[arg-type]
        raise RuntimeError("the CRL's signature does not verify with the issuing CA")
    if len(crl) != entries:
        raise RuntimeError(f"the CRL holds {len(crl)} entries, expected {entries}")
    sample = {
        expected_serial(n): n for n in random.Random(5280).sample(range(1, entries + 1), min(SAMPLE, entries))
    }
    for entry in crl:  # one pass: a lookup by serial walks the whole list each time
        n = sample.pop(entry.serial_number, None)
        if n is None:
            continue
        if entry.revocation_date_utc != now - timedelta(seconds=n):
            raise RuntimeError(f"entry {n} has revocation date {entry.revocation_date_utc}")
        reason = REASONS[n % 5]
        codes = [e.value.reason.name for e in entry.extensions if isinstance(e.value, x509.CRLReason)]
        if codes != ([] if reason == "unspecified" else [_snake(reason)]):
            raise RuntimeError(f"entry {n} has reason {codes}, expected {reason}")
    if sample:
        raise RuntimeError(f"{len(sample)} sampled entries are missing")


def _snake(camel: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel)


async def measure(ctx: CaBench) -> dict[str, dict[str, Any]]:
    from tsunagu.ca.app import service_spec
    from tsunagu.ca.domain.crl_rfc5280 import CrlPublisher
    from tsunagu.ca.domain.lint import Linter
    from tsunagu.ca.domain.service import CaPolicy, CertificateAuthority
    from tsunagu.ca.settings import CaSettings
    from tsunagu.ca.store.models import event_tables
    from tsunagu.clients.signer import SignerClient
    from tsunagu.db import Database
    from tsunagu.devstack.postgres import scratch_database
    from tsunagu.events import Outbox
    from tsunagu.service.app import migration_runner

    entries = QUICK_ENTRIES if ctx.quick else ENTRIES
    keys = await _stack_ca_keys(ctx)
    settings = CaSettings()
    policy = CaPolicy(
        organization=settings.organization,
        public_base_url=settings.public_base_url,
        signing_policy_oid=settings.signing_policy_oid,
        authentication_policy_oid=settings.authentication_policy_oid,
        end_entity_days=settings.end_entity_validity_days,
        challenge_ttl=timedelta(seconds=settings.challenge_ttl_s),
        signed_request_max_age=timedelta(seconds=settings.signed_request_max_age_s),
    )
    issuer = ServiceTokenIssuer("ca", load_private_key(ctx.credentials / "ca.key.pem"))
    async with scratch_database("tsunagu_bench_ca_crl") as db_url:
        db = Database(db_url)
        signer = SignerClient(ctx.stack.urls["signer"], issuer)
        try:
            await migration_runner(service_spec(settings), db_url).upgrade(db.engine)
            ca = CertificateAuthority(db, Outbox(event_tables, "ca"), signer, Linter(), policy)
            hierarchy = await ca.create_hierarchy(keys["root"], keys["issuing"], keys["ocsp"])
            publisher = CrlPublisher(ca, VALIDITY)
            first = await publisher.publish_due()
            if sorted((p.issuer_id, p.number) for p in first) != [("issuing-1", 1), ("root-1", 1)]:
                raise RuntimeError(f"setup: first CRLs {[(p.issuer_id, p.number) for p in first]}")
            now = datetime.now(UTC).replace(microsecond=0)
            fill_s = await _fill(db_url, entries, now)

            peak_reset = _reset_peak_rss()
            baseline_mib = _status_kib("VmRSS") / 1024
            started, cpu_started = time.perf_counter(), time.process_time()
            made = await publisher.publish_due()
            total_s, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
            peak_mib = _status_kib("VmHWM") / 1024
        finally:
            await signer.aclose()
            await db.dispose()
        if [(p.issuer_id, p.number) for p in made] != [("issuing-1", 2)]:
            raise RuntimeError(f"expected only issuing-1's CRL number 2, got {made}")
        crl_der = made[0].der
        _check(crl_der, hierarchy.current_issuing().certificate, entries, now)

    stages = publisher.last_stages["issuing-1"]
    ctx.notes += [
        f"crl: {entries:,} revoked certificates of one issuing CA (ES256 key on SoftHSM2 via the"
        f" signer), PostgreSQL on loopback; CRL {len(crl_der) / 1e6:.1f} MB; setup (rows by"
        f" INSERT … SELECT generate_series, not timed) {fill_s:.0f} s",
        "crl: publish_due() end to end "
        f"{total_s:.2f} s = "
        + ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in stages.items())
        + f" (other {total_s - sum(stages.values()):.2f}: hierarchy load, CRL lookups); CPU of this"
        f" process {cpu_s:.2f} s (PostgreSQL and the signer work in their own processes)",
        "crl: read = one row of three arrays from asyncpg; build = entries written as DER into a"
        " draft whose header cryptography signs with a throwaway key; lint = pkilint on the header"
        " and the first 1,000 entries; sign = SHA-256 of the TBSCertList to the signer, signature"
        " verified and put in; store = one INSERT of the DER",
        f"crl: checked: {entries:,} entries, signature valid, {min(SAMPLE, entries)} sampled entries'"
        " dates and reasons",
        f"crl: peak RSS {peak_mib:.0f} MiB during publish_due (from {baseline_mib:.0f} MiB before;"
        f" process-wide, VmHWM {'reset' if peak_reset else 'NOT reset: whole-process peak'})",
    ]
    if ctx.quick:
        ctx.notes.append(f"crl: quick run ({entries:,} entries): the 1M figure is not measured")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    ctx.notes.append(f"crl: load average after the run {load} (2 cores)")
    return {
        "crl_1m_generate_s": metric(total_s, "s", "lower", TARGET_S),
        "crl_1m_peak_rss_mb": metric(peak_mib, "MiB", "lower"),
    }
