"""Why consent refuses something: one typed error per reason, each a stable problem ``type``.

Every refusal of a decision happens before anything is stored (the checks run first, the write is
one transaction), so each of these means "nothing changed".
"""

from tsunagu.errors import BadRequest, Conflict, DomainError, Forbidden, NotFound, ServiceUnavailable


class UnprocessableDecision(DomainError):
    status = 422


# -- the JWS and its JSON ------------------------------------------------------------------------
class MalformedJws(BadRequest):
    code = "malformed-jws"
    title = "The signed statement is not a well-formed compact JWS with an x5c certificate chain"


class MalformedStatement(BadRequest):
    code = "malformed-statement"
    title = "The signed statement's JSON does not follow the decision statement schema"


class NotCanonical(BadRequest):
    code = "statement-not-canonical"
    title = "The JWS payload is not the RFC 8785 canonical JSON of the statement"


class SignatureInvalid(BadRequest):
    code = "signature-invalid"
    title = "The signature does not verify with the certificate's key"


# -- the certificate -----------------------------------------------------------------------------
class CertificateUnknown(Forbidden):
    code = "certificate-unknown"
    title = "The certificate was not issued by the platform CA"


class CertificateNotGood(Forbidden):
    code = "certificate-not-good"
    title = "The certificate was not good (revoked, expired or not yet valid) when it signed"


class CertificateWrongKind(Forbidden):
    code = "certificate-wrong-kind"
    title = "This statement must be signed with another kind of certificate"


class ChainMismatch(BadRequest):
    code = "chain-mismatch"
    title = "The x5c chain is not the CA's chain for this certificate"


class NotYourRequest(Forbidden):
    code = "not-your-request"
    title = "The signing certificate belongs to another person than the one the request is for"


class NotYourDecision(Forbidden):
    code = "not-your-decision"
    title = "The decision to supersede belongs to another person"


# -- freshness and replay ------------------------------------------------------------------------
class StaleSignature(BadRequest):
    code = "stale-signature"
    title = "The signing time is too old or in the future"


class NonceReplayed(Conflict):
    code = "nonce-replayed"
    title = "This nonce was already used in a recorded decision"


class RequestReplayed(Conflict):
    code = "request-replayed"
    title = "This signed request was already used"


# -- what the statement says ---------------------------------------------------------------------
class UnknownItem(UnprocessableDecision):
    code = "unknown-item"
    title = "A data item is not in the catalog"


class UnknownRecipient(UnprocessableDecision):
    code = "unknown-recipient"
    title = "The recipient is not registered"


class ItemsNotRequested(UnprocessableDecision):
    code = "items-not-requested"
    title = "The statement decides items the request did not ask for"


class ItemsMissing(UnprocessableDecision):
    code = "items-missing"
    title = "The statement leaves requested items undecided (every item needs an explicit allow or deny)"


class StatementMismatch(UnprocessableDecision):
    code = "statement-mismatch"
    title = "The statement does not match the request it answers (recipient, purpose, validity or notice)"


class InvalidWithdrawal(UnprocessableDecision):
    code = "invalid-withdrawal"
    title = "A withdrawal must supersede an in-force decision of the same recipient and deny all its items"


class InvalidConsentRequest(UnprocessableDecision):
    code = "invalid-consent-request"
    title = "The consent request is not acceptable"


# -- state ---------------------------------------------------------------------------------------
class ConsentRequestNotFound(NotFound):
    code = "consent-request-not-found"
    title = "No such consent request"


class DecisionNotFound(NotFound):
    code = "decision-not-found"
    title = "No such decision"


class RequestNotPending(Conflict):
    code = "request-not-pending"
    title = "The consent request was already answered or has expired"


class PreviousMismatch(Conflict):
    code = "previous-mismatch"
    title = "The statement's previous-decision hash is not the hash of the latest decision for this recipient"


class AlreadySuperseded(Conflict):
    code = "already-superseded"
    title = "The decision was already superseded or withdrawn"


class ReceiptUnavailable(ServiceUnavailable):
    code = "receipt-unavailable"
    title = "The platform could not countersign the receipt; nothing was recorded, try again"


class CaUnavailable(ServiceUnavailable):
    code = "ca-unavailable"
    title = "The CA could not be asked about the certificate; nothing was recorded, try again"


class ExchangeLogUnavailable(ServiceUnavailable):
    code = "exchange-log-unavailable"
    title = "The broker, which keeps the exchange log, could not be asked; try again"


class InvalidQuery(BadRequest):
    code = "invalid-query"
    title = "The effective-consent query is malformed"
