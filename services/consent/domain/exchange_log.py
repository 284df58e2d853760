"""The citizen's exchange log ("やりとり履歴"): which party received which items of this person,
when and on which consent, and who was refused. The broker keeps it; consent reads one page of it
with its own service token (``broker:log:read``) for a person consent has authenticated — a
dashboard session, or a wallet query signed with the authentication key, whose person is the one
the CA says holds the certificate (never a number from the request) — and names the parties as it
knows them as recipients.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from tsunagu.clients.broker import BrokerClient
from tsunagu.clients.internal import UpstreamError
from tsunagu.consent.domain.context import ConsentContext
from tsunagu.consent.domain.errors import ExchangeLogUnavailable, InvalidQuery
from tsunagu.consent.domain.queries import ConsentQueries
from tsunagu.consent.store import repository as store

log = logging.getLogger(__name__)

DEFAULT_PAGE = 50
MAX_PAGE = 200  # the broker's largest page
MAX_CURSOR = 128  # the broker's longest cursor


def page_options(claims: dict[str, Any]) -> tuple[str | None, int]:
    """``before`` (the previous page's ``next_before``, a cursor the broker made and checks) and
    ``limit`` (1–200) of a signed query; :class:`InvalidQuery` when they are malformed."""
    limit = claims.get("limit", DEFAULT_PAGE)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise InvalidQuery(f"limit: an integer from 1 to {MAX_PAGE}")
    before = claims.get("before")
    if before is not None and (not isinstance(before, str) or not 0 < len(before) <= MAX_CURSOR):
        raise InvalidQuery("before: the previous page's next_before")
    return before, limit


class ExchangeLog:
    def __init__(self, context: ConsentContext, queries: ConsentQueries, broker: BrokerClient | None) -> None:
        self.context = context
        self.queries = queries
        self.broker = broker  # None without BROKER_URL: the log cannot be read

    async def for_wallet(self, token: str) -> dict[str, Any]:
        """One page of the signer's exchange log, for a wallet-signed query (``op`` ``exchanges``,
        optional ``limit`` and ``before``)."""
        verified = await self.queries.verified(token, "exchanges")
        before, limit = page_options(verified.claims)
        return await self.page_of(verified.user_number, before=before, limit=limit)

    async def page_of(
        self, user_number: str, *, before: str | None = None, limit: int = DEFAULT_PAGE
    ) -> dict[str, Any]:
        """One page of this person's exchanges, newest first, with the parties' names; the caller
        has authenticated the person. :class:`ExchangeLogUnavailable` when the broker cannot be
        asked."""
        if self.broker is None:
            raise ExchangeLogUnavailable("the broker is not configured (BROKER_URL)")
        try:
            page = await self.broker.exchanges(user_number, before=before, limit=limit)
        except UpstreamError as error:
            if error.status == 400:  # the cursor, which the broker made and alone can read
                raise InvalidQuery(str(error.problem.get("detail") or "before")) from None
            log.warning("the broker's exchange log could not be read", extra={"status": error.status})
            raise ExchangeLogUnavailable() from None
        except httpx.HTTPError:
            log.warning("the broker's exchange log could not be read")
            raise ExchangeLogUnavailable() from None
        entries = page["exchanges"]
        parties = {e["consumer"] for e in entries} | {p for e in entries for p in e["providers"]}
        async with self.context.db.sessions() as session:
            names = await store.recipients(session, sorted(parties))
        return {
            "user_number": user_number,
            "exchanges": entries,
            "next_before": page["next_before"],
            "names": names,
        }
