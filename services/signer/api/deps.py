"""The signer's domain service for a request (built once per app in ``app.py``)."""

from fastapi import Request

from tsunagu.errors import ServiceUnavailable
from tsunagu.service import get_runtime
from tsunagu.signer.domain.service import SignerService

SIGN = "signer:sign"
READ_KEYS = "signer:keys:read"
ADMIN = "signer:admin"


class HsmNotConfigured(ServiceUnavailable):
    code = "hsm-not-configured"
    title = "The signer has no HSM configured"


async def signer_service(request: Request) -> SignerService:
    service = get_runtime(request).resources
    if not isinstance(service, SignerService):
        raise HsmNotConfigured("set TSUNAGU_SIGNER_PKCS11__MODULE_PATH, __TOKEN_LABEL and __USER_PIN(_FILE)")
    return service
