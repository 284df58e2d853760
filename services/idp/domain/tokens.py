"""Grants and tokens (RFC 6749, OIDC Core, RFC 9068, RFC 9449, RFC 7662, RFC 7009).

A **grant** is what one client obtained for one person in one authorization (a code, or a CIBA
approval) or for itself (``client_credentials``). Codes, refresh tokens and access-token records
hang off it: revoking the grant revokes the family.

- Codes: 32 random bytes, only their SHA-256 is stored; single use, decided by the database
  (``SELECT … FOR UPDATE`` on PostgreSQL, then ``UPDATE … WHERE used_at IS NULL``). A code
  presented again revokes its grant — and every token it issued.
- Refresh tokens rotate: each use spends the token and issues the next one of the family; a spent
  token presented again revokes the grant. They live at most ``REFRESH_TOKEN_TTL_S`` from the
  grant. Public clients' refresh tokens are bound to their DPoP key.
- Access tokens are RFC 9068 JWTs (``typ`` ``at+jwt``) whose ``jti`` is recorded, so introspection,
  revocation and userinfo see a revoked token or grant at once. ID tokens follow OIDC Core §2.
- Tokens are signed by the signer (:class:`TokenSigner`); the ID token and the access token of one
  response are signed concurrently (one batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from tsunagu.clients.jwt_signing import InvalidJwt, TokenSigner, b64url
from tsunagu.db import Database, call_after_commit
from tsunagu.events import Outbox
from tsunagu.events.schemas.idp import SubjectIssuedV1
from tsunagu.idp.domain.claims import CLAIM_ITEMS, ClaimsRelease, ReleaseContext, requested_claims
from tsunagu.idp.domain.dpop import DpopProof, DpopVerifier, access_token_hash
from tsunagu.idp.domain.errors import OAuthError, invalid_grant, invalid_request, unauthorized_client
from tsunagu.idp.domain.opaque import new_secret, token_hash
from tsunagu.idp.domain.subjects import PairwiseSubjects
from tsunagu.idp.settings import IdpSettings
from tsunagu.idp.store.tokens import (
    CodeRecord,
    GrantRecord,
    RefreshRecord,
    TokenRepository,
    add_access_token_now,
)

log = logging.getLogger(__name__)

GRANT_CODE = "authorization_code"
GRANT_REFRESH = "refresh_token"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_CIBA = "urn:openid:params:grant-type:ciba"
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - RFC 9068 media type
ID_TOKEN_TYP = "JWT"  # noqa: S105 - a media type
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PERSON_ONLY_SCOPES = frozenset({"openid", "offline_access", "profile", "address"})


def _now() -> datetime:
    return datetime.now(UTC)


class ClientLike(Protocol):
    """The client as client authentication (``domain/client_auth.py``) hands it over."""

    @property
    def client_id(self) -> str: ...
    @property
    def sector_identifier(self) -> str: ...
    @property
    def grant_types(self) -> Sequence[str]: ...
    @property
    def is_public(self) -> bool: ...
    @property
    def dpop_bound(self) -> bool: ...
    @property
    def id_token_alg(self) -> str: ...
    @property
    def user_number_legal_basis(self) -> str | None: ...
    @property
    def metadata(self) -> Any: ...  # the registered metadata (``scope`` …)


@dataclass(frozen=True)
class ApprovedLogin:
    """A CIBA request the citizen approved, as the CIBA part hands it to the token endpoint."""

    user_number: str
    certificate_serial: str | None
    scope: str
    claims: dict[str, Any] | None
    authorization_details: list[Any] | None
    acr: str | None
    amr: list[str]
    auth_time: datetime
    session_id: str | None = None


class CibaPoller(Protocol):
    async def poll(self, client: Any, auth_req_id: str) -> ApprovedLogin:
        """The approved login, or :class:`OAuthError` ``authorization_pending``, ``slow_down``,
        ``expired_token``, ``access_denied`` (or ``invalid_grant`` for an unknown id)."""
        ...


@dataclass(frozen=True)
class DpopInput:
    """The ``DPoP`` header of a token request (None: none sent)."""

    proof: str | None
    method: str = "POST"


@dataclass(frozen=True)
class _Minted:
    response: dict[str, Any]
    jti: str
    expires_at: datetime
    sector: str
    sub: str
    refresh: bool


@dataclass(frozen=True)
class AccessTokenView:
    """A verified, live access token at a resource of ours (userinfo)."""

    claims: dict[str, Any]
    grant: GrantRecord
    user_number_legal_basis: str | None


def _split_scope(scope: str | None) -> list[str]:
    return [s for s in (scope or "").split(" ") if s]


def _registered_scope(client: ClientLike) -> str:
    metadata = client.metadata
    value = metadata.get("scope") if isinstance(metadata, Mapping) else getattr(metadata, "scope", None)
    return str(value or "")


def _resource(resource: str | None) -> str | None:
    """RFC 8707: an absolute URI without a fragment."""
    if resource is None:
        return None
    parts = urlsplit(resource)
    if not parts.scheme or not parts.netloc or parts.fragment or "#" in resource:
        raise OAuthError("invalid_target", "resource must be an absolute URI without a fragment")
    return resource


def _pkce_ok(verifier: str, challenge: str) -> bool:
    computed = b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    return hmac.compare_digest(computed.encode(), challenge.encode())


def _check_code(
    record: CodeRecord, grant: GrantRecord, *, redirect_uri: str, code_verifier: str, now: datetime
) -> None:
    if record.expires_at <= now:
        raise invalid_grant("the authorization code has expired")
    if grant.revoked_at is not None:
        raise invalid_grant("the grant was revoked")
    if record.redirect_uri != redirect_uri:
        raise invalid_grant("redirect_uri differs from the authorization request's")
    if not _VERIFIER.match(code_verifier) or not _pkce_ok(code_verifier, record.code_challenge):
        raise invalid_grant("code_verifier does not match the code_challenge")


def bearer_error(
    error: str, description: str, *, scheme: str = "Bearer", status: int = 401, algs: str | None = None
) -> OAuthError:
    """RFC 6750 §3 / RFC 9449 §7.1: the challenge in ``WWW-Authenticate``."""
    quoted = description.replace('"', "'")
    challenge = f'{scheme} error="{error}", error_description="{quoted}"'
    if algs:
        challenge += f', algs="{algs}"'
    return OAuthError(error, description, status=status, headers={"WWW-Authenticate": challenge})


class TokenService:
    def __init__(
        self,
        *,
        settings: IdpSettings,
        db: Database,
        subjects: PairwiseSubjects,
        claims: ClaimsRelease,
        signer: TokenSigner,
        dpop: DpopVerifier | None = None,
        updated_at: Callable[[str], Awaitable[datetime | None]] | None = None,
        outbox: Outbox | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.db = db
        # ``tsunagu.idp.subject.issued`` for each first-issued subject (the broker's who-is-who).
        self.outbox = outbox
        self.subjects = subjects
        self.claims = claims
        self.signer = signer
        self.dpop = dpop or DpopVerifier(max_age_s=settings.assertion_max_age_s)
        self.clock = clock
        # When the person's basic 4 information last changed (OIDC ``updated_at``), if known.
        self.updated_at = updated_at
        self.issuer = settings.issuer
        self.token_endpoint = settings.issuer + "/token"
        # client_credentials: one grant row per (client, scope) and process, made on first use.
        self._client_grants: OrderedDict[tuple[str, str], str] = OrderedDict()
        # (sector, sub) already remembered in the subject table by this process.
        self._known_subjects: OrderedDict[tuple[str, str], None] = OrderedDict()

    # -- codes (called by the login part inside its transaction) ------------------------------

    async def issue_code(
        self,
        session: AsyncSession,
        *,
        client: Any,
        user_number: str,
        session_id: str | None,
        certificate_serial: str | None,
        scope: str,
        claims: dict[str, Any] | None,
        authorization_details: list[Any] | None,
        auth_time: datetime,
        acr: str | None,
        amr: list[str],
        redirect_uri: str,
        code_challenge: str,
        nonce: str | None,
        dpop_jkt: str | None,
        consent_id: str | None = None,
    ) -> str:
        """A grant and its authorization code, written in the caller's transaction; the code."""
        now = self.clock()
        grant = GrantRecord(
            id=new_secret(),
            client_id=client.client_id,
            user_number=user_number,
            session_id=session_id,
            certificate_serial=certificate_serial,
            scope=scope,
            claims=claims,
            authorization_details=authorization_details,
            auth_time=auth_time,
            acr=acr,
            amr=list(amr),
            dpop_jkt=None,
            created_at=now,
            consent_id=consent_id,
        )
        code = new_secret()
        repository = TokenRepository(session)
        await repository.add_grant(grant)
        await repository.add_code(
            CodeRecord(
                code_hash=token_hash(code),
                grant_id=grant.id,
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                code_challenge=code_challenge,
                nonce=nonce,
                dpop_jkt=dpop_jkt,
                expires_at=now + timedelta(seconds=self.settings.authorization_code_ttl_s),
                used_at=None,
            )
        )
        return code

    async def revoke_grants(
        self,
        session: AsyncSession,
        *,
        session_ids: list[str] | None = None,
        certificate_serial: str | None = None,
        reason: str,
    ) -> list[str]:
        """Revoke the live grants of these IdP sessions or of this certificate, with their refresh
        and access tokens (in the caller's transaction). Returns the grant ids revoked."""
        repository = TokenRepository(session)
        ids = await repository.active_grant_ids(
            session_ids=session_ids, certificate_serial=certificate_serial
        )
        await repository.revoke_grants(ids, self.clock(), reason)
        return ids

    async def user_for_subject(self, sector_identifier: str, sub: str) -> str | None:
        """The person behind a pairwise ``sub`` we issued in this sector (CIBA ``login_hint``)."""
        async with self.db.sessions() as session:
            return await TokenRepository(session).user_for_subject(sector_identifier, sub)

    async def pairwise_subject(self, sector_identifier: str, user_number: str) -> str:
        """The person's ``sub`` in this sector, remembered (and announced) as issued: the broker
        names a citizen to a provider by the provider's own subject."""
        sub = self.subjects.subject(sector_identifier, user_number)
        async with self.db.transaction() as session:
            await self._remember_subject(
                TokenRepository(session), sector_identifier, sub, user_number, self.clock()
            )
        return sub

    # -- the token endpoint ---------------------------------------------------------------------

    def _check_proof(self, dpop: DpopInput) -> DpopProof | None:
        """The proof's checks that need no database (its single use is recorded with the tokens)."""
        if dpop.proof is None:
            return None
        return self.dpop.check(dpop.proof, method=dpop.method, url=self.token_endpoint)

    @staticmethod
    def _require_grant_type(client: ClientLike, grant_type: str) -> None:
        if grant_type not in client.grant_types:
            raise unauthorized_client(f"the client is not registered for {grant_type}")

    @staticmethod
    def _require_dpop_if_bound(client: ClientLike, proof: DpopProof | None) -> None:
        if client.dpop_bound and proof is None:
            raise OAuthError("invalid_dpop_proof", "this client's tokens are DPoP-bound: send a DPoP proof")

    async def exchange_code(
        self,
        client: ClientLike,
        *,
        code: str | None,
        redirect_uri: str | None,
        code_verifier: str | None,
        dpop: DpopInput,
        resource: str | None = None,
    ) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with RFC 7636 (S256) and OIDC Core §3.1.3."""
        self._require_grant_type(client, GRANT_CODE)
        if not code or not redirect_uri:
            raise invalid_request("code and redirect_uri are required")
        if not code_verifier:
            raise invalid_request("code_verifier is required (PKCE)")
        audience = _resource(resource)
        now = self.clock()
        failure: OAuthError | None = None
        async with self.db.transaction() as session:
            repository = TokenRepository(session)
            found = await repository.code_with_grant(token_hash(code))
            if found is None:
                raise invalid_grant("unknown authorization code")
            record, grant = found
            if not hmac.compare_digest(record.client_id, client.client_id):
                raise invalid_grant("the code was issued to another client")
            if record.used_at is not None:
                failure = await self._replayed(repository, grant, "code-replay", now)
            else:
                _check_code(record, grant, redirect_uri=redirect_uri, code_verifier=code_verifier, now=now)
                proof = self._check_proof(dpop)
                self._require_dpop_if_bound(client, proof)
                if record.dpop_jkt is not None and (proof is None or proof.jkt != record.dpop_jkt):
                    raise OAuthError("invalid_dpop_proof", "the code is bound to another DPoP key (dpop_jkt)")
                # Signed before the code is spent: no write lock is held across the signer call
                # (on PostgreSQL the code's row lock makes concurrent presentations wait).
                minted = await self._mint(
                    client,
                    grant,
                    scope=grant.scope,
                    nonce=record.nonce,
                    proof=proof,
                    audience=audience,
                    now=now,
                )
                if not await repository.spend_code(record.code_hash, now):
                    failure = await self._replayed(repository, grant, "code-replay", now)
                else:
                    if proof is not None and client.is_public and grant.dpop_jkt is None:
                        await repository.bind_grant(grant.id, proof.jkt)
                    await self._record(repository, grant, minted, proof=proof, refresh_generation=0, now=now)
                    return minted.response
        assert failure is not None
        raise failure  # after the revocation committed

    async def _replayed(
        self, repository: TokenRepository, grant: GrantRecord, reason: str, now: datetime
    ) -> OAuthError:
        await repository.revoke_grants([grant.id], now, reason)
        log.warning("token replay: grant revoked", extra={"reason": reason, "client_id": grant.client_id})
        if reason == "code-replay":
            return invalid_grant("the authorization code was already used; its tokens are revoked")
        return invalid_grant("the refresh token was already used; the grant is revoked")

    async def refresh(
        self,
        client: ClientLike,
        *,
        refresh_token: str | None,
        scope: str | None,
        dpop: DpopInput,
        resource: str | None = None,
    ) -> dict[str, Any]:
        """RFC 6749 §6 with rotation (reuse revokes the grant) and OIDC Core §12."""
        self._require_grant_type(client, GRANT_REFRESH)
        if not refresh_token:
            raise invalid_request("refresh_token is required")
        audience = _resource(resource)
        now = self.clock()
        failure: OAuthError | None = None
        async with self.db.transaction() as session:
            repository = TokenRepository(session)
            found = await repository.refresh_with_grant(token_hash(refresh_token), lock=True)
            if found is None:
                raise invalid_grant("unknown refresh token")
            record, grant = found
            if not hmac.compare_digest(grant.client_id, client.client_id):
                raise invalid_grant("the refresh token was issued to another client")
            if grant.revoked_at is not None:
                raise invalid_grant("the grant was revoked")
            if record.used_at is not None:
                failure = await self._replayed(repository, grant, "refresh-reuse", now)
            elif record.expires_at <= now:
                raise invalid_grant("the refresh token has expired")
            else:
                granted = _split_scope(grant.scope)
                wanted = _split_scope(scope) or granted
                if not set(wanted) <= set(granted):
                    raise OAuthError("invalid_scope", "the scope exceeds what was granted")
                proof = self._check_proof(dpop)
                self._require_dpop_if_bound(client, proof)
                if grant.dpop_jkt is not None and (proof is None or proof.jkt != grant.dpop_jkt):
                    raise OAuthError("invalid_dpop_proof", "the refresh token is bound to another DPoP key")
                minted = await self._mint(
                    client, grant, scope=" ".join(wanted), nonce=None, proof=proof, audience=audience, now=now
                )
                if not await repository.spend_refresh(record.token_hash, now):
                    failure = await self._replayed(repository, grant, "refresh-reuse", now)
                else:
                    generation = record.generation + 1
                    await self._record(
                        repository, grant, minted, proof=proof, refresh_generation=generation, now=now
                    )
                    return minted.response
        assert failure is not None
        raise failure

    async def client_credentials(
        self, client: ClientLike, *, scope: str | None, dpop: DpopInput, resource: str | None = None
    ) -> dict[str, Any]:
        """RFC 6749 §4.4: a token for the client itself (``sub`` = client id; no ID token)."""
        if client.is_public:
            raise unauthorized_client("public clients cannot use client_credentials")
        self._require_grant_type(client, GRANT_CLIENT_CREDENTIALS)
        audience = _resource(resource)
        registered = _split_scope(_registered_scope(client))
        wanted = _split_scope(scope)
        if wanted:
            if _PERSON_ONLY_SCOPES & set(wanted) or not set(wanted) <= set(registered):
                raise OAuthError("invalid_scope", "the scope is not registered for this client")
        else:
            wanted = [s for s in registered if s not in _PERSON_ONLY_SCOPES]
        granted = " ".join(wanted)
        now = self.clock()
        jti = new_secret()
        expires = now + timedelta(seconds=self.settings.access_token_ttl_s)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": client.client_id,
            "aud": audience or client.client_id,
            "client_id": client.client_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
        }
        if granted:
            claims["scope"] = granted
        proof = self._check_proof(dpop)
        self._require_dpop_if_bound(client, proof)
        if proof is not None:
            claims["cnf"] = {"jkt": proof.jkt}
        access_token = await self.signer.sign_jwt(claims, typ=ACCESS_TOKEN_TYP, alg="ES256")
        known_grant = self._known_client_grant(client.client_id, granted)
        if proof is None and known_grant is not None:
            # The usual case: one row to add, one statement (on PostgreSQL).
            await add_access_token_now(self.db, jti, known_grant, expires)
        else:
            async with self.db.transaction() as session:  # one short write transaction
                if proof is not None:
                    await self._record_proof(session, proof)
                repository = TokenRepository(session)
                grant_id = await self._client_grant(repository, client.client_id, granted, now)
                await repository.add_access_token(jti, grant_id, expires)
        response: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "DPoP" if proof is not None else "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
        }
        if granted:
            response["scope"] = granted
        return response

    def _known_client_grant(self, client_id: str, scope: str) -> str | None:
        """The client's grant for ``scope`` if a committed one is known (most recently used last)."""
        grant_id = self._client_grants.get((client_id, scope))
        if grant_id is not None:
            self._client_grants.move_to_end((client_id, scope))
        return grant_id

    async def _client_grant(
        self, repository: TokenRepository, client_id: str, scope: str, now: datetime
    ) -> str:
        key = (client_id, scope)
        grant_id = self._known_client_grant(client_id, scope)
        if grant_id is not None:
            return grant_id
        grant_id = new_secret()
        await repository.add_grant(
            GrantRecord(
                id=grant_id,
                client_id=client_id,
                user_number=None,
                session_id=None,
                certificate_serial=None,
                scope=scope,
                claims=None,
                authorization_details=None,
                auth_time=None,
                acr=None,
                amr=None,
                dpop_jkt=None,
                created_at=now,
            )
        )

        # Known to other requests only once this transaction commits.
        def remember() -> None:
            self._client_grants[key] = grant_id
            if len(self._client_grants) > 10_000:
                self._client_grants.popitem(last=False)

        call_after_commit(repository.session, remember)
        return grant_id

    async def ciba(
        self, client: ClientLike, *, auth_req_id: str | None, poller: CibaPoller, dpop: DpopInput
    ) -> dict[str, Any]:
        """OIDC CIBA §10.1: the approved request becomes a grant and its tokens."""
        self._require_grant_type(client, GRANT_CIBA)
        if not auth_req_id:
            raise invalid_request("auth_req_id is required")
        login = await poller.poll(client, auth_req_id)
        now = self.clock()
        proof = self._check_proof(dpop)
        self._require_dpop_if_bound(client, proof)
        grant = GrantRecord(
            id=new_secret(),
            client_id=client.client_id,
            user_number=login.user_number,
            session_id=login.session_id,
            certificate_serial=login.certificate_serial,
            scope=login.scope,
            claims=login.claims,
            authorization_details=login.authorization_details,
            auth_time=login.auth_time,
            acr=login.acr,
            amr=list(login.amr),
            dpop_jkt=proof.jkt if proof is not None and client.is_public else None,
            created_at=now,
        )
        minted = await self._mint(
            client, grant, scope=grant.scope, nonce=None, proof=proof, audience=None, now=now
        )
        async with self.db.transaction() as session:
            repository = TokenRepository(session)
            await repository.add_grant(grant)
            await self._record(repository, grant, minted, proof=proof, refresh_generation=0, now=now)
        return minted.response

    # -- issuing --------------------------------------------------------------------------------

    async def _record_proof(self, session: AsyncSession, proof: DpopProof) -> None:
        if not await self.dpop.record(session, proof):
            raise OAuthError("invalid_dpop_proof", "the DPoP proof was used before")

    async def _remember_subject(
        self, repository: TokenRepository, sector: str, sub: str, user_number: str, now: datetime
    ) -> None:
        key = (sector, sub)
        if key in self._known_subjects:
            return
        first = await repository.remember_subject(sector, sub, user_number, now)
        if first and self.outbox is not None:
            event = SubjectIssuedV1(user_number=user_number, sector_identifier=sector, sub=sub, at=now)
            await self.outbox.add(repository.session, event)

        def remember() -> None:
            self._known_subjects[key] = None
            if len(self._known_subjects) > 100_000:
                self._known_subjects.popitem(last=False)

        call_after_commit(repository.session, remember)

    def _wants_refresh(self, client: ClientLike, scope: list[str]) -> bool:
        return "offline_access" in scope or GRANT_REFRESH in client.grant_types

    async def _released(self, context: ReleaseContext, wanted: set[str], now: datetime) -> dict[str, Any]:
        """The released claims, with ``updated_at`` when basic 4 information is among them."""
        released = await self.claims.release(context, wanted, now)
        if self.updated_at is not None and (set(CLAIM_ITEMS) | {"verified_claims"}) & set(released):
            changed = await self.updated_at(context.user_number)
            if changed is not None:
                released["updated_at"] = int(changed.timestamp())
        return released

    async def _mint(
        self,
        client: ClientLike,
        grant: GrantRecord,
        *,
        scope: str,
        nonce: str | None,
        proof: DpopProof | None,
        audience: str | None,
        now: datetime,
    ) -> _Minted:
        """The signed access token (+ ID token for ``openid``) of a person's grant; nothing is
        written yet (:meth:`_record` does, in the caller's transaction)."""
        assert grant.user_number is not None
        scopes = _split_scope(scope)
        sub = self.subjects.subject(client.sector_identifier, grant.user_number)
        expires = now + timedelta(seconds=self.settings.access_token_ttl_s)
        jti = new_secret()
        access: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": audience or client.client_id,
            "client_id": client.client_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": jti,
            "scope": scope,
        }
        if grant.auth_time is not None:
            access["auth_time"] = int(grant.auth_time.timestamp())
        if grant.acr:
            access["acr"] = grant.acr
        if grant.amr:
            access["amr"] = list(grant.amr)
        if grant.authorization_details:
            access["authorization_details"] = grant.authorization_details
        if proof is not None:
            access["cnf"] = {"jkt": proof.jkt}
        signing = [self.signer.sign_jwt(access, typ=ACCESS_TOKEN_TYP, alg="ES256")]
        if "openid" in scopes:
            signing.append(self._id_token(client, grant=grant, sub=sub, scopes=scopes, nonce=nonce, now=now))
        signed = await asyncio.gather(*signing)
        response: dict[str, Any] = {
            "access_token": signed[0],
            "token_type": "DPoP" if proof is not None else "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "scope": scope,
        }
        if len(signed) > 1:
            response["id_token"] = signed[1]
        if grant.authorization_details:
            response["authorization_details"] = grant.authorization_details
        if grant.consent_id:
            response["grant_id"] = grant.consent_id  # OpenID Grant Management
        return _Minted(
            response=response,
            jti=jti,
            expires_at=expires,
            sector=client.sector_identifier,
            sub=sub,
            refresh=self._wants_refresh(client, scopes),
        )

    async def _record(
        self,
        repository: TokenRepository,
        grant: GrantRecord,
        minted: _Minted,
        *,
        proof: DpopProof | None,
        refresh_generation: int,
        now: datetime,
    ) -> None:
        """Write what :meth:`_mint` made: the proof's jti, the subject, the access token's jti and
        the next refresh token (added to the response)."""
        assert grant.user_number is not None
        if proof is not None:
            await self._record_proof(repository.session, proof)
        await self._remember_subject(repository, minted.sector, minted.sub, grant.user_number, now)
        await repository.add_access_token(minted.jti, grant.id, minted.expires_at)
        if minted.refresh:
            refresh = new_secret()
            await repository.add_refresh(
                RefreshRecord(
                    token_hash=token_hash(refresh),
                    grant_id=grant.id,
                    generation=refresh_generation,
                    # Refresh tokens live at most REFRESH_TOKEN_TTL_S from the grant (not sliding).
                    expires_at=grant.created_at + timedelta(seconds=self.settings.refresh_token_ttl_s),
                    used_at=None,
                    created_at=now,
                )
            )
            minted.response["refresh_token"] = refresh

    async def _id_token(
        self,
        client: ClientLike,
        *,
        grant: GrantRecord,
        sub: str,
        scopes: list[str],
        nonce: str | None,
        now: datetime,
    ) -> str:
        assert grant.user_number is not None
        released = await self._released(
            ReleaseContext(
                client_id=client.client_id,
                user_number_legal_basis=client.user_number_legal_basis,
                user_number=grant.user_number,
                proofed_at=None,
            ),
            requested_claims(scopes, grant.claims, "id_token"),
            now,
        )
        claims: dict[str, Any] = {**released}
        claims.update(
            {
                "iss": self.issuer,
                "sub": sub,
                "aud": client.client_id,
                "azp": client.client_id,
                "iat": int(now.timestamp()),
                "exp": int((now + timedelta(seconds=self.settings.id_token_ttl_s)).timestamp()),
            }
        )
        if grant.auth_time is not None:
            claims["auth_time"] = int(grant.auth_time.timestamp())
        if nonce is not None:
            claims["nonce"] = nonce
        if grant.acr:
            claims["acr"] = grant.acr
        if grant.amr:
            claims["amr"] = list(grant.amr)
        if grant.session_id:
            claims["sid"] = grant.session_id
        alg = client.id_token_alg if client.id_token_alg in ("ES256", "RS256") else "ES256"
        return await self.signer.sign_jwt(claims, typ=ID_TOKEN_TYP, alg=alg)

    # -- our access tokens at our resources -----------------------------------------------------

    async def _verified_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of a live (signature, issuer, expiry) access token of ours, else None."""
        try:
            claims = await self.signer.verify_jwt(token, typ=ACCESS_TOKEN_TYP)
        except InvalidJwt:
            return None
        exp = claims.get("exp")
        if claims.get("iss") != self.issuer or not isinstance(exp, int) or exp <= self.clock().timestamp():
            return None
        if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
            return None
        return claims

    async def _presented(
        self,
        token: str,
        *,
        scheme: str,
        dpop_proof: str | None,
        method: str,
        url: str,
        audiences: tuple[str, ...],
    ) -> AccessTokenView:
        """RFC 6750 / RFC 9449 §7 checks of an access token presented to one of our resources:
        signature, issuer, expiry, audience, DPoP binding, not revoked."""
        algs = " ".join(("ES256", "RS256", "PS256", "EdDSA"))
        challenge_scheme = "DPoP" if scheme == "DPoP" else "Bearer"

        def invalid(description: str) -> OAuthError:
            return bearer_error(
                "invalid_token", description, scheme=challenge_scheme, algs=algs if scheme == "DPoP" else None
            )

        claims = await self._verified_access_token(token)
        if claims is None:
            raise invalid("the access token is not valid")
        if claims.get("aud") not in (claims["client_id"], self.issuer, *audiences):
            raise invalid("the access token is not for this resource")
        confirmation = claims.get("cnf")
        jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
        async with self.db.transaction() as session:
            if jkt is not None:
                if scheme != "DPoP":
                    raise invalid("a DPoP-bound token must be presented with the DPoP scheme")
                if dpop_proof is None:
                    raise bearer_error(
                        "invalid_dpop_proof", "a DPoP proof is required", scheme="DPoP", algs=algs
                    )
                proof = await self.dpop.verify(
                    session,
                    dpop_proof,
                    method=method,
                    url=url,
                    access_token=token,
                    error=lambda d: bearer_error("invalid_dpop_proof", d, scheme="DPoP", algs=algs),
                )
                if proof.jkt != jkt:
                    raise invalid("the DPoP proof is signed by another key than the token is bound to")
            elif scheme != "Bearer":
                raise invalid("the access token is not DPoP-bound")
            view = await TokenRepository(session).access_token_view(str(claims["jti"]))
        if view is None:
            raise invalid("unknown access token")
        grant, token_revoked, legal_basis = view
        if token_revoked or grant.revoked_at is not None:
            raise invalid("the access token was revoked")
        return AccessTokenView(claims=claims, grant=grant, user_number_legal_basis=legal_basis)

    async def userinfo_token(
        self, token: str, *, scheme: str, dpop_proof: str | None, method: str, url: str
    ) -> AccessTokenView:
        """RFC 6750 / RFC 9449 §7 checks of an access token presented to userinfo."""
        view = await self._presented(
            token,
            scheme=scheme,
            dpop_proof=dpop_proof,
            method=method,
            url=url,
            audiences=(self.issuer + "/userinfo",),
        )
        challenge_scheme = "DPoP" if scheme == "DPoP" else "Bearer"
        if view.grant.user_number is None:
            raise bearer_error(
                "invalid_token",
                "the access token was not issued for a person",
                scheme=challenge_scheme,
                algs=" ".join(("ES256", "RS256", "PS256", "EdDSA")) if scheme == "DPoP" else None,
            )
        if "openid" not in _split_scope(str(view.claims.get("scope") or "")):
            raise bearer_error(
                "insufficient_scope", "userinfo needs the openid scope", scheme=challenge_scheme, status=403
            )
        return view

    # -- grant management (OpenID Grant Management shape; grant_id = the consent decision id) -----

    async def managed_grants(
        self,
        grant_id: str,
        token: str,
        *,
        action: str,
        scheme: str,
        dpop_proof: str | None,
        method: str,
        url: str,
    ) -> list[GrantRecord]:
        """The presenting client's grants behind ``grant_id``, when its access token may manage
        them: a live token of this client that belongs to one of these grants or carries the scope
        ``grant_management_<action>``. Unknown or another client's → 404 ``invalid_grant``."""
        view = await self._presented(
            token,
            scheme=scheme,
            dpop_proof=dpop_proof,
            method=method,
            url=url,
            audiences=(self.issuer + "/grants",),
        )
        client_id = str(view.claims["client_id"])
        async with self.db.sessions() as session:
            grants = await TokenRepository(session).grants_for_consent(grant_id[:64], client_id)
        if not grants:
            raise OAuthError("invalid_grant", "no such grant for this client", status=404)
        own = any(g.id == view.grant.id for g in grants)
        if not own and f"grant_management_{action}" not in _split_scope(str(view.claims.get("scope") or "")):
            raise bearer_error(
                "insufficient_scope",
                f"the token is not of this grant and lacks grant_management_{action}",
                scheme="DPoP" if scheme == "DPoP" else "Bearer",
                status=403,
            )
        return grants

    async def revoke_managed(self, grants: list[GrantRecord]) -> None:
        """Revoke the OAuth grants (tokens at the idp); the consent record is the citizen's."""
        async with self.db.transaction() as session:
            await TokenRepository(session).revoke_grants(
                [g.id for g in grants], self.clock(), "grant-management"
            )

    async def userinfo(self, view: AccessTokenView) -> dict[str, Any]:
        """OIDC Core §5.3: ``sub`` and the released claims for userinfo."""
        grant = view.grant
        assert grant.user_number is not None
        released = await self._released(
            ReleaseContext(
                client_id=grant.client_id,
                user_number_legal_basis=view.user_number_legal_basis,
                user_number=grant.user_number,
                proofed_at=None,
            ),
            requested_claims(_split_scope(str(view.claims.get("scope") or "")), grant.claims, "userinfo"),
            self.clock(),
        )
        return {**released, "sub": view.claims["sub"]}

    # -- introspection and revocation -----------------------------------------------------------

    async def introspect(
        self, client: ClientLike, token: str | None, hint: str | None = None
    ) -> dict[str, Any]:
        """RFC 7662: a client sees only its own tokens; anything else is ``active: false``."""
        inactive: dict[str, Any] = {"active": False}
        if not token:
            raise invalid_request("token is required")
        now = self.clock()
        if token.count(".") == 2:
            claims = await self._verified_access_token(token)
            if claims is None or not hmac.compare_digest(str(claims["client_id"]), client.client_id):
                return inactive
            async with self.db.sessions() as session:
                view = await TokenRepository(session).access_token_view(str(claims["jti"]))
            if view is None or view[1] or view[0].revoked_at is not None:
                return inactive
            answer = {"active": True, **{k: v for k, v in claims.items() if k != "authorization_details"}}
            if "authorization_details" in claims:
                answer["authorization_details"] = claims["authorization_details"]
            answer["token_type"] = "DPoP" if "cnf" in claims else "Bearer"
            return answer
        async with self.db.sessions() as session:
            found = await TokenRepository(session).refresh_with_grant(token_hash(token), lock=False)
        if found is None:
            return inactive
        record, grant = found
        if (
            not hmac.compare_digest(grant.client_id, client.client_id)
            or record.used_at is not None
            or record.expires_at <= now
            or grant.revoked_at is not None
        ):
            return inactive
        answer = {
            "active": True,
            "token_type": "refresh_token",
            "scope": grant.scope,
            "client_id": grant.client_id,
            "iss": self.issuer,
            "iat": int(record.created_at.timestamp()),
            "exp": int(record.expires_at.timestamp()),
        }
        if grant.user_number is not None:
            answer["sub"] = self.subjects.subject(client.sector_identifier, grant.user_number)
        return answer

    async def revoke(self, client: ClientLike, token: str | None, hint: str | None = None) -> None:
        """RFC 7009: a refresh token revokes its grant; an access token is marked revoked. Unknown
        tokens, and tokens of other clients, are answered the same (200) and left alone."""
        if not token:
            raise invalid_request("token is required")
        now = self.clock()
        if token.count(".") == 2:
            claims = await self._verified_access_token(token)
            if claims is not None and hmac.compare_digest(str(claims["client_id"]), client.client_id):
                async with self.db.transaction() as session:
                    await TokenRepository(session).revoke_access_token(str(claims["jti"]), now)
            return
        async with self.db.transaction() as session:
            repository = TokenRepository(session)
            found = await repository.refresh_with_grant(token_hash(token), lock=True)
            if found is not None and hmac.compare_digest(found[1].client_id, client.client_id):
                await repository.revoke_grants([found[1].id], now, "revoked-by-client")


__all__ = [
    "AccessTokenView",
    "ApprovedLogin",
    "CibaPoller",
    "ClientLike",
    "DpopInput",
    "TokenService",
    "access_token_hash",
    "bearer_error",
]
