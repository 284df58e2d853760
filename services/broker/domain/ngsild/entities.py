"""NGSI-LD entities (ETSI GS CIM 009 §4.5, §5.2.4): validation of the normalized form, the flat
value map ``q`` runs on, and the two representations served (normalized, ``keyValues``).

Supported subset: ``id`` an absolute URI; ``type`` one term; attributes named by short terms
(letters, digits, ``_``) of type ``Property`` (``value``), ``Relationship`` (``object``, a URI)
or ``GeoProperty`` (``value``, a GeoJSON geometry), each with optional ``observedAt``,
``unitCode`` and sub-attributes (one level). Terms are kept verbatim: no JSON-LD expansion.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tsunagu.broker.domain.ngsild.errors import BadRequestData, OperationNotSupported

MAX_ENTITY_BYTES = 65_536
MAX_ATTRIBUTES = 100
ENTITY_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+$")
TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:/#.-]{0,255}$")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
ATTRIBUTE_TYPES = ("Property", "Relationship", "GeoProperty")
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
ATTRIBUTE_MEMBERS = {"type", "value", "object", "observedAt", "unitCode"}
SYSTEM_MEMBERS = ("createdAt", "modifiedAt")
UNSUPPORTED_MEMBERS = ("datasetId", "lang", "languageMap", "vocab", "json", "objectList", "valueList")
ENTITY_RESERVED = ("id", "type", "@context", "scope")
LOCATION = "location"


def check_entity_id(entity_id: Any) -> str:
    """The entity id if it is an absolute URI of at most 256 characters."""
    if not isinstance(entity_id, str) or len(entity_id) > 256 or not ENTITY_ID.match(entity_id):
        raise BadRequestData("id: an absolute URI (e.g. urn:ngsi-ld:Building:1), at most 256 characters")
    return entity_id


def check_type(entity_type: Any) -> str:
    if isinstance(entity_type, list):
        raise OperationNotSupported("type: one type per entity")
    if not isinstance(entity_type, str) or not TYPE_NAME.match(entity_type):
        raise BadRequestData("type: a term (letters, digits, _ : / # . -), at most 256 characters")
    return entity_type


def check_attribute_name(name: str) -> str:
    if not ATTRIBUTE_NAME.match(name):
        raise BadRequestData(f"attribute {name[:64]!r}: a term of letters, digits and _ (at most 64)")
    return name


def _position(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list)
        or len(value) not in (2, 3)
        or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in value)
    ):
        raise BadRequestData(f"{where}: a position is [longitude, latitude]")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90) or not (math.isfinite(lon) and math.isfinite(lat)):
        raise BadRequestData(f"{where}: longitude within ±180, latitude within ±90")
    return lon, lat


def polygon_rings(coordinates: Any, where: str) -> tuple[tuple[tuple[float, float], ...], ...]:
    """A GeoJSON Polygon's rings (RFC 7946 §3.1.6): each closed, at least four positions."""
    if not isinstance(coordinates, list) or not 1 <= len(coordinates) <= 10:
        raise BadRequestData(f"{where}: a Polygon is a list of 1 to 10 linear rings")
    rings = []
    for ring in coordinates:
        if not isinstance(ring, list) or not 4 <= len(ring) <= 200:
            raise BadRequestData(f"{where}: a linear ring has 4 to 200 positions")
        positions = tuple(_position(p, where) for p in ring)
        if positions[0] != positions[-1]:
            raise BadRequestData(f"{where}: a linear ring ends where it starts")
        rings.append(positions)
    return tuple(rings)


def point(coordinates: Any, where: str) -> tuple[float, float]:
    """A GeoJSON Point's (longitude, latitude)."""
    return _position(coordinates, where)


def _check_geometry(value: Any, where: str) -> None:
    if not isinstance(value, dict) or value.get("type") not in GEOMETRY_TYPES or "coordinates" not in value:
        raise BadRequestData(f"{where}: a GeoJSON geometry ({', '.join(GEOMETRY_TYPES)})")
    coordinates = value["coordinates"]
    if value["type"] == "Point":
        point(coordinates, where)
    elif value["type"] == "Polygon":
        polygon_rings(coordinates, where)
    elif not isinstance(coordinates, list) or not coordinates:
        raise BadRequestData(f"{where}: coordinates must be a non-empty list")


def _check_time(value: Any, where: str) -> None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BadRequestData(f"{where}: an ISO 8601 date-time with a time zone (e.g. 2026-01-01T00:00:00Z)")


