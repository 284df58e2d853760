"""The consent domain services for a request (built once per app in ``app.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from tsunagu.consent.domain.dashboard import Dashboard
from tsunagu.consent.domain.decisions import Decisions
from tsunagu.consent.domain.exchange_log import ExchangeLog
from tsunagu.consent.domain.queries import ConsentQueries
from tsunagu.consent.domain.requests import ConsentRequests
from tsunagu.errors import ServiceUnavailable
from tsunagu.service import get_runtime

RECIPIENTS_WRITE = "consent:recipients:write"  # register relying parties / services as recipients
REQUESTS_CREATE = "consent:requests:create"  # ask a person for consent (and read the request back)
EFFECTIVE_READ = "consent:effective:read"  # effective-consent checks (idp, broker)
DECISIONS_EXPORT = "consent:decisions:export"  # export a decision with its evidence (audit)


class ConsentNotConfigured(ServiceUnavailable):
    code = "consent-not-configured"
    title = "consent is not configured (service credentials missing)"


@dataclass
class ConsentServices:
    requests: ConsentRequests
    decisions: Decisions
    queries: ConsentQueries
    exchange_log: ExchangeLog  # read from the broker
    dashboard: Dashboard | None = None  # None until the dashboard's idp client is configured


async def services(request: Request) -> ConsentServices:
    resources = get_runtime(request).resources
    if not isinstance(resources, ConsentServices):
        raise ConsentNotConfigured("set TSUNAGU_CONSENT_AUTH__PRIVATE_KEY_FILE and __TRUST_FILE")
    return resources
