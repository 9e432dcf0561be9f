"""Bounds on what a request may carry, shared by the pages and the JSON API: ids that fit a database
key, JSON that is neither nested without end nor holds numbers no field can store, and API input that
names only the fields it declares. Anything outside these bounds is the client's mistake (400), never
an exception deep in the database driver or the parser (500)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from django import forms
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Every primary key is a signed 64-bit integer (BigAutoField); a larger id names nothing and would
# overflow the driver (SQLite: OverflowError, PostgreSQL: DataError).
ID_MAX = 2**63 - 1
# Our deepest body is a geometry inside a region ({"geometry": {"points": [[x, y]]}}): 4 levels.
JSON_MAX_DEPTH = 32
# Integers beyond 64 bits are no coordinate, id or version of ours; 10**400 would overflow a float.
JSON_INT_MAX_DIGITS = 19


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_INT_MAX_DIGITS:
        raise ValueError("a number in the body is out of range")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number in the body is out of range")
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _depth_within(value, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` containers deep; walked with a stack, not recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def json_loads_bounded(text: str | bytes):
    """``json.loads`` for text from a client: raises ``ValueError`` for malformed JSON, NaN or
    Infinity, numbers too large for a 64-bit integer or a float, and nesting deeper than
    ``JSON_MAX_DEPTH`` (so a body of 100,000 brackets is refused, not a ``RecursionError``)."""
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_refuse_constant)
    except RecursionError as error:
        raise ValueError("the JSON is nested too deeply") from error
    if not _depth_within(value, JSON_MAX_DEPTH):
        raise ValueError(f"the JSON is nested more than {JSON_MAX_DEPTH} levels deep")
    return value


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with ``json_loads_bounded``'s limits."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return json_loads_bounded(stream.read().decode(encoding))
        except (ValueError, UnicodeDecodeError) as error:
            raise ParseError(f"JSON parse error - {error}") from error


class StrictInput(serializers.Serializer):
    """An input serializer that refuses keys it does not declare (a misspelt ``lable`` is an error the
    client hears about, not a change silently dropped)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def id_field(**kwargs) -> serializers.IntegerField:
    """An id in API input: a positive integer that fits a database key."""
    return serializers.IntegerField(min_value=1, max_value=ID_MAX, **kwargs)


class IdFormField(forms.IntegerField):
    """An id in a page's query or form: ASCII or Unicode decimal digits only (``²`` is refused, though
    ``str.isdigit`` accepts it), at most ``ID_MAX``."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(min_value=1, max_value=ID_MAX, **kwargs)


def id_or_none(value) -> int | None:
    """``value`` as an id, or ``None`` when it is empty or not an id (for filters that are simply
    dropped when unusable)."""
    try:
        return IdFormField().clean(value)
    except forms.ValidationError:
        return None
