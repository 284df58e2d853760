"""Non-personal data served NGSI-LD style (a subset of ETSI GS CIM 009): entities in datasets
with per-dataset access, the ``q`` language, geo-queries, subscriptions and notifications."""

from tsunagu.broker.domain.ngsild.context_broker import MAX_LIMIT, ContextBroker, EntityQuery
from tsunagu.broker.domain.ngsild.datasets import READ_SCOPE, WRITE_SCOPE, Datasets
from tsunagu.broker.domain.ngsild.errors import (
    AlreadyExists,
    BadRequestData,
    InvalidRequest,
    NgsiLdError,
    OperationNotSupported,
    ResourceNotFound,
    TooManyResults,
)
from tsunagu.broker.domain.ngsild.geoquery import GeoQuery, parse_geoquery
from tsunagu.broker.domain.ngsild.notifications import CORE_CONTEXT, NotificationSender
from tsunagu.broker.domain.ngsild.query_language import parse_q
from tsunagu.broker.domain.ngsild.subscriptions import Subscriptions, check_id_pattern

__all__ = [
    "CORE_CONTEXT",
    "MAX_LIMIT",
    "READ_SCOPE",
    "WRITE_SCOPE",
    "AlreadyExists",
    "BadRequestData",
    "ContextBroker",
    "Datasets",
    "EntityQuery",
    "GeoQuery",
    "InvalidRequest",
    "NgsiLdError",
    "NotificationSender",
    "OperationNotSupported",
    "ResourceNotFound",
    "Subscriptions",
    "TooManyResults",
    "check_id_pattern",
    "parse_geoquery",
    "parse_q",
]
