"""Why the broker refuses or fails an exchange: one typed error per reason, each a stable problem
``type`` the party can act on. A refusal happens before anything is forwarded."""

from tsunagu.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
)


class InvalidToken(Unauthenticated):
    """RFC 6750 §3.1: the access token is missing, malformed, expired or not for the broker."""

    code = "invalid-token"
    title = "The access token is missing, invalid, expired or not for this resource"

    def __init__(self, detail: str) -> None:
        error = 'Bearer realm="tsunagu-broker", error="invalid_token"'
        super().__init__(detail, headers={"WWW-Authenticate": error})


class InsufficientScope(Forbidden):
    code = "insufficient-scope"
    title = "The access token lacks the scope this call needs"

    def __init__(self, scope: str) -> None:
        header = f'Bearer realm="tsunagu-broker", error="insufficient_scope", scope="{scope}"'
        super().__init__(f"needs scope {scope}", headers={"WWW-Authenticate": header})


class UnknownParty(Forbidden):
    code = "unknown-party"
    title = "The calling client is not an active party of the platform"


class QuotaExceeded(TooManyRequests):
    code = "quota-exceeded"
    title = "This client's request budget is spent; retry later"


class UnknownSubject(NotFound):
    code = "unknown-subject"
    title = "No citizen behind this subject for this party"


class UnknownItem(BadRequest):
    code = "unknown-item"
    title = "An item is not in the catalog"


class InvalidExchange(BadRequest):
    code = "invalid-exchange"
    title = "The exchange request is malformed"


class ConsentRequired(Forbidden):
    """Nothing asked is allowed: the RP can start a consent request for these items."""

    code = "consent-required"
    title = "The citizen has not allowed these items for this recipient and purpose"


class NoProvider(Conflict):
    code = "no-provider"
    title = "No provider is registered for an item"


class ProviderTimeout(DomainError):
    code = "provider-timeout"
    title = "The provider did not answer in time; the request can be retried"
    status = 504


class ProviderFailed(DomainError):
    code = "provider-failed"
    title = "The provider answered with an error or an unreadable body"
    status = 502


class ProviderDataInvalid(DomainError):
    code = "provider-data-invalid"
    title = "The provider's data does not match the item's schema; nothing was forwarded"
    status = 502


class ConsentUnavailable(ServiceUnavailable):
    code = "consent-unavailable"
    title = "Consent cannot be checked now; nothing was forwarded"


class CatalogConflict(Conflict):
    code = "catalog-conflict"
    title = "The item or dataset belongs to another tenant"


class InvalidCatalogEntry(BadRequest):
    code = "invalid-catalog-entry"
    title = "The catalog entry is malformed (labels, sensitivity, schema or providers)"
