"""The broker process is SIGKILLed while a webhook is in flight: after a restart nothing accepted
is lost — the delivery whose claim died with the process is sent again once its lease runs out
(same ``jti``: receivers dedupe), and the next change of that citizen follows it, in order."""

from __future__ import annotations

import asyncio

from tests.broker.conftest import BrokerHarness
from tests.broker.push_support import deliveries, restart_broker, until
from tests.broker.test_push import _change, _provider_item, _reading, _subscriber
from tsunagu.wallet import Enrolled


async def test_nothing_is_lost_when_the_broker_dies_mid_delivery(broker: BrokerHarness, citizen: Enrolled):
    records, item, records_sub = await _provider_item(broker, citizen)
    hospital, hook, _ = await _subscriber(broker, "hospital", citizen, item, allow=True)
    hook.hold = asyncio.Event()
    for n in (1, 2):
        assert (await _change(broker, records, records_sub, item, _reading(n))).status_code == 202
    await asyncio.wait_for(hook.arrived.wait(), 30)  # change 1 is being sent; change 2 waits behind it

    await asyncio.to_thread(restart_broker, broker.stack)
    hook.status = 503
    hook.hold.set()  # the request of the dead process gets its answer into the void
    await asyncio.sleep(0.2)
    hook.hold, hook.status = None, 200

    await until(lambda: len(hook.received) == 2, "both changes after the restart", timeout_s=60)
    assert [p["sequence"] for p in hook.received] == [1, 2]
    assert [p["value"] for p in hook.received] == [_reading(1), _reading(2)]
    first = [p["jti"] for p in hook.attempts if p["sequence"] == 1]
    assert len(first) == 2 and first[0] == first[1] == hook.received[0]["jti"]  # the same delivery again
    assert [d["state"] for d in await deliveries(broker, hospital)] == ["delivered", "delivered"]
    log = await broker.exchange_log(citizen)
    assert [(e["kind"], e["outcome"]) for e in log] == [("push", "completed")] * 2
