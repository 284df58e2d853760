"""Killed in the middle of a CRL, jlis-sync resumes without missing or double-publishing a change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from tests.jlis_sync.conftest import OPERATOR, World
from tests.jlis_sync.worker import build
from tsunagu.db import Database
from tsunagu.jlis_sync.app import service_spec
from tsunagu.jlis_sync.settings import JlisSyncSettings
from tsunagu.jlis_sync.store.models import crl_checkpoint, event_tables
from tsunagu.service.app import migration_runner

ROOT = Path(__file__).resolve().parents[2]


def run_worker(db_url: str, world: World, failpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("TSUNAGU_FAILPOINTS", None)
    if failpoint:
        env["TSUNAGU_FAILPOINTS"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "tests.jlis_sync.worker", db_url, world.base_url, str(world.trust_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _published(db: Database) -> list[dict]:  # type: ignore[type-arg]
    async with db.sessions() as session:
        rows = (await session.execute(select(event_tables.outbox.c.payload))).scalars()
        return [json.loads(row) for row in rows]


async def test_killed_mid_crl_resumes_and_publishes_each_change_once(world: World, tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'jlis-sync.db'}"
    db = Database(url)
    await migration_runner(service_spec(JlisSyncSettings()), url).upgrade(db.engine)
    service = build(db, world.base_url, world.trust_dir)
    people = [world.person(f"住民 {n}") for n in range(5)]
    for n, card in enumerate(people):
        await service.link(
            f"U-{n}", card.signing_certificate, world.sandbox.make_consent(card.card_id, OPERATOR)
        )
    for n, card in enumerate(people):
        world.sandbox.move(card.person_id, f"前橋市 {n} 番地")

    crashed = run_worker(url, world, failpoint="jlis_sync.crl.after_batch=kill")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert len(await _published(db)) == 2  # the first batch (2 changes) committed, then the process died

    finished = run_worker(url, world)
    assert finished.returncode == 0, finished.stderr[-2000:]
    events = await _published(db)
    assert sorted(e["data"]["user_number"] for e in events) == [f"U-{n}" for n in range(5)]
    assert all(
        e["type"] == "tsunagu.jlis_sync.resident.updated" and e["data"]["changed_fields"] == ["address"]
        for e in events
    )
    async with db.sessions() as session:
        checkpoint = (await session.execute(select(crl_checkpoint.c.crl_number))).scalar_one()
    assert checkpoint >= 1
    again = run_worker(url, world)
    assert again.returncode == 0 and len(await _published(db)) == 5
    await service.jlis.aclose()
    await db.dispose()
