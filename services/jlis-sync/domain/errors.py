"""Why jlis-sync refuses something."""

from tsunagu.errors import BadRequest, Conflict, DomainError, ServiceUnavailable, Unauthenticated


class CrlRejected(DomainError):
    """A CRL that must not be applied (alarmed, never applied)."""

    code = "crl-rejected"
    title = "The CRL was refused"
    status = 422


class InvalidPush(Unauthenticated):
    code = "invalid-push"
    title = "The notification is not signed by J-LIS"


class StalePush(BadRequest):
    code = "stale-push"
    title = "The notification is too old or from the future"


class InvalidJpkiCertificate(BadRequest):
    code = "invalid-jpki-certificate"
    title = "Not a JPKI signing certificate issued by the configured J-LIS CA"


class InvalidBasic4Consent(BadRequest):
    code = "invalid-basic4-consent"
    title = "The consent to the latest-basic-4 service is not valid for this certificate"


class LinkConflict(Conflict):
    code = "jpki-link-conflict"
    title = "This JPKI certificate is linked to another person"


class JlisUnavailable(ServiceUnavailable):
    code = "jlis-unavailable"
    title = "J-LIS did not answer; retry later"


class ResidentUnknown(DomainError):
    code = "resident-unknown"
    title = "No such resident"
    status = 404


class LinkUnknown(DomainError):
    code = "link-unknown"
    title = "No platform user is linked to that JPKI certificate"
    status = 404
