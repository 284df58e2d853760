"""The broker's domain services, built once per app in ``app.py`` (routers get them through
``api/deps.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from tsunagu.broker.domain.access_tokens_rfc9068 import AccessTokenVerifier
from tsunagu.broker.domain.catalog import Catalog
from tsunagu.broker.domain.deliveries import Deliveries
from tsunagu.broker.domain.exchange_log import ExchangeLog
from tsunagu.broker.domain.exchanges import Exchanges
from tsunagu.broker.domain.ngsild import ContextBroker
from tsunagu.broker.domain.parties import Parties
from tsunagu.broker.domain.push import Push
from tsunagu.broker.domain.quotas import ClientQuotas
from tsunagu.broker.domain.usage import Usage
from tsunagu.clients.jwt_signing import JwtSigner


@dataclass
class BrokerServices:
    tokens: AccessTokenVerifier
    quotas: ClientQuotas
    parties: Parties
    catalog: Catalog
    exchanges: Exchanges
    exchange_log: ExchangeLog
    exchange_keys: JwtSigner  # the ``exchange`` signing keys (JWKS for providers)
    push: Push  # subscriptions and changes in
    deliveries: Deliveries  # webhooks out, the dead-letter store
    usage: Usage  # metering
    ngsild: ContextBroker  # non-personal data (NGSI-LD subset)
    log_clients: frozenset[str] = frozenset()  # clients whose citizen tokens read the exchange log
