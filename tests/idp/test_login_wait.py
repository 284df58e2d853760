"""The browser's wait on a login transaction (server-sent events) leaves nothing behind in the
process, whether the wallet's decision came here, elsewhere (another replica) or never."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from tsunagu.idp.domain.logins import LoginTransactions


async def test_waiting_on_a_transaction_leaves_nothing_behind() -> None:
    logins = LoginTransactions(SimpleNamespace(settings=None))

    # Abandoned, expired, or decided on another replica: the waits time out.
    for _ in range(3):
        await logins.wait("abandoned", 0.01)
    assert logins._waiters == {}

    # Two tabs listening; the wallet decides in this process: both wake at once.
    started = time.monotonic()
    listeners = asyncio.gather(logins.wait("decided", 5), logins.wait("decided", 5))
    await asyncio.sleep(0.05)
    assert set(logins._waiters) == {"decided"}
    logins._wake("decided")
    await listeners
    assert time.monotonic() - started < 1
    assert logins._waiters == {}

    # One listener leaves (timeout) while another still waits: the other still gets woken.
    long_wait = asyncio.ensure_future(logins.wait("both", 5))
    await logins.wait("both", 0.01)
    assert set(logins._waiters) == {"both"}
    logins._wake("both")
    await asyncio.wait_for(long_wait, 1)
    assert logins._waiters == {}
