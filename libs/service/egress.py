"""Calls to addresses that parties give the platform — the SSRF guard.

A relying party or data party names URLs the platform then calls: a webhook, a provider endpoint,
an NGSI-LD notification endpoint (broker); a ``jwks_uri``, a back-channel logout URI, a CIBA
notification endpoint (idp). Without a guard, a party could point them at the platform's own
insides — ``http://127.0.0.1:…/internal``, the cloud metadata service at ``169.254.169.254``, a
database on ``10.0.0.5`` — and have our servers call there for them.

:class:`EgressPolicy` decides which addresses such calls may reach: public (globally routable)
addresses; loopback only when allowed (dev and test, where every party runs on 127.0.0.1 — never in
production); private, link-local, shared, reserved, multicast and unspecified addresses never,
unless an operator lists the network (``EGRESS__ALLOWED_NETWORKS``: a municipality's providers on
its own network, say). It is applied twice:

- when the URL is registered (:meth:`EgressPolicy.check_url`): scheme (``https``; ``http`` only
  on loopback), no credentials or fragment, and an IP literal must be allowed — a clear 4xx;
- when the call is made, on the addresses the name resolves to *then* (a name that resolved to a
  public address at registration may point inside later — DNS rebinding): :meth:`httpx_transport`
  resolves, checks every address and connects to the one it checked (TLS still verifies the
  name), :meth:`aiohttp_resolver` filters aiohttp's resolution. A refused call fails as a
  connection error, like an unreachable host.

Calls to the platform's own services (configured by the operator) do not go through this guard.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from aiohttp.abc import AbstractResolver

    from tsunagu.settings import ServiceSettings

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
MAX_URL_CHARS = 2048


class EgressRefused(ValueError):
    """The URL or the address it resolves to may not be called."""


class EgressConnectError(httpx.ConnectError):
    """httpx's view of a refused address: a connection that could not be made."""


@dataclass(frozen=True)
class EgressPolicy:
    allow_loopback: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()

    def address_allowed(self, address: str | IpAddress) -> bool:
        """May a call be made to this IP address?"""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(ip in network for network in self.allowed_networks):
            return True
        if ip.is_loopback:
            return self.allow_loopback
        return ip.is_global and not ip.is_multicast

    def check_url(self, url: str) -> str:
        """``url`` if a party may register it; else :class:`EgressRefused` saying why."""
        if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
            raise EgressRefused(f"a URL of at most {MAX_URL_CHARS} characters")
        try:
            parts = urlsplit(url)
            _ = parts.port  # a malformed or out-of-range port raises here
        except ValueError as error:
            raise EgressRefused("not a URL") from error
        host = (parts.hostname or "").lower()
        if not host or parts.username is not None or parts.password is not None or parts.fragment:
            raise EgressRefused("an absolute URL with a host, without credentials or fragment")
        literal = _ip_literal(host)
        loopback = host in LOOPBACK_NAMES or (literal is not None and _is_loopback(literal))
        if parts.scheme == "http":
            if not (loopback and self.allow_loopback):
                raise EgressRefused("https is required (http only on loopback, in dev and test)")
        elif parts.scheme != "https":
            raise EgressRefused("https is required")
        if host in LOOPBACK_NAMES and not self.allow_loopback:
            raise EgressRefused("loopback addresses may not be called")
        if literal is not None and not self.address_allowed(literal):
            raise EgressRefused("the address is not public (private, loopback, link-local or reserved)")
        return url

    def check_now(self, url: str) -> None:
        """At call time, for clients that skip resolution for IP literals (aiohttp). Remembered
        per URL (a provider endpoint is called on every exchange; the policy never changes)."""
        if not _allowed_now(self, url):
            raise EgressRefused("the address is not allowed")

    def httpx_transport(self, **options: Any) -> httpx.AsyncBaseTransport:
        """An httpx transport that resolves, checks and pins the address of each request."""
        return _GuardedTransport(self, httpx.AsyncHTTPTransport(**options))

    def aiohttp_resolver(self) -> AbstractResolver:
        """An aiohttp resolver that refuses names resolving to an address not allowed (use with
        :meth:`check_now` for IP-literal URLs, which aiohttp does not resolve). aiohttp is imported
        here: only the broker has it."""
        return _guarded_resolver(self)


def policy_from(allow_loopback: bool, networks: Sequence[str]) -> EgressPolicy:
    return EgressPolicy(allow_loopback, tuple(ipaddress.ip_network(n, strict=False) for n in networks))


def egress_policy(settings: ServiceSettings) -> EgressPolicy:
    """The service's policy (``EGRESS__ALLOW_LOOPBACK``, ``EGRESS__ALLOWED_NETWORKS``): loopback
    allowed outside production unless set."""
    allow = settings.egress.allow_loopback
    loopback = settings.environment != "production" if allow is None else allow
    return policy_from(loopback, settings.egress.allowed_networks)


@functools.lru_cache(maxsize=4096)
def _allowed_now(policy: EgressPolicy, url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    literal = _ip_literal(host)
    if literal is not None:
        return policy.address_allowed(literal)
    return host not in LOOPBACK_NAMES or policy.allow_loopback


def _ip_literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _is_loopback(ip: IpAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


async def _resolve(host: str, port: int) -> list[str]:
    literal = _ip_literal(host)
    if literal is not None:
        return [str(literal)]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class _GuardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: EgressPolicy, inner: httpx.AsyncHTTPTransport) -> None:
        self.policy = policy
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        try:
            addresses = await _resolve(host, port)
        except OSError as error:
            raise httpx.ConnectError(f"cannot resolve {host}", request=request) from error
        refused = [a for a in addresses if not self.policy.address_allowed(a)]
        if refused or not addresses:
            raise EgressConnectError(
                f"egress refused: {host} resolves to a non-public address", request=request
            )
        if _ip_literal(host) is None:
            # Connect to the address just checked (not to a second resolution), with TLS still
            # verifying the name (SNI and certificate) and the Host header unchanged.
            request.url = request.url.copy_with(host=addresses[0])
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _guarded_resolver(policy: EgressPolicy) -> AbstractResolver:
    import aiohttp
    from aiohttp.abc import AbstractResolver, ResolveResult

    class GuardedResolver(AbstractResolver):
        def __init__(self) -> None:
            self.inner = aiohttp.DefaultResolver()

        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            results = await self.inner.resolve(host, port, family)
            if not results or any(not policy.address_allowed(result["host"]) for result in results):
                raise OSError(f"egress refused: {host} resolves to a non-public address")
            return results

        async def close(self) -> None:
            await self.inner.close()

    return GuardedResolver()
