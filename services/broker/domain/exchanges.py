"""Personal data exchange (pull): consumer → broker → provider(s) → consumer, on consent.

Order of the checks (each refusal before anything is fetched): the consumer is an active party →
the items are in the catalog → its ``sub`` names a citizen → consent for (citizen, consumer,
item, purpose, now). Allowed items are fetched from their providers (one signed request per
provider, concurrently), validated against their schema and reduced to it, and returned; the
exchange row and its event commit together before the answer leaves (group commit). A denial or
a provider failure is recorded the same way — the exchange log holds every attempt.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.catalog import Catalog, Item
from tsunagu.broker.domain.consent_view import ConsentView
from tsunagu.broker.domain.errors import ConsentRequired, InvalidExchange, NoProvider
from tsunagu.broker.domain.parties import Parties, Party
from tsunagu.broker.domain.providers import JLIS_SYNC, ProviderCall, Providers
from tsunagu.errors import DomainError
from tsunagu.events import GroupCommit
from tsunagu.events.schemas.broker import ExchangeCompletedV1, ExchangeDeniedV1
from tsunagu.obs import failpoint
from tsunagu.obs.context import current_request_id

PURPOSE = re.compile(r"^[a-z0-9._-]{1,64}$")  # consent's purpose codes
MAX_ITEMS = 20
DATA_ACCESS_TYPE = "tsunagu_data_access"  # the RFC 9396 type the RP asks consent with (idp)


@dataclass(frozen=True)
class PullRequest:
    sub: str
    items: list[str]
    purpose: str


@dataclass
class _Attempt:
    id: str
    consumer: Party
    user_number: str
    request: PullRequest
    started: float
    providers: list[str]


class Exchanges:
    def __init__(
        self,
        *,
        parties: Parties,
        catalog: Catalog,
        consent: ConsentView,
        providers: Providers,
        log: GroupCommit,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.parties = parties
        self.catalog = catalog
        self.consent = consent
        self.providers = providers
        self.log = log
        self.clock = clock

    async def pull(self, caller: AccessToken, request: PullRequest) -> dict[str, Any]:
        """The consented items of the citizen ``request.sub`` names, fetched from their providers."""
        _check(request)
        consumer = await self.parties.party(caller.client_id)
        items = await self.catalog.items(request.items)
        user_number = await self.parties.user_number(consumer, request.sub)
        attempt = _Attempt(
            "ex_" + secrets.token_urlsafe(15), consumer, user_number, request, time.monotonic(), []
        )
        now = self.clock()
        verdict = await self.consent.check(
            user_number, consumer.client_id, request.purpose, request.items, now
        )
        attempt.providers = sorted({items[i].providers[0]["client_id"] for i in request.items})
        if not verdict.allowed:
            await self._record_denial(attempt, ConsentRequired.code, now)
            raise ConsentRequired(
                "ask the citizen first (RFC 9396 authorization_details in a login)",
                extensions={
                    "items": request.items,
                    "purpose": request.purpose,
                    "authorization_details": [
                        {"type": DATA_ACCESS_TYPE, "items": request.items, "purpose": request.purpose}
                    ],
                },
            )
        allowed = [i for i in request.items if i in verdict.allowed]
        try:
            values = await self._fetch(attempt, {i: items[i] for i in allowed})
        except DomainError as error:
            await self._record_denial(attempt, error.code, now)
            raise
        released = [i for i in allowed if i in values]
        consent = {i: d for i, d in verdict.allowed.items() if i in released and d is not None}
        event = ExchangeCompletedV1(
            exchange_id=attempt.id,
            kind="pull",
            user_number=user_number,
            tenant_id=consumer.tenant_id,
            consumer=consumer.client_id,
            providers=attempt.providers,
            purpose_code=request.purpose,
            items=request.items,
            at=now,
            released=released,
            consent=consent,
            denied=verdict.denied,
        )
        failpoint("broker.exchange.before_log")
        await self.log.add(
            event, self._row(attempt, "completed", reason=None, released=released, consent=consent, now=now)
        )
        failpoint("broker.exchange.after_log")
        return {
            "exchange_id": attempt.id,
            "sub": request.sub,
            "purpose": request.purpose,
            "items": values,
            "denied": verdict.denied,
            "unavailable": [i for i in allowed if i not in values],
            "consent": consent,
        }

    async def _fetch(self, attempt: _Attempt, items: dict[str, Item]) -> dict[str, Any]:
        by_provider: dict[tuple[str, str], list[str]] = defaultdict(list)
        for item_id, item in items.items():
            if not item.providers:
                raise NoProvider(f"no provider for {item_id}")
            first = item.providers[0]
            by_provider[first["client_id"], first["endpoint"]].append(item_id)
        calls = [
            await self._call(attempt, provider, endpoint, ids)
            for (provider, endpoint), ids in by_provider.items()
        ]
        answers = await asyncio.gather(*(self.providers.fetch(call) for call in calls))
        values: dict[str, Any] = {}
        for call, answer in zip(calls, answers, strict=True):
            for item_id in call.items:  # only what was asked of this provider counts
                if item_id in answer and answer[item_id] is not None:
                    values[item_id] = items[item_id].clean(answer[item_id])
        return values

    async def _call(self, attempt: _Attempt, provider: str, endpoint: str, items: list[str]) -> ProviderCall:
        sub = None
        if provider != JLIS_SYNC:
            sub = await self.parties.sub_for(await self.parties.party(provider), attempt.user_number)
        return ProviderCall(
            provider=provider,
            endpoint=endpoint,
            sub=sub,
            user_number=attempt.user_number,
            items=items,
            purpose=attempt.request.purpose,
            consumer=attempt.consumer.client_id,
            exchange_id=attempt.id,
        )

    async def _record_denial(self, attempt: _Attempt, reason: str, now: datetime) -> None:
        event = ExchangeDeniedV1(
            exchange_id=attempt.id,
            kind="pull",
            user_number=attempt.user_number,
            tenant_id=attempt.consumer.tenant_id,
            consumer=attempt.consumer.client_id,
            providers=attempt.providers,
            purpose_code=attempt.request.purpose,
            items=attempt.request.items,
            at=now,
            reason=reason,
        )
        outcome = "denied" if reason == ConsentRequired.code else "failed"
        await self.log.add(
            event, self._row(attempt, outcome, reason=reason, released=[], consent={}, now=now)
        )

    @staticmethod
    def _row(
        attempt: _Attempt,
        outcome: str,
        *,
        reason: str | None,
        released: list[str],
        consent: dict[str, str],
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "id": attempt.id,
            "tenant_id": attempt.consumer.tenant_id,
            "kind": "pull",
            "outcome": outcome,
            "reason": reason,
            "consumer": attempt.consumer.client_id,
            "providers": attempt.providers,
            "user_number": attempt.user_number,
            "purpose_code": attempt.request.purpose,
            "items": attempt.request.items,
            "released": released,
            "consent": consent,
            "at": now,
            "duration_ms": int((time.monotonic() - attempt.started) * 1000),
            "request_id": current_request_id(),
        }


def _check(request: PullRequest) -> None:
    if not request.items or len(request.items) > MAX_ITEMS or len(set(request.items)) != len(request.items):
        raise InvalidExchange(f"items: 1 to {MAX_ITEMS} distinct item ids")
    if not PURPOSE.match(request.purpose):
        raise InvalidExchange("purpose: a purpose code (lower-case, e.g. treatment)")
    if not request.sub or len(request.sub) > 64:
        raise InvalidExchange("sub: the citizen's subject as this client knows it")
