"""Decode and validate input events (msgspec, one pass) and encode output events (orjson)."""

from __future__ import annotations

import json
import math
import pathlib
import re
from datetime import datetime
from functools import cache
from typing import Any, Final

import msgspec

from schemas.models import INPUT_MODELS, MAX_YEAR, MIN_YEAR, InputEvent, Purchase

REASONS: Final = (
    "invalid_json",
    "wrong_type",
    "schema_violation",
    "unknown_currency",
    "oversized",
    "key_mismatch",
    "unknown_topic",
    "no_points_rate",
    "provider_rejected",
    "provider_unavailable",
    "out_of_range",
    "processing_error",
)
"""The dead-letter reasons this package produces (consumers must accept others too)."""

INPUT_TOPICS: Final = ("purchases", "complaints", "referrals", "survey-responses")
"""Input topics by base name (without any deployment prefix)."""

CONTROL_TOPICS: Final = (
    "fraud-decisions",
    "referral-commands",
    "gift-card-orders",
    "account-commands",
)
"""Topics workers consume that are not upstream business inputs: operators' review decisions,
referral steps one worker sends to the partition that owns another customer, granted gift
cards waiting for the provider (both internal), and operators' account commands (manual
adjustments and erasures, keyed by customer id like purchases)."""

FULFILMENT_TOPICS: Final = ("gift-card-orders",)
"""Control topics consumed by their own agent, so that a slow provider never holds the ingest
agent's batches."""

OUTPUT_TOPICS: Final = (
    "rewards-issued",
    "fraud-alerts",
    "dead-letter",
    "points-ledger",
    "points-anomalies",
    "referral-rewards",
    "compensation-decisions",
    "tier-changes",
    "points-expiry-warnings",
    "erasures",
)
"""Output topics by base name."""

SCHEMA_DIR: Final = pathlib.Path(__file__).resolve().parent / "v1"
"""The published v1 JSON Schema files, `<topic>.schema.json`, and `examples/`."""

MAX_DETAIL_CHARS: Final = 500
MAX_DEPTH: Final = 32
"""The deepest JSON nesting an input record may have (the v1 models need 3 levels): deeper
records are dead-lettered as `schema_violation` instead of exhausting a parser's recursion."""
_TOO_DEEP: Final = f"JSON nested deeper than {MAX_DEPTH} levels"


class DecodeError(ValueError):
    """A record that cannot become an input event; `reason` is one of REASONS (or a later one)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, str]]:
        return (DecodeError, (self.reason, self.detail))


def schema_path(topic: str) -> pathlib.Path:
    """The JSON Schema file of `topic` (a base name such as `purchases`)."""
    if topic not in INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS:
        raise KeyError(f"no schema for topic {topic!r}")
    return SCHEMA_DIR / f"{topic}.schema.json"


@cache
def _load_schema_text(topic: str) -> str:
    return schema_path(topic).read_text(encoding="utf-8")


def load_schema(topic: str) -> dict[str, Any]:
    """The parsed JSON Schema of `topic` (a fresh copy: callers may modify it)."""
    schema: dict[str, Any] = json.loads(_load_schema_text(topic))
    return schema


def _load_currencies() -> frozenset[str]:
    """The active ISO 4217 codes, read from the purchases schema: the one source of truth."""
    codes = load_schema("purchases")["$defs"]["currency"]["enum"]
    return frozenset(str(code) for code in codes)


CURRENCIES: Final = _load_currencies()
"""Active ISO 4217 alphabetic codes accepted in `currency` fields."""


def _truncate(message: str) -> str:
    return message if len(message) <= MAX_DETAIL_CHARS else message[: MAX_DETAIL_CHARS - 3] + "..."


def _validation_reason(message: str) -> str:
    """`wrong_type` for a JSON type mismatch ("Expected `int`, got `str`"), else a violation.

    msgspec words its constraint failures "Expected `int` >= 0" and the like, so only the
    ", got `" form names a wrong JSON type.
    """
    if message.startswith("Expected `") and "`, got `" in message:
        return "wrong_type"
    return "schema_violation"


class Codec:
    """Turns raw input records into typed events, or raises DecodeError with a reason."""

    __slots__ = ("_decoders", "_timestamps", "max_event_bytes")

    def __init__(self, max_event_bytes: int = 65536) -> None:
        self.max_event_bytes = max_event_bytes
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {
            topic: msgspec.json.Decoder(model) for topic, model in INPUT_MODELS.items()
        }
        self._timestamps = {
            topic: _timestamp_fields(model) for topic, model in INPUT_MODELS.items()
        }

    def decode(self, topic: str, raw: bytes) -> InputEvent:
        """Decode and validate one record of input topic `topic` (base name)."""
        if len(raw) > self.max_event_bytes:
            raise DecodeError(
                "oversized", f"record is {len(raw)} bytes; the limit is {self.max_event_bytes}"
            )
        decoder = self._decoders.get(topic)
        if decoder is None:
            raise DecodeError("unknown_topic", _truncate(f"no input topic named {topic!r}"))
        if not raw.isascii():  # msgspec skips unknown fields' names without checking them
            try:
                raw.decode()
            except UnicodeDecodeError as err:
                raise DecodeError("invalid_json", _truncate(f"invalid UTF-8: {err}")) from None
        event: InputEvent = _decode(decoder, raw)
        _check_depth(raw)
        for name in self._timestamps[topic]:
            _check_year(name, getattr(event, name))
        if type(event) is Purchase and event.currency not in CURRENCIES:
            raise DecodeError(
                "unknown_currency",
                _truncate(f"{event.currency!r} is not an active ISO 4217 code - at `$.currency`"),
            )
        return event


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    """One validating pass; an integral float (45.0, 1e2, -0.0) where an integer is expected is
    an integer in JSON Schema, so such a record is decoded once more with those as integers."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as err:
        message = str(err)
        if "got `float`" not in message:
            raise DecodeError(_validation_reason(message), _truncate(message)) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise DecodeError("invalid_json", _truncate(str(err))) from None
    except RecursionError:
        raise DecodeError("schema_violation", _TOO_DEEP) from None
    return _decode_integral(decoder, raw)


