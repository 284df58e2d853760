"""Killed (SIGKILL) at the worst moments of an enrollment, the CA process restarts and the person
still has exactly one number: the one J-LIS links to the card, and no half-written record — on
SQLite (the ORM's transactions) and on PostgreSQL (asyncpg transactions of the direct pool)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.ca.conftest import _auth
from tsunagu.db import Database
from tsunagu.devstack.ports import free_port, wait_for_port
from tsunagu.devstack.postgres import scratch_database
from tsunagu.devstack.stack import RunningStack, _service_env
from tsunagu.wallet import SandboxCard, enroll


@contextmanager
def ca_process(
    platform: RunningStack, database_url: str, log_path: Path, port: int, failpoint: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = _service_env(platform.config, "ca", port, platform.broker.bootstrap_servers, platform.token)
    env["TSUNAGU_CA_DATABASE_URL"] = database_url
    env["TSUNAGU_CA_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    env.pop("TSUNAGU_FAILPOINTS", None)
    if failpoint:
        env["TSUNAGU_FAILPOINTS"] = f"{failpoint}=kill"
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "tsunagu.ca.app"], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        wait_for_port(port, timeout_s=60)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)
        log.close()


async def _count(database_url: str, table: str, where: str = "TRUE") -> int:
    db = Database(database_url, pool_size=1)
    try:
        async with db.sessions() as session:
            query = text(f"SELECT count(*) FROM {table} WHERE {where}")
            return int((await session.execute(query)).scalar_one())
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("backend", "failpoint"),
    [
        ("sqlite", "ca.enrollment.after_link"),
        ("sqlite", "ca.issue.after_sign"),
        ("postgresql", "ca.enrollment.after_link"),
        ("postgresql", "ca.issue.after_sign"),
        # the certificate row, its event and the enrollment's move written, not committed
        ("postgresql", "ca.issue.before_commit"),
        ("sqlite", "ca.issue.before_commit"),
    ],
)
async def test_killed_mid_enrollment_the_person_keeps_one_number(
    platform: RunningStack, ca_keys: dict[str, str], tmp_path: Path, backend: str, failpoint: str
):
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            database = f"sqlite+aiosqlite:///{tmp_path / 'ca.db'}"
        else:
            database = await stack.enter_async_context(scratch_database("tsunagu_ca_crash"))
        await _killed_and_restarted(platform, ca_keys, tmp_path, database, failpoint)


async def _killed_and_restarted(
    platform: RunningStack, ca_keys: dict[str, str], tmp_path: Path, database: str, failpoint: str
) -> None:
    port, log_path = free_port(), tmp_path / "ca.log"
    url = f"http://127.0.0.1:{port}"
    operator = _auth(platform, "operator", "ca")
    async with httpx.AsyncClient(base_url=platform.jlis_url, timeout=30) as jlis:
        issued = (
            await jlis.post(
                "/cards",
                json={
                    "name": "数字 四郎",
                    "address": "群馬県沼田市西倉内町594番地",
                    "birth_date": "1979-03-03",
                    "sex": "1",
                },
            )
        ).json()
        card = SandboxCard(jlis, issued["card_id"])
        with ca_process(platform, database, log_path, port, failpoint) as process:
            async with httpx.AsyncClient(base_url=url, timeout=60) as ca:
                ceremony = await ca.post(
                    "/admin/v1/hierarchy",
                    json={
                        "root_key_id": ca_keys["root"],
                        "issuing_key_id": ca_keys["issuing"],
                        "ocsp_key_id": ca_keys["ocsp"],
                    },
                    auth=operator,
                )
                assert ceremony.status_code == 201, ceremony.text
                with pytest.raises(httpx.TransportError):
                    await enroll(ca, card)
            assert process.wait(30) == -signal.SIGKILL
        assert await _count(database, "certificate") == 0
        assert await _count(database, "event_outbox", "topic = 'tsunagu.ca.certificate'") == 0
        proofed = 0 if failpoint == "ca.enrollment.after_link" else 1
        assert await _count(database, "proofing_record") == proofed
        assert await _count(database, "event_outbox", "topic = 'tsunagu.ca.person'") == proofed

        with ca_process(platform, database, log_path, port, None):
            async with httpx.AsyncClient(base_url=url, timeout=60) as ca:
                enrolled = await enroll(ca, card)
                again = await enroll(ca, card)
                owner = await ca.get(
                    f"/internal/v1/certificates/{enrolled.signing.serial}", auth=_auth(platform, "idp", "ca")
                )
    async with httpx.AsyncClient(base_url=platform.urls["jlis-sync"], timeout=30) as sync:
        link = await sync.get(
            f"/internal/v1/links/by-serial/{issued['signing_serial']}",
            auth=_auth(platform, "ca", "jlis-sync"),
        )
    assert link.json()["user_number"] == enrolled.user_number == again.user_number
    assert owner.json()["user_number"] == enrolled.user_number
    assert await _count(database, "person") == 1 and await _count(database, "jpki_identity") == 1
    assert await _count(database, "certificate") == 4  # two phones' pairs; the killed attempt left none
