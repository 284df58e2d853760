"""Why the idp refuses something.

Two families, as the standards ask:
- :class:`OAuthError` — the OAuth 2.0 / OIDC endpoints (token, PAR, CIBA, introspection,
  revocation, registration, userinfo): RFC 6749 §5.2 ``{"error", "error_description"}`` JSON, or
  RFC 6750 ``WWW-Authenticate`` for bearer errors, or — for an authorization request whose
  redirect URI is trusted — a redirect back to the client carrying ``error``, ``state`` and ``iss``.
- :class:`tsunagu.errors.DomainError` subclasses — the admin and wallet APIs: RFC 9457
  problem+json with a stable ``type``.
"""

from __future__ import annotations

from tsunagu.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthenticated


class OAuthError(Exception):
    """An RFC 6749 / OIDC error. ``status`` is the HTTP status when answered directly."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str, *, basic: bool = False) -> OAuthError:
    """RFC 6749 §5.2: 401, and a ``WWW-Authenticate`` challenge when the client used Basic."""
    headers = {"WWW-Authenticate": 'Basic realm="tsunagu"'} if basic else {}
    return OAuthError("invalid_client", description, status=401, headers=headers)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def unauthorized_client(description: str) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def invalid_token(description: str, *, scheme: str = "Bearer") -> OAuthError:
    """RFC 6750 §3.1 (and RFC 9449 §7.1 for DPoP): 401 with the challenge in the header."""
    return OAuthError(
        "invalid_token",
        description,
        status=401,
        headers={"WWW-Authenticate": f'{scheme} error="invalid_token", error_description="{description}"'},
    )


class AuthorizationError(OAuthError):
    """An error of an authorization request, answered by redirect once the redirect URI is known
    to be the client's (RFC 6749 §4.1.2.1); ``redirect_uri`` None → shown on an error page."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        redirect_uri: str | None = None,
        state: str | None = None,
        response_mode: str = "query",
    ) -> None:
        super().__init__(error, description)
        self.redirect_uri = redirect_uri
        self.state = state
        self.response_mode = response_mode


# Admin and wallet APIs (problem+json).


class TenantNotFound(NotFound):
    code = "tenant-not-found"
    title = "No such tenant"


class TenantExists(Conflict):
    code = "tenant-exists"
    title = "A tenant with this id exists"


class ClientNotFound(NotFound):
    code = "client-not-found"
    title = "No such client"


class InvalidClientMetadata(BadRequest):
    code = "invalid-client-metadata"
    title = "The client metadata is not acceptable"


class LoginTransactionNotFound(NotFound):
    code = "login-transaction-not-found"
    title = "No such login transaction (or it has expired)"


class LoginTransactionClosed(Conflict):
    code = "login-transaction-closed"
    title = "The login transaction was already decided or has expired"


class InvalidApproval(BadRequest):
    code = "invalid-approval"
    title = "The wallet's signed approval is malformed or does not match the transaction"


class ApprovalSignatureInvalid(Unauthenticated):
    code = "approval-signature-invalid"
    title = "The approval's signature does not verify with the presented certificate"


class CertificateNotAccepted(Forbidden):
    code = "certificate-not-accepted"
    title = "The certificate is not a valid, unrevoked authentication certificate of our CA"


class ApprovalReplayed(Conflict):
    code = "approval-replayed"
    title = "This signed approval was already used"


class SubjectNotFound(NotFound):
    code = "unknown-subject"
    title = "No person behind this subject for this client"
