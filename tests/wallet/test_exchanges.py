"""``tsunagu wallet exchanges`` against the stack: a clinic receives the citizen's allergies after
the citizen signed consent in the CLI, a pharmacy without consent is refused; the wallet shows
both (Japanese by default, English, JSON, pages), another citizen's wallet shows neither."""

from __future__ import annotations

from tests.broker.conftest import ALLERGY, broker_harness
from tests.wallet.conftest import Wallet


async def test_the_citizen_sees_who_received_what_and_who_was_refused(wallet: Wallet) -> None:
    user_number = (await wallet.enroll("phone-1"))["user_number"]
    async with broker_harness(wallet.stack) as broker:
        records, provider, endpoint = await broker.provider("records-cli-log")
        await broker.define_item(ALLERGY, [{"client_id": records.client_id, "endpoint": endpoint}])
        provider.records[await broker.sub_for(records, user_number)] = {ALLERGY: {"allergens": ["そば"]}}
        clinic, pharmacy = await broker.party("clinic-cli-log"), await broker.party("pharmacy-cli-log")
        request_id = await broker.ask(user_number, clinic, [ALLERGY])
        decided = await wallet.ok("consent", "decide", request_id, "--allow", ALLERGY)
        got = await broker.pull(clinic, await broker.sub_for(clinic, user_number), [ALLERGY])
        refused = await broker.pull(pharmacy, await broker.sub_for(pharmacy, user_number), [ALLERGY])
        assert (got.status_code, refused.status_code) == (200, 403)

    log = await wallet.ok("exchanges")
    assert log["user_number"] == user_number and log["next_before"] is None
    refusal, exchange = log["exchanges"]  # newest first
    assert (exchange["outcome"], exchange["consumer"]) == ("completed", clinic.client_id)
    assert exchange["consent"] == {ALLERGY: decided["receipt"]["decision_id"]}
    assert (refusal["outcome"], refusal["consumer"]) == ("denied", pharmacy.client_id)
    assert log["names"][clinic.client_id]["name_ja"] == "clinic-cli-log"

    shown = await wallet.run("exchanges")
    assert shown.code == 0, shown.stderr
    assert "提供されました" in shown.stdout and "同意がないため提供されませんでした" in shown.stdout
    assert "clinic-cli-log ← records-cli-log" in shown.stdout and "アレルギー情報" in shown.stdout
    assert "そば" not in shown.stdout  # values are never logged
    shown_en = await wallet.run("exchanges", "--lang", "en")
    assert "provided" in shown_en.stdout and "not provided: no consent" in shown_en.stdout
    assert "Allergies" in shown_en.stdout

    first = await wallet.ok("exchanges", "--limit", "1")
    assert [e["exchange_id"] for e in first["exchanges"]] == [refusal["exchange_id"]]
    assert "--before" in (await wallet.run("exchanges", "--limit", "1")).stdout
    rest = await wallet.ok("exchanges", "--before", first["next_before"])
    assert [e["exchange_id"] for e in rest["exchanges"]] == [exchange["exchange_id"]]
    await wallet.fails("exchanges", "--limit", "0", exit_code=2, code="bad-input")

    # Another citizen's wallet (its own home and phone) sees its own, empty log.
    phone = {"phone-2": wallet.tokens["phone-2"]}
    other = Wallet(wallet.home.parent / "other-home", wallet.stack, phone, wallet.conf)
    await other.enroll("phone-2", await other.new_card("別の 市民"))
    assert (await other.ok("exchanges"))["exchanges"] == []
    assert "やりとりはまだありません" in (await other.run("exchanges")).stdout
