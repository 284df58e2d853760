"""Geo-queries (ETSI GS CIM 009 §4.10): ``georel``, ``geometry``, ``coordinates`` and
``geoproperty``, on the entities' ``location`` when it is a GeoJSON Point.

Supported: ``near;maxDistance==<m>`` / ``near;minDistance==<m>`` (geometry Point), ``equals``
(Point), ``within`` and ``disjoint`` (Polygon), ``intersects`` (Point: same position; Polygon:
inside it). Distances are great-circle (haversine, mean Earth radius) in metres.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from tsunagu.broker.domain.ngsild.entities import LOCATION, point, polygon_rings
from tsunagu.broker.domain.ngsild.errors import BadRequestData, OperationNotSupported
from tsunagu.broker.store.ngsild import AtPoint, GeoFilter, InPolygon, Near

DISTANCE = re.compile(r"^(maxDistance|minDistance)==([0-9]+(\.[0-9]+)?)$")
MAX_COORDINATES = 20_000


@dataclass(frozen=True)
class GeoQuery:
    georel: str | None
    geometry: str | None
    coordinates: Any  # the JSON text (URL parameter) or the parsed value (subscription geoQ)
    geoproperty: str | None = None


def _coordinates(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if len(raw) > MAX_COORDINATES:
        raise BadRequestData("coordinates: too long")
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequestData("coordinates: a JSON array, e.g. [139.7,35.6]") from None


def _near(modifiers: list[str], lat: float, lon: float) -> Near:
    limits: dict[str, float] = {}
    for modifier in modifiers:
        match = DISTANCE.match(modifier)
        if match is None or match.group(1) in limits:
            raise BadRequestData("georel: near;maxDistance==<metres> or near;minDistance==<metres>")
        limits[match.group(1)] = float(match.group(2))
    if not limits or not all(math.isfinite(v) for v in limits.values()):
        raise BadRequestData("georel: near needs maxDistance or minDistance")
    return Near(lat, lon, limits.get("maxDistance"), limits.get("minDistance"))


def parse_geoquery(query: GeoQuery) -> GeoFilter | None:
    """The geo filter of a query or subscription, or None when it has none; a partial or
    unsupported geo-query is a 400 (BadRequestData) or 422 (OperationNotSupported)."""
    given = [query.georel, query.geometry, query.coordinates]
    if all(part is None for part in given):
        return None
    if any(part is None for part in given):
        raise BadRequestData("a geo-query needs georel, geometry and coordinates")
    if query.geoproperty not in (None, LOCATION):
        raise OperationNotSupported("geoproperty: only location is indexed")
    relation, *modifiers = str(query.georel).split(";")
    coordinates = _coordinates(query.coordinates)
    if query.geometry == "Point":
        lon, lat = point(coordinates, "coordinates")
        if relation == "near":
            return _near(modifiers, lat, lon)
        if relation in ("equals", "intersects") and not modifiers:
            return AtPoint(lat, lon)
    elif query.geometry == "Polygon":
        rings = polygon_rings(coordinates, "coordinates")
        if relation in ("within", "intersects") and not modifiers:
            return InPolygon(rings)
        if relation == "disjoint" and not modifiers:
            return InPolygon(rings, negate=True)
    else:
        raise OperationNotSupported("geometry: Point or Polygon")
    if relation in ("near", "within", "contains", "intersects", "equals", "disjoint", "overlaps"):
        raise OperationNotSupported(f"georel {relation} with geometry {query.geometry}")
    raise BadRequestData("georel: near, within, intersects, equals or disjoint")
