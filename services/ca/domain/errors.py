"""Why the CA refuses something: one typed error per reason, each a stable problem ``type``."""

from tsunagu.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthenticated,
)


class CaNotInitialised(ServiceUnavailable):
    code = "ca-not-initialised"
    title = "The CA hierarchy has not been created yet"


class HierarchyExists(Conflict):
    code = "hierarchy-exists"
    title = "The CA hierarchy already exists"


class InvalidCaKey(BadRequest):
    code = "invalid-ca-key"
    title = "The signer key cannot serve as this CA key"


class EnrollmentNotFound(NotFound):
    code = "enrollment-not-found"
    title = "No such enrollment"


class ChallengeExpired(BadRequest):
    code = "challenge-expired"
    title = "The enrollment challenge has expired; start again"


class ChallengeReused(Conflict):
    code = "challenge-reused"
    title = "The enrollment challenge was already answered"


class WrongEnrollmentState(Conflict):
    code = "wrong-enrollment-state"
    title = "The enrollment is not at the step this request belongs to"


class InvalidJpkiCertificate(BadRequest):
    code = "invalid-jpki-certificate"
    title = "The JPKI certificate is malformed or not a JPKI signing certificate"


class UnknownJpkiIssuer(BadRequest):
    code = "unknown-jpki-issuer"
    title = "The JPKI certificate does not chain to the configured J-LIS certificates"


class JpkiCertificateExpired(BadRequest):
    code = "jpki-certificate-expired"
    title = "The JPKI certificate is not valid now"


class JpkiCertificateRevoked(Forbidden):
    code = "jpki-certificate-revoked"
    title = "J-LIS reports the card's certificate as revoked"


class JpkiStatusUnknown(Forbidden):
    code = "jpki-status-unknown"
    title = "J-LIS does not know the card's certificate"


class InvalidJpkiSignature(BadRequest):
    code = "invalid-jpki-signature"
    title = "The challenge signature does not verify with the JPKI certificate"


class EnrollmentConflict(Conflict):
    code = "enrollment-conflict"
    title = "Another enrollment of the same card is in progress; retry"


class PersonDeceased(Forbidden):
    code = "person-deceased"
    title = "The person is recorded as deceased"


class InvalidCsr(BadRequest):
    code = "invalid-csr"
    title = "The certificate signing request is malformed"


class CsrSignatureInvalid(BadRequest):
    code = "csr-signature-invalid"
    title = "The CSR's signature does not verify (no proof of possession)"


class KeyPolicyViolation(BadRequest):
    code = "key-policy-violation"
    title = "The key type or size is not accepted"


class PublicKeyReused(Conflict):
    code = "public-key-reused"
    title = "This public key is already certified"


class InvalidSignedRequest(Unauthenticated):
    code = "invalid-signed-request"
    title = "The signed request does not verify with a certificate of this CA"


class SignedRequestStale(BadRequest):
    code = "signed-request-stale"
    title = "The signed request is too old or from the future"


class SignedRequestReplayed(Conflict):
    code = "signed-request-replayed"
    title = "The signed request was already used"


class CertificateNotUsable(Forbidden):
    code = "certificate-not-usable"
    title = "The certificate that signed the request is revoked, expired or of the wrong kind"


class CertificateNotFound(NotFound):
    code = "certificate-not-found"
    title = "No such certificate"


class NotYourCertificate(Forbidden):
    code = "not-your-certificate"
    title = "The certificate belongs to someone else"


class AlreadyRevoked(Conflict):
    code = "already-revoked"
    title = "The certificate is already revoked"


class UpstreamUnavailable(ServiceUnavailable):
    code = "upstream-unavailable"
    title = "A platform service the CA depends on is unavailable; retry later"


class IssuanceFailed(DomainError):
    code = "issuance-failed"
    title = "The certificate could not be signed"
    status = 502


class InvalidBasic4Consent(BadRequest):
    code = "invalid-basic4-consent"
    title = "The consent to the latest-basic-4 service is not signed by this card"
