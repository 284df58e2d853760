"""The citizen's consent to the latest-basic-4 service, signed with the card at enrollment."""

from __future__ import annotations

from cryptography import x509

from tsunagu.jlis_sync.domain.errors import InvalidBasic4Consent
from tsunagu.jlis_sync.domain.jws_x5c import X5cJwsInvalid, verify_x5c_jws

PURPOSE = "jlis-basic4"


def check_basic4_consent(token: str, certificate: x509.Certificate, operator_id: str) -> None:
    """The JWS must be signed by ``certificate``'s key, carry it as x5c, and name it and us."""
    try:
        verified = verify_x5c_jws(token)
    except X5cJwsInvalid:
        raise InvalidBasic4Consent("the consent does not verify") from None
    if verified.certificate != certificate:
        raise InvalidBasic4Consent("the consent must be signed with this card's signing certificate")
    claims = verified.claims
    if claims.get("purpose") != PURPOSE or claims.get("operator") != operator_id:
        raise InvalidBasic4Consent("the consent is for another purpose or operator")
    if str(claims.get("serial", "")).lower() != format(certificate.serial_number, "x"):
        raise InvalidBasic4Consent("the consent names another certificate")
