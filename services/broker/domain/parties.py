"""Who is who: parties (idp clients) and the citizen behind each party's own pairwise ``sub``.

The view is fed by the idp's events (``client.*``, ``subject.issued``, see ``events.py``); a miss —
the event not applied yet, or a provider that never met the citizen — asks the idp and remembers
the answer. A subject never changes its person (``sub`` = HMAC(sector, user number)), so the
mapping is cached in memory for good; parties are cached for ``party_cache_s`` (a disabled client
is refused within that time, and at once when its event arrives).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from tsunagu.broker.domain.errors import UnknownParty, UnknownSubject
from tsunagu.broker.store import repository as store
from tsunagu.clients.idp import IdpClient
from tsunagu.db import Database

_MAX_CACHED = 200_000
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Party:
    client_id: str
    tenant_id: str
    sector_identifier: str
    name: str | None


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        return self.entries.get(key)

    def put(self, key: K, value: V) -> None:
        self.entries[key] = value
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)


class Parties:
    def __init__(
        self,
        db: Database,
        idp: IdpClient,
        *,
        party_cache_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.idp = idp
        self.party_cache_s = party_cache_s
        self.clock = clock
        self._parties: dict[str, tuple[float, Party | None]] = {}
        self._users: _Lru[tuple[str, str], str] = _Lru(_MAX_CACHED)  # (sector, sub) → user
        self._subs: _Lru[tuple[str, str], str] = _Lru(_MAX_CACHED)  # (sector, user) → sub

    def forget(self, client_id: str) -> None:
        """A client event arrived: read the party again on next use."""
        self._parties.pop(client_id, None)

    async def party(self, client_id: str) -> Party:
        """The **active** party with this client id, or :class:`UnknownParty`."""
        cached = self._parties.get(client_id)
        if cached is not None and cached[0] > self.clock():
            found = cached[1]
        else:
            found = await self._load_party(client_id)
            if len(self._parties) > 10_000:
                self._parties.clear()
            self._parties[client_id] = (self.clock() + self.party_cache_s, found)
        if found is None:
            raise UnknownParty("the client is unknown to the platform or disabled")
        return found

    async def _load_party(self, client_id: str) -> Party | None:
        async with self.db.sessions() as session:
            row = await store.get_party(session, client_id)
        if row is None or row["sector_identifier"] is None:
            answer = await self.idp.client(client_id)
            if answer is None:
                return None
            row = {
                "client_id": client_id,
                "tenant_id": str(answer["tenant_id"]),
                "sector_identifier": str(answer["sector_identifier"]),
                "state": str(answer["state"]),
                "client_name": answer.get("client_name"),
                "updated_at": datetime.now(UTC),
            }
            async with self.db.transaction() as session:
                await store.put_party(session, row)
        if row["state"] != "active":
            return None
        return Party(row["client_id"], row["tenant_id"], row["sector_identifier"], row["client_name"])

    async def user_number(self, party: Party, sub: str) -> str:
        """The citizen behind ``sub`` as ``party`` knows them, or :class:`UnknownSubject`."""
        key = (party.sector_identifier, sub)
        found = self._users.get(key)
        if found is not None:
            return found
        async with self.db.sessions() as session:
            found = await store.user_for_subject(session, party.sector_identifier, sub)
        if found is None:
            found = await self.idp.resolve_subject(party.client_id, sub)
            if found is None:
                raise UnknownSubject("this party was never given this subject")
            await self.remember(party.sector_identifier, sub, found)
        self._users.put(key, found)
        return found

    async def sub_for(self, party: Party, user_number: str) -> str:
        """The citizen's ``sub`` as ``party`` knows (or will know) them."""
        key = (party.sector_identifier, user_number)
        found = self._subs.get(key)
        if found is not None:
            return found
        async with self.db.sessions() as session:
            found = await store.subject_for_user(session, party.sector_identifier, user_number)
        if found is None:
            found = await self.idp.pairwise_subject(party.client_id, user_number)
            await self.remember(party.sector_identifier, found, user_number)
        self._subs.put(key, found)
        return found

    async def remember(self, sector_identifier: str, sub: str, user_number: str) -> None:
        async with self.db.transaction() as session:
            await store.add_subject(session, sector_identifier, sub, user_number)
