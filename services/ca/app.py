"""Tsunagu CA.

Identity proofing with the My Number Card, user identification numbers, phone certificates, CRL and OCSP.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from fastapi import FastAPI

from tsunagu.ca.api import fast_routes, routers
from tsunagu.ca.api.deps import ADMIN, READ, CaServices
from tsunagu.ca.api.ocsp import OcspPost
from tsunagu.ca.domain.crl_rfc5280 import CrlPublisher
from tsunagu.ca.domain.enrollment import Enrollments
from tsunagu.ca.domain.jpki_proof import JpkiTrustAnchors
from tsunagu.ca.domain.lint import Linter
from tsunagu.ca.domain.ocsp_responder import OcspResponder
from tsunagu.ca.domain.revocation import Revocations
from tsunagu.ca.domain.service import CaPolicy, CertificateAuthority
from tsunagu.ca.events import Late, consumers
from tsunagu.ca.settings import CaSettings
from tsunagu.ca.store.models import event_tables, metadata
from tsunagu.clients.jlis_sync import JlisSyncClient
from tsunagu.clients.signer import SignerClient
from tsunagu.service import ServiceRuntime, ServiceSpec, create_service_app, run_service

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
# permission → service callers allowed (deny by default)
GRANTS: dict[str, list[str]] = {
    ADMIN: ["operator"],
    READ: ["idp", "consent", "broker"],
}
log = logging.getLogger(__name__)


def _policy(settings: CaSettings) -> CaPolicy:
    return CaPolicy(
        organization=settings.organization,
        public_base_url=settings.public_base_url,
        signing_policy_oid=settings.signing_policy_oid,
        authentication_policy_oid=settings.authentication_policy_oid,
        end_entity_days=settings.end_entity_validity_days,
        challenge_ttl=timedelta(seconds=settings.challenge_ttl_s),
        signed_request_max_age=timedelta(seconds=settings.signed_request_max_age_s),
        enrollment_completion=timedelta(seconds=settings.enrollment_completion_s),
    )


def _resources(late: Late):  # type: ignore[no-untyped-def]
    @asynccontextmanager
    async def ca_resources(runtime: ServiceRuntime) -> AsyncIterator[CaServices | None]:
        settings = runtime.settings
        assert isinstance(settings, CaSettings)
        if (
            settings.jpki.root_ca_file is None
            or settings.jpki.signing_ca_file is None
            or runtime.issuer is None
        ):
            log.error("no J-LIS trust anchors or no service key configured: the CA refuses every request")
            yield None
            return
        anchors = JpkiTrustAnchors(
            root=x509.load_pem_x509_certificate(settings.jpki.root_ca_file.read_bytes()),
            signing_ca=x509.load_pem_x509_certificate(settings.jpki.signing_ca_file.read_bytes()),
        )
        signer = SignerClient(settings.signer_url, runtime.issuer)
        jlis = JlisSyncClient(settings.jlis_sync_url, runtime.issuer)
        ca = CertificateAuthority(runtime.db, runtime.outbox, signer, Linter(), _policy(settings))
        await ca.load()
        enrollments = Enrollments(ca, jlis, anchors)
        crls = CrlPublisher(ca, timedelta(seconds=settings.crl_validity_s))
        ocsp = OcspResponder(
            ca,
            validity=timedelta(seconds=settings.ocsp_validity_s),
            refresh_before=timedelta(seconds=settings.ocsp_refresh_before_s),
            echo_nonce=settings.ocsp_echo_nonce,
        )
        services = CaServices(ca, enrollments, Revocations(enrollments), crls, ocsp)
        late.services = services
        stopping = asyncio.Event()
        loops = [
            asyncio.create_task(crls.run(settings.crl_check_interval_s, stopping)),
            asyncio.create_task(ocsp.run(settings.ocsp_refresh_interval_s, stopping)),
            asyncio.create_task(enrollments.run_housekeeping(600.0, stopping)),
        ]
        try:
            yield services
        finally:
            stopping.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*loops, return_exceptions=True), 10)
            late.services = None
            await signer.aclose()
            await jlis.aclose()

    return ca_resources


def service_spec(settings: CaSettings) -> ServiceSpec:
    late = Late()
    return ServiceSpec(
        settings=settings,
        title="Tsunagu CA",
        description=__doc__ or "",
        metadata=metadata,
        tables=event_tables,
        migrations_dir=MIGRATIONS,
        routers=routers,
        consumers=consumers(event_tables, late),
        grants=GRANTS,
        resources=_resources(late),
        # OCSP answers come from memory; FastAPI's routing would cost more than the answer.
        fast_routes={("POST", "/ocsp"): OcspPost(), **fast_routes},
    )


def create_app(settings: CaSettings | None = None) -> FastAPI:
    return create_service_app(service_spec(settings or CaSettings()))


def main() -> None:
    """``tsunagu-ca`` serves; ``tsunagu-ca migrate`` only applies the migrations."""
    run_service(service_spec, CaSettings())


if __name__ == "__main__":
    main()
