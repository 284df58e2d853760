"""The CA's domain services for a request (built once per app in ``app.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from tsunagu.ca.domain.crl_rfc5280 import CrlPublisher
from tsunagu.ca.domain.enrollment import Enrollments
from tsunagu.ca.domain.ocsp_responder import OcspResponder
from tsunagu.ca.domain.revocation import Revocations
from tsunagu.ca.domain.service import CertificateAuthority
from tsunagu.errors import ServiceUnavailable
from tsunagu.service import get_runtime

ADMIN = "ca:admin"  # hierarchy ceremony, rollover, operator revocation
READ = "ca:certificates:read"  # status and chain lookups (idp, consent, broker)


class CaNotConfigured(ServiceUnavailable):
    code = "ca-not-configured"
    title = "The CA is not configured (J-LIS trust anchors or service credentials missing)"


@dataclass
class CaServices:
    ca: CertificateAuthority
    enrollments: Enrollments
    revocations: Revocations
    crls: CrlPublisher
    ocsp: OcspResponder

    def published_revocations(self, serials: list[str]) -> None:
        """After a revocation commits: the OCSP cache forgets, the CRL is republished now."""
        self.ocsp.forget(serials)
        self.crls.wake()


async def services(request: Request) -> CaServices:
    resources = get_runtime(request).resources
    if not isinstance(resources, CaServices):
        raise CaNotConfigured("set TSUNAGU_CA_JPKI__ROOT_CA_FILE, __SIGNING_CA_FILE and the AUTH__ files")
    return resources
