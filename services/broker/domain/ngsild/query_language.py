"""The NGSI-LD query language (ETSI GS CIM 009 §4.9), the subset this broker supports::

    Query      = Or
    Or         = And *( "|" And )
    And        = Term *( ";" Term )
    Term       = "(" Or ")" / Path [ Operator Value ]      ; a bare Path: the attribute exists
    Path       = Name [ "." Name ] *( "[" Name "]" )       ; attr, attr.subAttr, attr[member]
    Operator   = "==" / "!=" / "<=" / ">=" / "<" / ">"
    Value      = quoted string / number / true / false / unquoted token (a URI or date-time)

``;`` binds tighter than ``|``. Ordering operators need a number or a string (date-times compare
as ISO 8601 strings). Value lists (``a==1,2``) and ranges (``a==1..5``) are not supported.
"""

from __future__ import annotations

import json
import math
import re

from tsunagu.broker.domain.ngsild.errors import BadRequestData
from tsunagu.broker.store.ngsild import AllOf, AnyOf, Comparison, Filter, Scalar

MAX_QUERY_LENGTH = 2000
MAX_DEPTH = 10
MAX_TERMS = 50
OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
UNQUOTED = re.compile(r"[^\s;|()\"'<>=!][^\s;|()\"']*")


class InvalidQuery(BadRequestData):
    """A ``q`` that is not in the supported language."""


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0
        self.terms = 0

    def fail(self, message: str) -> InvalidQuery:
        return InvalidQuery(f"q: {message} at position {self.at}")

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.at)

    def parse(self) -> Filter:
        node = self.disjunction(0)
        if self.at != len(self.text):
            raise self.fail("unexpected character")
        return node

    def disjunction(self, depth: int) -> Filter:
        parts = [self.conjunction(depth)]
        while self.peek("|"):
            self.at += 1
            parts.append(self.conjunction(depth))
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def conjunction(self, depth: int) -> Filter:
        parts = [self.term(depth)]
        while self.peek(";"):
            self.at += 1
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def term(self, depth: int) -> Filter:
        if self.peek("("):
            if depth >= MAX_DEPTH:
                raise self.fail(f"more than {MAX_DEPTH} nested parentheses")
            self.at += 1
            node = self.disjunction(depth + 1)
            if not self.peek(")"):
                raise self.fail("missing )")
            self.at += 1
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise self.fail(f"more than {MAX_TERMS} comparisons")
        key, members = self.path()
        operator = next((op for op in OPERATORS if self.peek(op)), None)
        if operator is None:
            return Comparison(key, members, "exists")
        self.at += len(operator)
        value = self.value()
        if operator not in ("==", "!=") and (
            isinstance(value, bool) or not isinstance(value, str | int | float)
        ):
            raise self.fail(f"{operator} compares numbers or strings")
        return Comparison(key, members, operator, value)

    def name(self) -> str:
        match = NAME.match(self.text, self.at)
        if match is None:
            raise self.fail("expected an attribute name")
        self.at = match.end()
        return match.group()

    def path(self) -> tuple[str, tuple[str, ...]]:
        key = self.name()
        if self.peek("."):
            self.at += 1
            key = f"{key}.{self.name()}"
        members = []
        while self.peek("["):
            self.at += 1
            members.append(self.name())
            if not self.peek("]"):
                raise self.fail("missing ]")
            self.at += 1
        return key, tuple(members)

    def value(self) -> Scalar:
        quoted = QUOTED.match(self.text, self.at)
        if quoted is not None:
            try:
                text: str = json.loads(quoted.group())
            except ValueError:
                raise self.fail("a bad escape in a quoted string") from None
            self.at = quoted.end()
            return text
        token = UNQUOTED.match(self.text, self.at)
        if token is None:
            raise self.fail("expected a value")
        self.at = token.end()
        word = token.group()
        if word in ("true", "false"):
            return word == "true"
        if NUMBER.match(word):
            number = float(word)
            if not math.isfinite(number):
                raise self.fail("a number out of range")
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        if ".." in word or "," in word:
            raise self.fail("value lists and ranges are not supported")
        return word


def parse_q(text: str) -> Filter:
    """Parse a ``q`` expression into the filter the store compiles; :class:`InvalidQuery` (400
    BadRequestData) names the position of the first error."""
    if not text or len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"q: 1 to {MAX_QUERY_LENGTH} characters")
    return _Parser(text).parse()
