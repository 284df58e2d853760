"""Fetching items from their providers.

An external provider (an idp client, e.g. a hospital's records system) receives one signed request
per exchange: ``POST <endpoint>`` with ``Content-Type: application/jwt``, a JWT signed by the
broker's ``exchange`` key (``GET /v1/jwks``) with header ``typ tsunagu-data-request+jwt`` and
claims ``{iss: <broker resource>, aud: <provider client id>, jti: <exchange id>, iat, exp,
sub: <the provider's own sub for the citizen>, items, purpose, consumer}``. It answers
``200 {"items": {item: value}}`` (``application/json``) about that ``sub`` only.

The internal provider ``jlis-sync`` serves the ``resident.*`` items (basic 4 information) over the
service-token API; values are read at exchange time and never stored here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from tsunagu.broker.domain.errors import ProviderFailed, ProviderTimeout
from tsunagu.clients.internal import UpstreamError
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.jwt_signing import JwtSigner
from tsunagu.service.egress import EgressPolicy, EgressRefused

REQUEST_TYP = "tsunagu-data-request+jwt"
JLIS_SYNC = "jlis-sync"  # the internal provider of resident.* items
REQUEST_LIFETIME_S = 60
# resident.* item → the field of jlis-sync's resident record it carries
RESIDENT_FIELDS = {
    "resident.name": "name",
    "resident.address": "address",
    "resident.birth_date": "birth_date",
    "resident.sex": "sex",
}


@dataclass(frozen=True)
class ProviderCall:
    provider: str  # client id (or ``jlis-sync``)
    endpoint: str
    sub: str | None  # the provider's own sub for the citizen (external providers)
    user_number: str  # internal providers only ever see this
    items: list[str]
    purpose: str
    consumer: str
    exchange_id: str


class Providers:
    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        egress: EgressPolicy,
        signer: JwtSigner,
        jlis: JlisSyncClient,
        issuer: str,
        timeout_s: float,
        max_response_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http = http  # its resolver refuses names that resolve to addresses egress forbids
        self.egress = egress
        self.signer = signer
        self.jlis = jlis
        self.issuer = issuer
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.clock = clock

    async def fetch(self, call: ProviderCall) -> dict[str, Any]:
        """Item → value as the provider sent it (validation is the caller's); raises
        :class:`ProviderTimeout` / :class:`ProviderFailed`."""
        if call.provider == JLIS_SYNC:
            return await self._resident(call)
        return await self._external(call)

    async def _resident(self, call: ProviderCall) -> dict[str, Any]:
        try:
            record = await self.jlis.resident(call.user_number)
        except httpx.TimeoutException as error:
            raise ProviderTimeout("jlis-sync did not answer in time") from error
        except (UpstreamError, httpx.HTTPError) as error:
            raise ProviderFailed("jlis-sync failed") from error
        if record is None:
            return {}
        return {
            item: {RESIDENT_FIELDS[item]: record.get(RESIDENT_FIELDS[item])}
            for item in call.items
            if item in RESIDENT_FIELDS and record.get(RESIDENT_FIELDS[item]) is not None
        }

    async def signed_request(self, call: ProviderCall) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "aud": call.provider,
            "jti": call.exchange_id,
            "iat": now,
            "exp": now + REQUEST_LIFETIME_S,
            "sub": call.sub,
            "items": call.items,
            "purpose": call.purpose,
            "consumer": call.consumer,
        }
        return await self.signer.sign_jwt(claims, typ=REQUEST_TYP)

    async def _external(self, call: ProviderCall) -> dict[str, Any]:
        try:
            self.egress.check_now(call.endpoint)  # aiohttp does not resolve an IP literal
        except EgressRefused as refused:
            raise ProviderFailed("the provider's address may not be called") from refused
        body = await self.signed_request(call)
        headers = {"Content-Type": "application/jwt", "Accept": "application/json"}
        try:
            async with self.http.post(
                call.endpoint,
                data=body.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as response:
                if response.status != 200:
                    raise ProviderFailed(f"the provider answered {response.status}")
                raw = await self._read_bounded(response)
        except TimeoutError as error:
            raise ProviderTimeout(f"the provider did not answer within {self.timeout_s:g} s") from error
        except aiohttp.ClientError as error:
            raise ProviderFailed("the provider could not be reached") from error
        try:
            document = json.loads(raw)
        except ValueError as error:
            raise ProviderFailed("the provider's answer is not JSON") from error
        values = document.get("items") if isinstance(document, dict) else None
        if not isinstance(values, dict):
            raise ProviderFailed('the provider\'s answer has no "items" object')
        return values

    async def _read_bounded(self, response: aiohttp.ClientResponse) -> bytes:
        if (response.content_length or 0) > self.max_response_bytes:
            raise ProviderFailed(f"the provider's answer exceeds {self.max_response_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(65_536):
            size += len(chunk)
            if size > self.max_response_bytes:
                raise ProviderFailed(f"the provider's answer exceeds {self.max_response_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
