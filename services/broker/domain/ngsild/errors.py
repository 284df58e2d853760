"""NGSI-LD errors (ETSI GS CIM 009 §5.5.2, Table 5.5.2-1): problem details whose ``type`` is one of
the spec's URIs under ``https://uri.etsi.org/ngsi-ld/errors/`` — also valid RFC 9457 problems.

Authentication and quota refusals keep the broker's own types (``urn:tsunagu:problem:…``): the
spec defines none for them.
"""

from __future__ import annotations

from typing import ClassVar

from tsunagu.errors import DomainError, Problem

NGSI_LD_ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(DomainError):
    """An error rendered with an NGSI-LD problem ``type`` (``code`` is the spec's name)."""

    code: ClassVar[str] = "InternalError"

    def to_problem(self, instance: str | None = None) -> Problem:
        problem = super().to_problem(instance)
        problem.type = NGSI_LD_ERRORS + self.code
        return problem


class BadRequestData(NgsiLdError):
    code = "BadRequestData"
    title = "The request includes input data which does not meet the requirements of the operation"
    status = 400


class InvalidRequest(NgsiLdError):
    code = "InvalidRequest"
    title = "The request associated to the operation is syntactically invalid"
    status = 400


class ResourceNotFound(NgsiLdError):
    code = "ResourceNotFound"
    title = "The referred resource has not been found"
    status = 404


class AlreadyExists(NgsiLdError):
    code = "AlreadyExists"
    title = "The referred element already exists"
    status = 409


class OperationNotSupported(NgsiLdError):
    code = "OperationNotSupported"
    title = "The operation is not supported by this broker (see the broker's README for the subset)"
    status = 422


class TooManyResults(NgsiLdError):
    code = "TooManyResults"
    title = "The query result would be too large; page with limit and offset"
    status = 403
