"""The certification authority: its hierarchy (keys in the signer) and the issuing of certificates.

Every certificate is built from a profile, linted as a draft (a lint error stops issuance: nothing
is signed, nothing stored), signed by the signer holding the CA key, checked against the CA's
public key, and stored with its ``ca.certificate.issued`` event in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from tsunagu.ca.domain import profiles
from tsunagu.ca.domain.authorities import Authority, Hierarchy
from tsunagu.ca.domain.errors import (
    HierarchyExists,
    InvalidCaKey,
    IssuanceFailed,
    UpstreamUnavailable,
)
from tsunagu.ca.domain.lint import Linter
from tsunagu.ca.store.repository import CaRepository
from tsunagu.clients import UpstreamError
from tsunagu.clients.signer import SignerClient
from tsunagu.db import Database
from tsunagu.events import Outbox
from tsunagu.events.schemas.ca import CertificateIssuedV1
from tsunagu.x509 import sign_certificate
from tsunagu.x509.errors import RemoteSignatureInvalid, SignerAlgorithmMismatch

log = logging.getLogger(__name__)
ROOT_DAYS, ISSUING_DAYS, OCSP_DAYS = 20 * 365, 10 * 365, 2 * 365
CA_ALGORITHMS = ("ES256", "RS256", "PS256")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CaPolicy:
    organization: str
    public_base_url: str
    signing_policy_oid: str
    authentication_policy_oid: str
    end_entity_days: int
    challenge_ttl: timedelta
    signed_request_max_age: timedelta
    enrollment_completion: timedelta = timedelta(minutes=30)

    @property
    def urls(self) -> profiles.Urls:
        return profiles.Urls(self.public_base_url.rstrip("/"))


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    kind: str
    certificate: x509.Certificate
    chain: list[x509.Certificate]  # issuing CA, …, root

    def pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()


def serial_hex(serial: int) -> str:
    return format(serial, "x")


async def signer_call(call: Callable[[], Any]) -> Any:
    """A signer call whose failure is the platform's, not the caller's: 503 / 502, never 500."""
    try:
        return await call()
    except (httpx.TransportError, httpx.TimeoutException):
        raise UpstreamUnavailable("the signer is unreachable") from None
    except UpstreamError as error:
        if error.status in (429, 502, 503, 504):
            raise UpstreamUnavailable(f"the signer answered {error.status}") from None
        raise IssuanceFailed(f"the signer refused: {error.problem.get('type', error.status)}") from None
    except (RemoteSignatureInvalid, SignerAlgorithmMismatch) as error:
        raise IssuanceFailed(f"the signer's signature is unusable ({type(error).__name__})") from None


class CertificateAuthority:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        signer: SignerClient,
        linter: Linter,
        policy: CaPolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.outbox = outbox
        self.signer = signer
        self.linter = linter
        self.policy = policy
        self.clock = clock
        self.hierarchy = Hierarchy()

    # -- hierarchy --------------------------------------------------------------------------

    async def load(self) -> Hierarchy:
        async with self.db.sessions() as session:
            records = await CaRepository(session).authorities()
        self.hierarchy = Hierarchy.of(
            Authority(
                r.id,
                r.kind,
                r.parent_id,
                r.key_id,
                r.algorithm,
                x509.load_der_x509_certificate(r.certificate_der),
                r.state,
                r.revocation_count,
            )
            for r in records
        )
        return self.hierarchy

    async def _signer_key(self, key_id: str, purpose: str) -> tuple[str, CertificatePublicKeyTypes]:
        try:
            key = await signer_call(lambda: self.signer.key(key_id))
        except IssuanceFailed:
            raise InvalidCaKey(f"the signer has no key {key_id} this CA may use") from None
        if key["purpose"] != purpose or key["algorithm"] not in CA_ALGORITHMS:
            raise InvalidCaKey(f"key {key_id} is not a {purpose} key (ES256, RS256 or PS256)")
        if key["state"] != "active":
            raise InvalidCaKey(f"key {key_id} is {key['state']}; activate it first")
        public_key = serialization.load_pem_public_key(key["public_key_pem"].encode())
        return str(key["algorithm"]), public_key  # type: ignore[return-value]

    async def _sign(
        self, builder: x509.CertificateBuilder, authority_key: str, algorithm: str, issuer_key: Any
    ) -> x509.Certificate:
        remote = self.signer.remote_signer(key_id=authority_key, algorithm=algorithm)
        certificate: x509.Certificate = await signer_call(
            lambda: sign_certificate(
                builder, remote, issuer_public_key=issuer_key, check_draft=self.linter.check_certificate
            )
        )
        return certificate

    async def create_hierarchy(self, root_key_id: str, issuing_key_id: str, ocsp_key_id: str) -> Hierarchy:
        """The ceremony: a self-signed root, the first issuing CA and its OCSP responder."""
        await self.load()
        if self.hierarchy.authorities:
            raise HierarchyExists("the CA hierarchy exists; roll the issuing CA over instead")
        root_algorithm, root_key = await self._signer_key(root_key_id, "ca-root")
        now = self.clock()
        builder = profiles.root_builder(self.policy.organization, 1, root_key, now, ROOT_DAYS)
        root_certificate = await self._sign(builder, root_key_id, root_algorithm, root_key)
        root = Authority("root-1", "root", None, root_key_id, root_algorithm, root_certificate, "active")
        issuing, responder = await self._issuing_pair(root, issuing_key_id, ocsp_key_id, 1, now)
        async with self.db.transaction() as session:
            repository = CaRepository(session)
            await repository.lock("ca-hierarchy")
            if await repository.authorities():
                raise HierarchyExists("the CA hierarchy was created meanwhile")
            for authority in (root, issuing, responder):
                await self._store_authority(repository, authority, now)
        return await self.load()

    async def _issuing_pair(
        self, root: Authority, issuing_key_id: str, ocsp_key_id: str, number: int, now: datetime
    ) -> tuple[Authority, Authority]:
        issuing_algorithm, issuing_key = await self._signer_key(issuing_key_id, "ca-issuing")
        ocsp_algorithm, ocsp_key = await self._signer_key(ocsp_key_id, "ocsp")
        organization, urls = self.policy.organization, self.policy.urls
        builder = profiles.issuing_builder(
            root.issuer,
            organization=organization,
            number=number,
            public_key=issuing_key,
            urls=urls,
            now=now,
            days=ISSUING_DAYS,
        )
        root_key = root.certificate.public_key()
        issuing_certificate = await self._sign(builder, root.key_id, root.algorithm, root_key)
        issuing = Authority(
            f"issuing-{number}",
            "issuing",
            root.id,
            issuing_key_id,
            issuing_algorithm,
            issuing_certificate,
            "current",
        )
        builder = profiles.ocsp_responder_builder(
            issuing.issuer,
            organization=organization,
            number=number,
            public_key=ocsp_key,
            now=now,
            days=OCSP_DAYS,
        )
        responder_certificate = await self._sign(
            builder, issuing_key_id, issuing_algorithm, issuing_certificate.public_key()
        )
        responder = Authority(
            f"ocsp-{number}", "ocsp", issuing.id, ocsp_key_id, ocsp_algorithm, responder_certificate, "active"
        )
        return issuing, responder

    async def roll_over_issuing(self, issuing_key_id: str, ocsp_key_id: str) -> Hierarchy:
        """A new issuing CA (and responder) takes over issuing; the old one keeps its CRL and OCSP."""
        hierarchy = await self.load()
        previous = hierarchy.current_issuing()
        number = hierarchy.next_number("issuing")
        now = self.clock()
        issuing, responder = await self._issuing_pair(
            hierarchy.root(), issuing_key_id, ocsp_key_id, number, now
        )
        async with self.db.transaction() as session:
            repository = CaRepository(session)
            await repository.lock("ca-hierarchy")
            await repository.set_authority_state(previous.id, "active")
            for authority in (issuing, responder):
                await self._store_authority(repository, authority, now)
        return await self.load()

    async def _store_authority(self, repository: CaRepository, authority: Authority, now: datetime) -> None:
        await repository.add_authority(
            id=authority.id,
            kind=authority.kind,
            parent_id=authority.parent_id,
            key_id=authority.key_id,
            algorithm=authority.algorithm,
            certificate_der=authority.der,
            state=authority.state,
            not_after=authority.certificate.not_valid_after_utc,
            created_at=now,
        )

    # -- end-entity certificates --------------------------------------------------------------

    async def sign_end_entity(
        self, kind: profiles.CertificateKind, user_number: str, public_key: CertificatePublicKeyTypes
    ) -> tuple[Authority, x509.Certificate, str]:
        """Build, lint and sign (nothing stored yet); returns (issuer, certificate, identifier name).

        If the signer says the issuing key is no longer active, another replica rolled the
        issuing CA over: reload the hierarchy and issue from the new CA.
        """
        try:
            return await self._sign_end_entity(kind, user_number, public_key)
        except IssuanceFailed as failure:
            if "key-not-active" not in str(failure.detail):
                raise
            await self.load()
            return await self._sign_end_entity(kind, user_number, public_key)

    async def _sign_end_entity(
        self, kind: profiles.CertificateKind, user_number: str, public_key: CertificatePublicKeyTypes
    ) -> tuple[Authority, x509.Certificate, str]:
        issuer = self.hierarchy.current_issuing()
        identifier = profiles.new_identifier_name()
        policy = (
            self.policy.signing_policy_oid if kind == "signing" else self.policy.authentication_policy_oid
        )
        request = profiles.EndEntityRequest(
            kind, user_number, identifier, public_key, profiles.new_serial(), policy
        )
        builder = profiles.end_entity_builder(
            issuer.issuer,
            organization=self.policy.organization,
            request=request,
            urls=self.policy.urls,
            now=self.clock(),
            days=self.policy.end_entity_days,
        )
        certificate = await self._sign(
            builder, issuer.key_id, issuer.algorithm, issuer.certificate.public_key()
        )
        return issuer, certificate, identifier

    def issued_record(
        self,
        *,
        issuer: Authority,
        certificate: x509.Certificate,
        identifier: str,
        kind: profiles.CertificateKind,
        user_number: str,
        device_id: str,
        spki_sha256: str,
        enrollment_id: str | None = None,
        app_id: str | None = None,
    ) -> tuple[dict[str, Any], CertificateIssuedV1, IssuedCertificate]:
        """What a signed certificate is recorded as: its row (``store.issuance.CERTIFICATE_COLUMNS``),
        its event, and what the caller gets; the caller stores the first two in one transaction."""
        serial = serial_hex(certificate.serial_number)
        row = {
            "serial": serial,
            "issuer_id": issuer.id,
            "user_number": user_number,
            "device_id": device_id,
            "kind": kind,
            "app_id": app_id,
            "identifier_name": identifier,
            "spki_sha256": spki_sha256,
            "not_before": certificate.not_valid_before_utc,
            "not_after": certificate.not_valid_after_utc,
            "certificate_der": certificate.public_bytes(Encoding.DER),
            "enrollment_id": enrollment_id,
            "issued_at": self.clock(),
        }
        event = CertificateIssuedV1(
            user_number=user_number,
            serial=serial,
            issuer_id=issuer.id,
            kind=kind,
            device_id=device_id,
            app_id=app_id,
            identifier_name=identifier,
            spki_sha256=spki_sha256,
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc,
        )
        issued = IssuedCertificate(
            serial, kind, certificate, [a.certificate for a in self.hierarchy.chain(issuer.id)]
        )
        return row, event, issued
