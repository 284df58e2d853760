"""A sample data provider for the dev stack, the demo and the broker's tests: a hospital's or a
city's records system that answers the broker's signed data requests.

It does what a real provider must (``services/broker/README.md``, *Personal data exchange*):
verify the request JWT with the broker's published keys (``GET {broker}/v1/jwks``) — signature,
``typ``, ``iss``, ``aud`` = its own client id, expiry, single-use ``jti`` — and answer about the
``sub`` it names only, with only the items asked. Records are kept in memory, keyed by the
provider's own pairwise ``sub`` for each citizen.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from tsunagu.devstack.ports import free_port_block

REQUEST_TYP = "tsunagu-data-request+jwt"
DELEGATION_TYP = "tsunagu-key-delegation+jwt"
MAX_REQUEST_BYTES = 16_384
HTTP = web.AppKey("http", aiohttp.ClientSession)


def trusted_keys(jwks: dict[str, Any], issuer: str) -> KeySet:
    """The broker's HSM keys, plus each delegated key whose delegation one of them signed (typ,
    issuer, ``sub`` = the key's kid, the same key, not expired); other keys are ignored."""
    hsm = [k for k in jwks.get("keys", []) if "tsunagu_delegation" not in k]
    anchors = KeySet.import_key_set({"keys": hsm})
    trusted = list(hsm)
    for key in jwks.get("keys", []):
        delegation = key.get("tsunagu_delegation")
        if not isinstance(delegation, str):
            continue
        try:
            verified = jws.deserialize_compact(delegation, anchors, algorithms=["ES256", "RS256"])
            claims = json.loads(verified.payload)
        except (JoseError, ValueError):
            continue
        public = {k: v for k, v in key.items() if k != "tsunagu_delegation"}
        if (
            verified.headers().get("typ") == DELEGATION_TYP
            and claims.get("iss") == issuer
            and claims.get("sub") == key.get("kid")
            and claims.get("jwk") == public
            and isinstance(claims.get("exp"), int)
            and claims["exp"] > time.time()
        ):
            trusted.append(public)
    return KeySet.import_key_set({"keys": trusted})


@dataclass
class SampleProvider:
    client_id: str
    broker_url: str
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # sub → item → value
    delay_s: float = 0.0  # to play a slow provider (timeouts)
    answer_override: Any = None  # to play a broken provider (schema-invalid data)
    seen: list[dict[str, Any]] = field(default_factory=list)  # verified requests (tests)
    # When set, ``records`` is (re)read from this JSON file whenever it changes: the dev stack's
    # records system, to which the story adds its citizen's records while the process runs.
    records_file: Path | None = None
    _records_mtime: float = -1.0
    _keys: KeySet | None = None
    _jtis: OrderedDict[str, float] = field(default_factory=OrderedDict)

    async def _key_set(self, session: aiohttp.ClientSession, refresh: bool = False) -> KeySet:
        if self._keys is None or refresh:
            async with session.get(f"{self.broker_url}/v1/jwks") as response:
                response.raise_for_status()
                self._keys = trusted_keys(await response.json(), self.broker_url)
        return self._keys

    async def verify(self, session: aiohttp.ClientSession, token: str) -> dict[str, Any]:
        """The claims of a genuine, fresh, single-use request for this provider, or ValueError."""
        keys = await self._key_set(session)
        try:
            try:
                verified = jws.deserialize_compact(token, keys, algorithms=["ES256", "RS256"])
            except JoseError:  # a key published since: read the JWKS again once
                verified = jws.deserialize_compact(
                    token, await self._key_set(session, refresh=True), algorithms=["ES256", "RS256"]
                )
        except (JoseError, ValueError) as error:
            raise ValueError("signature") from error
        if verified.headers().get("typ") != REQUEST_TYP:
            raise ValueError("typ")
        claims = json.loads(verified.payload)
        now = time.time()
        if claims.get("aud") != self.client_id or claims.get("iss") != self.broker_url:
            raise ValueError("audience or issuer")
        if not isinstance(claims.get("exp"), int) or claims["exp"] < now:
            raise ValueError("expired")
        if claims.get("jti") in self._jtis:
            raise ValueError("replayed")
        self._jtis[str(claims.get("jti"))] = now
        if len(self._jtis) > 100_000:
            self._jtis.popitem(last=False)
        return dict(claims)

    def app(self) -> web.Application:
        application = web.Application(client_max_size=MAX_REQUEST_BYTES)
        application.router.add_post("/data", self._handle)
        application.cleanup_ctx.append(self._session)
        return application

    async def _session(self, application: web.Application) -> Any:
        application[HTTP] = aiohttp.ClientSession()
        yield
        await application[HTTP].close()

    async def _handle(self, request: web.Request) -> web.Response:
        if request.content_type != "application/jwt":
            return web.json_response({"error": "send application/jwt"}, status=415)
        try:
            claims = await self.verify(request.app[HTTP], await request.text())
        except ValueError as error:
            return web.json_response({"error": f"request refused: {error}"}, status=401)
        self.seen.append(claims)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.answer_override is not None:
            return web.json_response(self.answer_override)
        self._reload_records()
        held = self.records.get(str(claims["sub"]), {})
        return web.json_response({"items": {item: held[item] for item in claims["items"] if item in held}})

    def _reload_records(self) -> None:
        if self.records_file is None:
            return
        try:
            mtime = self.records_file.stat().st_mtime
            if mtime != self._records_mtime:
                self.records = json.loads(self.records_file.read_text(encoding="utf-8"))
                self._records_mtime = mtime
        except (OSError, ValueError):
            pass  # no file yet, or half-written: keep what we had


async def serve(provider: SampleProvider, port: int = 0) -> tuple[web.AppRunner, str]:
    """Start ``provider`` on loopback; returns the runner (``await runner.cleanup()`` stops it) and
    its data endpoint URL."""
    runner = web.AppRunner(provider.app(), access_log=None)
    await runner.setup()
    if port == 0:
        port = free_port_block(1)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, f"http://127.0.0.1:{port}/data"


def main(argv: list[str] | None = None) -> None:
    """Serve a provider in its own process: ``python -m tsunagu.devstack.sample_provider
    --client-id ID --broker-url URL --port N --records FILE`` (FILE: ``{sub: {item: value}}``, read
    again whenever it changes)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--records", type=Path, required=True)
    args = parser.parse_args(argv)
    provider = SampleProvider(
        client_id=args.client_id,
        broker_url=args.broker_url,
        records_file=args.records,
    )
    web.run_app(provider.app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
