"""The jlis-sync domain service for a request."""

from fastapi import Request

from tsunagu.errors import ServiceUnavailable
from tsunagu.jlis_sync.domain.service import JlisSyncService
from tsunagu.service import get_runtime

LINK = "jlis:link"
STATUS = "jlis:status"
READ_RESIDENT = "jlis:resident:read"
ADMIN = "jlis:admin"


class JlisNotConfigured(ServiceUnavailable):
    code = "jlis-not-configured"
    title = "jlis-sync has no J-LIS trust anchors configured"


async def jlis_service(request: Request) -> JlisSyncService:
    service = get_runtime(request).resources
    if not isinstance(service, JlisSyncService):
        raise JlisNotConfigured("set TSUNAGU_JLIS_SYNC_JLIS__ROOT_CA_FILE and __SIGNING_CA_FILE")
    return service
