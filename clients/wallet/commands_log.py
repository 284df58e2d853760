"""``tsunagu wallet exchanges`` — the citizen's exchange log ("やりとり履歴"): which party received
which items, from which provider, for what purpose and on which consent, and who was refused.
Values are never logged, so none are shown. Read through consent (a query signed with the
device's authentication key), which asks the broker for this person only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from tsunagu.wallet.cli import CliError, Context, Handler, Result, http
from tsunagu.wallet.commands_use import consent_url, fetch_catalog, signed_in
from tsunagu.wallet.consent import fetch_exchanges

MAX_PAGE = 200


def _party(context: Context, names: dict[str, dict[str, Any]], client_id: str) -> str:
    return str(names.get(client_id, {}).get("name_en" if context.lang == "en" else "name_ja") or client_id)


def _item(context: Context, catalog: dict[str, dict[str, Any]], item: str) -> str:
    return str(catalog.get(item, {}).get("name_en" if context.lang == "en" else "name_ja") or item)


def exchange_lines(context: Context, page: dict[str, Any], catalog: dict[str, dict[str, Any]]) -> list[str]:
    """Two lines per exchange: when, outcome, who asked, from whom; then the items and purpose."""
    names = page["names"]
    lines: list[str] = []
    for entry in page["exchanges"]:
        providers = ", ".join(_party(context, names, provider) for provider in entry["providers"])
        lines.append(
            f"{entry['at']} {context.t('outcome.' + entry['outcome'])}: "
            f"{_party(context, names, entry['consumer'])} ← {providers or '-'} [{entry['kind']}]"
        )
        items = ", ".join(_item(context, catalog, item) for item in entry["items"])
        lines.append(f"  {items} ({context.t('request.purpose')}: {entry['purpose']})")
    if page.get("next_before"):
        lines.append(context.t("exchanges.more", before=page["next_before"]))
    return lines


async def exchanges_command(context: Context) -> Result:
    limit = context.args.limit
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise CliError("error.bad_input", detail=f"--limit 1–{MAX_PAGE}")
    async with signed_in(context) as (enrolled, services), http(consent_url(services)) as consent:
        page = await fetch_exchanges(consent, enrolled, limit=limit, before=context.args.before)
        catalog = await fetch_catalog(consent)
    return Result(page, exchange_lines(context, page, catalog) or [context.t("exchanges.empty")])


def register(sub: Any, add: Callable[[Any, str, Handler, str], argparse.ArgumentParser]) -> None:
    parser = add(sub, "exchanges", exchanges_command, "who received which of your data, who was refused")
    parser.add_argument("--limit", type=int, default=None, help=f"entries per page (1–{MAX_PAGE}; 50)")
    parser.add_argument("--before", default=None, help="the next page: the previous page's next_before")
