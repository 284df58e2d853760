"""Metering per tenant (municipality) and month: active citizens, logins, exchanges, API calls.

Months are Japan time (JST, UTC+9, no daylight saving): ``2026-11`` is 2026-11-01T00:00+09:00 up
to 2026-12-01T00:00+09:00.

- **logins**: ``tsunagu.idp.login.succeeded`` events (tenant of the client logged in to), counted
  once each by the consumer (the inbox dedupes redelivered events);
- **exchanges**: the exchange log rows of the month for the consumer's tenant, by kind (pull /
  push) and outcome — counted from the log itself, so they match it exactly;
- **API calls**: every authenticated party call, per calling client; counted in memory and added
  to the database every ``flush_s`` (and before a report, and at shutdown) — one statement per
  (client, month) per flush, not one per request. A replica killed between flushes loses at most
  ``flush_s`` of its counts;
- **active citizens**: distinct citizens with a login or an exchange in the tenant that month.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tsunagu.broker.domain.errors import UnknownParty
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.push_errors import InvalidUsageQuery
from tsunagu.broker.store import usage as store
from tsunagu.db import Database

log = logging.getLogger(__name__)
JST = timezone(timedelta(hours=9), "JST")
MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CSV_FIELDS = ["tenant", "month", "metric", "client_id", "count"]


def month_of(at: datetime) -> str:
    """The metering month (JST) of an instant."""
    return at.astimezone(JST).strftime("%Y-%m")


def month_range(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a ``YYYY-MM`` month in JST, as UTC instants; :class:`InvalidUsageQuery` if bad."""
    found = MONTH.match(month)
    if found is None:
        raise InvalidUsageQuery("month: YYYY-MM")
    year, number = int(found.group(1)), int(found.group(2))
    start = datetime(year, number, 1, tzinfo=JST)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=JST)
    return start.astimezone(UTC), end.astimezone(UTC)  # SQLite compares without the offset


class Usage:
    def __init__(
        self,
        db: Database,
        parties: Parties,
        *,
        flush_s: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.parties = parties
        self.flush_s = flush_s
        self.clock = clock
        self._calls: Counter[tuple[str, str]] = Counter()  # (client id, month) → calls not yet written
        self._lock = asyncio.Lock()

    def count_call(self, client_id: str) -> None:
        """One authenticated API call of ``client_id`` (in memory until the next flush)."""
        self._calls[client_id, month_of(self.clock())] += 1

    async def flush(self) -> None:
        """Add the counted calls to the database (one transaction, one upsert per client-month)."""
        async with self._lock:
            pending, self._calls = self._calls, Counter()
            if not pending:
                return
            rows = []
            for (client_id, month), count in pending.items():
                try:
                    tenant = (await self.parties.party(client_id)).tenant_id
                except UnknownParty:
                    continue  # disabled since: its calls were refused anyway
                rows.append(
                    {
                        "tenant_id": tenant,
                        "month": month,
                        "metric": "api_calls",
                        "client_id": client_id,
                        "count": count,
                    }
                )
            try:
                async with self.db.transaction() as session:
                    await store.add_counts(session, rows)
            except Exception:
                self._calls.update(pending)  # keep them for the next flush
                raise

    async def run(self, stopping: asyncio.Event) -> None:
        """Flush every ``flush_s`` until ``stopping``, then once more."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.flush_s)
            try:
                await self.flush()
            except Exception:
                log.exception("usage counters could not be written; kept for the next flush")

    async def report(self, tenant: str, month: str) -> dict[str, Any]:
        """The tenant's usage in ``month`` (counts of this replica flushed first)."""
        if not TENANT.match(tenant):
            raise InvalidUsageQuery("tenant: a slug")
        start, end = month_range(month)
        await self.flush()
        async with self.db.sessions() as session:
            counters = await store.counters(session, tenant, month)
            exchanges = await store.exchange_counts(session, tenant, start, end)
            active = await store.active_citizens(session, tenant, month, start, end)
        by_kind: dict[str, dict[str, int]] = {}
        for row in exchanges:
            by_kind.setdefault(row["kind"], {})[row["outcome"]] = int(row["count"])
        calls = {r["client_id"]: int(r["count"]) for r in counters if r["metric"] == "api_calls"}
        logins = sum(int(r["count"]) for r in counters if r["metric"] == "logins")
        return {
            "tenant": tenant,
            "month": month,
            "timezone": "Asia/Tokyo",
            "active_citizens": active,
            "logins": logins,
            "exchanges": {"total": sum(sum(v.values()) for v in by_kind.values()), **by_kind},
            "api_calls": {"total": sum(calls.values()), "by_client": calls},
        }


def report_csv(report: dict[str, Any]) -> str:
    """The report as CSV: one row per metric (``client_id`` set for per-client API calls)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    tenant, month = report["tenant"], report["month"]
    writer.writerow([tenant, month, "active_citizens", "", report["active_citizens"]])
    writer.writerow([tenant, month, "logins", "", report["logins"]])
    exchanges = report["exchanges"]
    writer.writerow([tenant, month, "exchanges", "", exchanges["total"]])
    for kind in sorted(k for k in exchanges if k != "total"):
        for outcome, count in sorted(exchanges[kind].items()):
            writer.writerow([tenant, month, f"exchanges.{kind}.{outcome}", "", count])
    writer.writerow([tenant, month, "api_calls", "", report["api_calls"]["total"]])
    for client_id, count in sorted(report["api_calls"]["by_client"].items()):
        writer.writerow([tenant, month, "api_calls", client_id, count])
    return out.getvalue()
