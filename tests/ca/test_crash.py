"""Killed (SIGKILL) at the worst moments of an enrollment, the CA process restarts and the person
still has exactly one number: the one J-LIS links to the card, and no half-written record."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.ca.conftest import _auth
from tsunagu.devstack.ports import free_port, wait_for_port
from tsunagu.devstack.stack import RunningStack, _service_env
from tsunagu.wallet import SandboxCard, enroll


@contextmanager
def ca_process(
    platform: RunningStack, database: Path, port: int, failpoint: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    env = _service_env(platform.config, "ca", port, platform.broker.bootstrap_servers, platform.token)
    env["TSUNAGU_CA_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    env["TSUNAGU_CA_PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    env.pop("TSUNAGU_FAILPOINTS", None)
    if failpoint:
        env["TSUNAGU_FAILPOINTS"] = f"{failpoint}=kill"
    log = open(database.with_suffix(".log"), "ab")  # noqa: SIM115 - closed below
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


def _count(database: Path, table: str) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


@pytest.mark.parametrize("failpoint", ["ca.enrollment.after_link", "ca.issue.after_sign"])
async def test_killed_mid_enrollment_the_person_keeps_one_number(
    platform: RunningStack, ca_keys: dict[str, str], tmp_path: Path, failpoint: str
):
    database, port = tmp_path / "ca.db", free_port()
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
        with ca_process(platform, database, port, failpoint) as process:
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
        assert _count(database, "certificate") == 0

        with ca_process(platform, database, port, None):
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
    assert _count(database, "person") == 1 and _count(database, "jpki_identity") == 1
    assert _count(database, "certificate") == 4  # two phones' pairs; the killed attempt left none
