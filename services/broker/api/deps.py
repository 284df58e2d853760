"""Permissions, the broker's services for a request, and the calling party."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessToken
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.errors import InsufficientScope, InvalidToken
from tsunagu.broker.domain.ngsild.datasets import READ_SCOPE, WRITE_SCOPE
from tsunagu.errors import ServiceUnavailable
from tsunagu.service import get_runtime

CATALOG_WRITE = "broker:catalog:write"  # define items and datasets (operator)
LOG_READ = "broker:log:read"  # a citizen's exchange log (consent's dashboard)
USAGE_READ = "broker:usage:read"  # metering reports (operator)

# Scopes of parties' access tokens (registered on their idp client).
SCOPE_EXCHANGE = "broker:exchange"
SCOPE_PROVIDE = "broker:provide"
SCOPE_SUBSCRIBE = "broker:subscribe"
SCOPE_LOG = "broker:log"
SCOPE_NGSILD_READ = READ_SCOPE  # ngsi-ld:read (non-public datasets, subscriptions)
SCOPE_NGSILD_WRITE = WRITE_SCOPE  # ngsi-ld:write (a dataset's writers)


class BrokerNotConfigured(ServiceUnavailable):
    code = "broker-not-configured"
    title = "the broker is not configured (service credentials missing)"


async def services(request: Request) -> BrokerServices:
    resources = get_runtime(request).resources
    if not isinstance(resources, BrokerServices):
        raise BrokerNotConfigured("set TSUNAGU_BROKER_AUTH__PRIVATE_KEY_FILE and __TRUST_FILE")
    return resources


def party_token(scope: str) -> Callable[[Request], Awaitable[AccessToken]]:
    """A dependency: the caller's verified access token, carrying ``scope``, within its quota."""

    async def dependency(request: Request) -> AccessToken:
        token = await _verified(request)
        if scope not in token.scopes:
            raise InsufficientScope(scope)
        return token

    return dependency


async def _verified(request: Request) -> AccessToken:
    broker = await services(request)
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise InvalidToken("send exactly one Authorization header")
    token = await broker.tokens.verify(headers[0] if headers else None)
    broker.quotas.spend(token.client_id)
    broker.usage.count_call(token.client_id)
    request.state.party = token.client_id
    return token


async def optional_party_token(request: Request) -> AccessToken | None:
    """A dependency: the caller's verified access token when one is sent (any scope; the route
    decides), None for an anonymous call (public non-personal data)."""
    if "authorization" not in request.headers:
        return None
    return await _verified(request)
