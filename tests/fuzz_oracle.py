"""The fuzz oracle: what must become of a record, judged by the v1 JSON Schemas, not the codec."""

from __future__ import annotations

import calendar
import itertools
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from processors.routing import KEY_FIELDS
from tests.fuzz import SCHEMAS, TOPICS, Record
from tests.support import Sent

MAX_DEPTH, YEARS = 32, (2000, 2099)  # being added to the contract: deeper or other years invalid


_STAMP = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.\d+)?([Zz]|([+-])(\d\d):(\d\d))"
)


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 date-time with an offset in the contract's years, else None."""
    m = _STAMP.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if not (YEARS[0] <= y <= YEARS[1] and 1 <= mo <= 12):
        return None
    if d < 1 or d > calendar.monthrange(y, mo)[1]:
        return None
    if h > 23 or mi > 59 or s > 59 or (m[8] and (int(m[9]) > 23 or int(m[10]) > 59)):
        return None
    sign = -1 if m[8] == "-" else 1
    offset = timedelta(hours=int(m[9] or 0), minutes=int(m[10] or 0)) * sign
    return datetime(y, mo, d, h, mi, s, tzinfo=timezone(offset)).astimezone(UTC)


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(lambda v: not isinstance(v, str) or parse_time(v) is not None)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest (brackets inside strings ignored), without recursion."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@dataclass(frozen=True)
class Verdict:
    """What must become of a record: processed, rejected (with a reason class) or duplicate."""

    outcome: str
    reason: str | None = None  # oversized, invalid (any codec reason), key_mismatch, no_points_rate
    doc: dict[str, Any] | None = None


class Oracle:
    """Judges records by the JSON Schema files, the key rule and the points rates, not the codec."""

    def __init__(self, max_event_bytes: int, rates: Mapping[str, object]) -> None:
        self.max_event_bytes, self.rates = max_event_bytes, rates
        self.validators = {
            t: Draft202012Validator(json.loads((SCHEMAS / f"{t}.schema.json").read_text()),
                                    format_checker=FORMATS)
            for t in TOPICS
        }  # fmt: skip

    def parse(self, topic: str, raw: bytes) -> dict[str, Any] | None:
        """The event if the value is UTF-8 JSON, at most MAX_DEPTH deep, valid by its schema."""
        try:
            text = raw.decode("utf-8")
            if nesting_depth(text) > MAX_DEPTH:
                return None
            doc = json.loads(text, parse_constant=_no_constants)
        except ValueError:  # UnicodeDecodeError and JSONDecodeError included
            return None
        return doc if self.validators[topic].is_valid(doc) else None

    def judge(self, record: Record) -> Verdict:
        """The verdict of one record on its own (duplicates are found by `judge_all`)."""
        if len(record.value) > self.max_event_bytes:
            return Verdict("rejected", "oversized")
        doc = self.parse(record.topic, record.value)
        if doc is None:
            return Verdict("rejected", "invalid")
        named = (doc.get(field) for field in ("customer_id", "referrer_id", "referee_id"))
        if record.key != doc[KEY_FIELDS[record.topic]].encode() or any(
            isinstance(name, str) and "\x00" in name for name in named
        ):
            return Verdict("rejected", "key_mismatch", doc)
        earns = record.topic == "purchases" and doc["type"] == "purchase"
        if earns and doc["currency"] not in self.rates:
            return Verdict("rejected", "no_points_rate", doc)
        return Verdict("processed", None, doc)

    def judge_all(self, records: Sequence[Record]) -> list[Verdict]:
        """Verdicts in send order: a processed event id seen before on its topic is a duplicate."""
        seen: set[tuple[str, str]] = set()
        out = []
        for record in records:
            verdict = self.judge(record)
            if verdict.outcome == "processed" and verdict.doc is not None:
                ident = (record.topic, verdict.doc["event_id"])
                verdict = Verdict("duplicate", None, verdict.doc) if ident in seen else verdict
                seen.add(ident)
            out.append(verdict)
        return out


class Run:
    """What was sent, where it landed and what the oracle says must become of it."""

    def __init__(self, records: list[Record], sent: list[Sent], verdicts: list[Verdict]) -> None:
        self.items = list(zip(records, sent, verdicts, strict=True))
        clean = Counter(v.outcome for r, _, v in self.items if r.mutation in ("valid", "final"))
        assert set(clean) == {"processed"}, f"an example no longer passes the schemas: {clean}"
        self.at = {(s.topic, s.partition, s.offset): (r, s, v) for r, s, v in self.items}

    def sent_counts(self) -> dict[str, int]:
        return dict(Counter(r.topic for r, _, _ in self.items))

    def expected_counts(self, topic: str) -> dict[str, int]:
        outcomes = Counter(v.outcome for r, _, v in self.items if r.topic == topic)
        return {
            "consumed": sum(outcomes.values()),
            "processed": outcomes["processed"],
            "dead_letters": outcomes["rejected"],
            "duplicates": outcomes["duplicate"],
        }

    def processed(self, topic: str, mutation: str = "") -> list[dict[str, Any]]:
        """The events of `topic` that must take effect, once each."""
        return [
            v.doc
            for r, _, v in self.items
            if r.topic == topic and v.outcome == "processed" and v.doc is not None
            and r.mutation.startswith(mutation)
        ]  # fmt: skip
