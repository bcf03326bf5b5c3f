"""Decode and validate input events (msgspec, one pass) and encode output events (orjson)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from datetime import datetime
from functools import cache
from typing import Any, Final

import msgspec
import orjson

from schemas.models import INPUT_MODELS, InputEvent, Purchase

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
)
"""The dead-letter reasons this package produces (consumers must accept others too)."""

INPUT_TOPICS: Final = ("purchases", "complaints", "referrals", "survey-responses")
"""Input topics by base name (without any deployment prefix)."""

CONTROL_TOPICS: Final = ("fraud-decisions", "referral-commands", "gift-card-orders")
"""Topics workers consume that are not upstream business inputs: operators' review decisions,
referral steps one worker sends to the partition that owns another customer, and granted gift
cards waiting for the provider (both internal)."""

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
)
"""Output topics by base name."""

SCHEMA_DIR: Final = pathlib.Path(__file__).resolve().parent / "v1"
"""The published v1 JSON Schema files, `<topic>.schema.json`, and `examples/`."""

MAX_DETAIL_CHARS: Final = 500


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

    __slots__ = ("_decoders", "max_event_bytes")

    def __init__(self, max_event_bytes: int = 65536) -> None:
        self.max_event_bytes = max_event_bytes
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {
            topic: msgspec.json.Decoder(model) for topic, model in INPUT_MODELS.items()
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
        try:
            event: InputEvent = decoder.decode(raw)
        except msgspec.ValidationError as err:
            message = str(err)
            raise DecodeError(_validation_reason(message), _truncate(message)) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as err:
            raise DecodeError("invalid_json", _truncate(str(err))) from None
        if type(event) is Purchase and event.currency not in CURRENCIES:
            raise DecodeError(
                "unknown_currency",
                _truncate(f"{event.currency!r} is not an active ISO 4217 code - at `$.currency`"),
            )
        return event


_LEAVES: Final = frozenset({str, int, float, bool, datetime})
"""Types `_plain` hands to orjson as they are (the common case, checked first)."""


def _plain(value: Any) -> Any:
    """A dataclass as a dict without its None fields, recursively; other values as they are."""
    kind: type = type(value)
    if kind in _LEAVES:
        return value
    names = _field_names(kind)
    if names is not None:
        return {
            name: item if type(item) in _LEAVES else _plain(item)
            for name in names
            if (item := getattr(value, name)) is not None
        }
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    return value


@cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names (None for any other type); once per type."""
    if not dataclasses.is_dataclass(cls):
        return None
    return tuple(field.name for field in dataclasses.fields(cls))


def encode(obj: Any) -> bytes:
    """Serialise an output dataclass to JSON bytes, omitting fields that are None.

    Timestamps come out as RFC 3339 with their offset ("Z" for UTC).
    """
    return orjson.dumps(_plain(obj), option=orjson.OPT_UTC_Z)