def _members(name: str, attribute: dict[str, Any], depth: int) -> dict[str, Any]:
    where = f"attribute {name}"
    checked: dict[str, Any] = {}
    for member, value in attribute.items():
        if member in SYSTEM_MEMBERS:
            continue  # system-generated: ignored on input
        if member in UNSUPPORTED_MEMBERS:
            raise OperationNotSupported(f"{where}: {member} is not supported")
        if member in ATTRIBUTE_MEMBERS:
            checked[member] = value
        elif depth == 0:
            check_attribute_name(member)
            checked[member] = _check_attribute(f"{name}.{member}", value, depth=1)
        else:
            raise BadRequestData(f"{where}: sub-attributes nest one level only")
    return checked


def _check_attribute(name: str, attribute: Any, *, depth: int) -> dict[str, Any]:
    where = f"attribute {name}"
    if isinstance(attribute, list):
        raise OperationNotSupported(f"{where}: multi-attributes (datasetId) are not supported")
    if not isinstance(attribute, dict):
        raise BadRequestData(f"{where}: an object with type and value (or object)")
    kind = attribute.get("type")
    if kind not in ATTRIBUTE_TYPES:
        raise BadRequestData(f"{where}: type is one of {', '.join(ATTRIBUTE_TYPES)}")
    checked = _members(name, attribute, depth)
    if kind == "Relationship":
        if "value" in checked or not isinstance(checked.get("object"), str):
            raise BadRequestData(f"{where}: a Relationship has an object (a URI) and no value")
        check_entity_id(checked["object"])
    elif "object" in checked or checked.get("value") is None:
        raise BadRequestData(f"{where}: a {kind} has a non-null value and no object")
    elif kind == "GeoProperty":
        _check_geometry(checked["value"], where)
    if "observedAt" in checked:
        _check_time(checked["observedAt"], f"{where}.observedAt")
    if "unitCode" in checked and not isinstance(checked["unitCode"], str):
        raise BadRequestData(f"{where}: unitCode is a string")
    return checked


def check_attributes(document: dict[str, Any], *, skip: tuple[str, ...] = ENTITY_RESERVED) -> dict[str, Any]:
    """The attributes of an entity or of an update fragment, validated (system members dropped)."""
    attributes = {}
    for name, attribute in document.items():
        if name in skip or name in SYSTEM_MEMBERS:
            continue
        check_attribute_name(name)
        attributes[name] = _check_attribute(name, attribute, depth=0)
    if len(attributes) > MAX_ATTRIBUTES:
        raise BadRequestData(f"at most {MAX_ATTRIBUTES} attributes")
    return attributes


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    attrs: dict[str, Any]

    @classmethod
    def from_document(cls, document: Any) -> Entity:
        """Validate a normalized entity (create): id, type and attributes."""
        if not isinstance(document, dict):
            raise BadRequestData("the entity is a JSON object")
        return cls(
            id=check_entity_id(document.get("id")),
            type=check_type(document.get("type")),
            attrs=check_attributes(document),
        )

    def query_values(self) -> dict[str, Any]:
        """``attr`` → its value (or object); ``attr.sub`` → the sub-attribute's value."""
        return flat_values(self.attrs)

    def location(self) -> tuple[float, float] | None:
        """(latitude, longitude) of a Point ``location``, the one geo-queries look at."""
        return location_of(self.attrs)


def _value(attribute: dict[str, Any]) -> Any:
    return attribute["object"] if attribute.get("type") == "Relationship" else attribute.get("value")


def flat_values(attrs: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, attribute in attrs.items():
        values[name] = _value(attribute)
        for member, sub in attribute.items():
            if isinstance(sub, dict) and member not in ATTRIBUTE_MEMBERS:
                values[f"{name}.{member}"] = _value(sub)
    return values


def location_of(attrs: dict[str, Any]) -> tuple[float, float] | None:
    location = attrs.get(LOCATION)
    if not isinstance(location, dict) or location.get("type") != "GeoProperty":
        return None
    geometry = location["value"]
    if geometry.get("type") != "Point":
        return None
    lon, lat = point(geometry["coordinates"], LOCATION)
    return lat, lon


def entity_size(document: Any) -> int:
    return len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


def render(
    entity_id: str,
    entity_type: str,
    attrs: dict[str, Any],
    *,
    pick: frozenset[str] | None = None,
    key_values: bool = False,
) -> dict[str, Any]:
    """The entity as served: normalized, or ``keyValues`` (attribute → value/object); ``pick``
    keeps only those attributes (``attrs=``)."""
    shown = {name: a for name, a in attrs.items() if pick is None or name in pick}
    if key_values:
        return {"id": entity_id, "type": entity_type, **{name: _value(a) for name, a in shown.items()}}
    return {"id": entity_id, "type": entity_type, **shown}
