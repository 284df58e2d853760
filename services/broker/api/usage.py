"""Metering: the usage report of a tenant for a month (operator), JSON or CSV."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from tsunagu.auth import ServicePrincipal, require_permission
from tsunagu.broker.api.deps import USAGE_READ, services
from tsunagu.broker.domain.context import BrokerServices
from tsunagu.broker.domain.push_errors import InvalidUsageQuery
from tsunagu.broker.domain.usage import report_csv

router = APIRouter(tags=["metering"])


@router.get("/internal/v1/usage")
async def usage(
    request: Request,
    tenant: str = Query(min_length=1, max_length=64),
    month: str = Query(min_length=7, max_length=7),
    format: str | None = Query(default=None),
    _operator: ServicePrincipal = Depends(require_permission(USAGE_READ)),
    broker: BrokerServices = Depends(services),
) -> Response:
    """``?format=csv`` or ``Accept: text/csv`` for CSV; JSON otherwise."""
    if format not in (None, "csv", "json"):
        raise InvalidUsageQuery("format: csv or json")
    report = await broker.usage.report(tenant, month)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if wants_csv:
        filename = f"usage-{tenant}-{month}.csv"
        return Response(
            report_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(report)
