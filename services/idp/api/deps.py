"""The idp's domain services for a request (built once per app in ``app.py``)."""

from __future__ import annotations

from fastapi import Request

from tsunagu.errors import ServiceUnavailable
from tsunagu.idp.domain.context import IdpServices
from tsunagu.service import get_runtime

__all__ = ["ADMIN", "SUBJECTS", "IdpNotConfigured", "IdpServices", "services"]

ADMIN = "idp:admin"  # tenants and clients (operator)
SUBJECTS = "idp:subjects:read"  # map a client's pairwise sub back to the person (broker)


class IdpNotConfigured(ServiceUnavailable):
    code = "idp-not-configured"
    title = "The idp is not configured (service credentials or pairwise secret missing)"


async def services(request: Request) -> IdpServices:
    resources = get_runtime(request).resources
    if not isinstance(resources, IdpServices):
        raise IdpNotConfigured("set TSUNAGU_IDP_AUTH__ files (and PAIRWISE_SECRET in production)")
    return resources
