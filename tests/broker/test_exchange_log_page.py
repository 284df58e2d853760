"""The citizen's exchange log ("やりとり履歴") in the consent dashboard of the running stack: the
dashboard logs the citizen in through the idp (the wallet approves) and reads the broker's log for
that citizen only; nothing of the data itself is shown, because none is logged."""

from __future__ import annotations

from types import SimpleNamespace

import httpx

from tests.broker.conftest import ALLERGY, BrokerHarness
from tests.consent.test_dashboard import http_login
from tsunagu.wallet import Enrolled


async def test_the_dashboard_shows_who_received_what_and_who_was_refused(
    broker: BrokerHarness, citizen: Enrolled
):
    records, provider, endpoint = await broker.provider("records-log")
    await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
    provider.records[await broker.sub_of(records, citizen)] = {ALLERGY: {"allergens": ["落花生"]}}
    hospital_a, hospital_b = await broker.party("hospital-log-a"), await broker.party("hospital-log-b")
    await broker.decide(citizen, hospital_a, {ALLERGY: True})
    got = await broker.pull(hospital_a, await broker.sub_of(hospital_a, citizen), [ALLERGY])
    refused = await broker.pull(hospital_b, await broker.sub_of(hospital_b, citizen), [ALLERGY])
    assert (got.status_code, refused.status_code) == (200, 403)

    stack = broker.stack
    board = SimpleNamespace(url=stack.urls["consent"], idp_url=stack.urls["idp"])
    async with httpx.AsyncClient(timeout=30) as browser:
        anonymous = await browser.get(f"{board.url}/dashboard/exchanges")
        assert anonymous.status_code == 303  # to the login: no session, no log
        await http_login(board, broker.idp, citizen, browser)  # type: ignore[arg-type]
        page = await browser.get(f"{board.url}/dashboard/exchanges")
    assert page.status_code == 200, page.text
    html = page.text
    assert "やりとり履歴" in html
    assert 'data-outcome="completed"' in html and 'data-outcome="denied"' in html
    assert "hospital-log-a" in html and "hospital-log-b" in html  # names as consent knows them
    assert "アレルギー情報" in html  # the item, by its catalog name
    assert "落花生" not in html  # never a value