def _decode_integral(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    """The second pass, with integral floats as integers. The first pass stopped at the float,
    so the rest of the record is read for the first time here: it may still be malformed
    (`invalid_json`) or too deep (`schema_violation`), and is judged as the first pass would."""
    try:
        value = _UNTYPED.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as err:
        raise DecodeError("invalid_json", _truncate(str(err))) from None
    except RecursionError:
        raise DecodeError("schema_violation", _TOO_DEEP) from None
    _check_depth(raw)  # before a Python walk of it
    try:
        return decoder.decode(msgspec.json.encode(_integral_floats_as_ints(value)))
    except msgspec.ValidationError as err:
        message = str(err)
        raise DecodeError(_validation_reason(message), _truncate(message)) from None


def _float_or_raw(text: str) -> float | msgspec.Raw:
    """A JSON float as a float, or as written if a float cannot hold it (`1e400`): the second
    pass then judges it where the first would (skipped in an unknown field, refused in a
    number field), instead of failing the whole record for it."""
    number = float(text)
    return number if math.isfinite(number) else msgspec.Raw(text.encode())


_UNTYPED: Final = msgspec.json.Decoder(float_hook=_float_or_raw)


def _integral_floats_as_ints(value: Any) -> Any:
    """The same JSON value with every finite integral float as an int (45.0 -> 45)."""
    if type(value) is float:
        return int(value) if value.is_integer() else value
    if type(value) is dict:
        return {k: _integral_floats_as_ints(v) for k, v in value.items()}
    if type(value) is list:
        return [_integral_floats_as_ints(v) for v in value]
    return value


_STRINGS: Final = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def _check_depth(raw: bytes) -> None:
    """`schema_violation` if the document nests deeper than MAX_DEPTH (brackets counted first:
    most records have too few to need a look)."""
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and nesting_depth(raw) > MAX_DEPTH:
        raise DecodeError("schema_violation", _TOO_DEEP)


def nesting_depth(raw: bytes) -> int:
    """How deeply the JSON document's arrays and objects nest (brackets in strings ignored)."""
    depth = deepest = 0
    for byte in _STRINGS.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in (0x5B, 0x7B) else -1
        deepest = max(deepest, depth)
    return deepest


def _timestamp_fields(model: type) -> tuple[str, ...]:
    """The names of a model's timestamp fields (checked against the contract's year range)."""
    return tuple(
        f.name
        for f in msgspec.structs.fields(model)
        if "datetime" in str(f.type) or f.type is datetime
    )


def _check_year(name: str, value: datetime | None) -> None:
    """The contract's timestamps are within years MIN_YEAR..MAX_YEAR (as written, with offset)."""
    if value is not None and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise DecodeError(
            "out_of_range",
            f"{value.isoformat()} is outside the years {MIN_YEAR}-{MAX_YEAR} - at `$.{name}`",
        )


_ENCODER: Final = msgspec.json.Encoder()


def encode(obj: Any) -> bytes:
    """Serialise an output model (a msgspec Struct) to JSON bytes; fields that are None are
    omitted. Timestamps come out as RFC 3339 with their offset ("Z" for UTC)."""
    return _ENCODER.encode(obj)
