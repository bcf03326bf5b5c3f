"""Seeded fuzz records for the input topics: the schema examples, mutated by named mutations."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from processors.routing import KEY_FIELDS

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "v1"
TOPICS = ("purchases", "complaints", "referrals", "survey-responses")
TOPIC_WEIGHTS = (4, 2, 2, 2)
RATED = ("EUR", "USD", "GBP")  # the default points rates; the oracle is given the real ones
DEEP = 10_000  # levels of the deep-nesting mutation
HUGE_RECORD_BYTES = 3 * 2**20 + 2**19  # ~3.5 MiB: over the dead-letter topic's 4 MiB in base64
POISON = ("deep_nesting", "bad_timestamp:year_9999", "huge_record")  # issue #11: crash, stall
SAMPLES: dict[str, Any] = {"string": "x", "int": 7, "bool": True, "object": {"a": 1},
                           "array": [1, "a"], "null": None}  # fmt: skip
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf")


class Raw:
    """Bytes spliced verbatim into the JSON text (numbers json.dumps cannot write, bad bytes)."""

    def __init__(self, token: bytes) -> None:
        self.token = token


def dumps(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON with every Raw value replaced by its bytes."""
    raws: list[bytes] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.token)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return [swap(v) for v in value] if isinstance(value, list) else value

    text = json.dumps(swap(doc), ensure_ascii=False, separators=(",", ":")).encode()
    for i, token in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"'.encode(), token, 1)
    return text


def quoted(text: str, at: int, inserted: bytes) -> Raw:
    """A JSON string of `text` with raw bytes inserted at character `at`."""
    head = json.dumps(text[:at], ensure_ascii=False)[:-1].encode()
    return Raw(head + inserted + json.dumps(text[at:], ensure_ascii=False)[1:].encode())


@dataclass(frozen=True)
class Record:
    """One record to produce: base topic, key, value and the mutation that made it."""

    topic: str
    key: bytes | None
    value: bytes
    mutation: str


Doc = dict[str, Any]
Made = tuple[str, bytes | None, bytes]  # (detail of the mutation, key, value)
Mutation = Callable[["Fuzzer", Doc, bytes], "Made | None"]


def _fields(doc: dict[str, Any], kind: type | tuple[type, ...]) -> list[str]:
    return [k for k, v in doc.items() if isinstance(v, kind) and not isinstance(v, bool)]


def _valid(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    return "", key, dumps(doc)


def _unknown_fields(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    for i in range(f.rng.randint(1, 3)):
        doc[f"x_unknown_{i}"] = f.rng.choice(list(SAMPLES.values()))
    return "", key, dumps(doc)


def _truncation(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    raw = dumps(doc)
    cut = f.rng.randrange(len(raw))
    return f"@{cut}", key, raw[:cut]


def _byte_flip(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    raw = bytearray(dumps(doc))
    at = [f.rng.randrange(len(raw)) for _ in range(f.rng.randint(1, 3))]
    for i in at:
        raw[i] ^= f.rng.randint(1, 255)
    return f"@{','.join(map(str, at))}", key, bytes(raw)


def _in_string(how: str) -> Mutation:
    def mutate(f: Fuzzer, doc: Doc, key: bytes) -> Made:
        if how == "utf8" and f.rng.random() < 0.3:  # in an unknown field's name (skipped unread)
            doc["x_utf8_name"] = 1
            bad = b'"x_' + f.rng.choice(BAD_UTF8) + b'_name"'
            return ":field_name", key, dumps(doc).replace(b'"x_utf8_name"', bad)
        name = f.rng.choice(_fields(doc, str))
        text, at = doc[name], f.rng.randint(0, len(doc[name]))
        if how == "utf8":
            doc[name] = quoted(text, at, f.rng.choice(BAD_UTF8))
        elif how == "nul_raw":
            doc[name] = quoted(text, at, b"\x00")
        elif how == "nul_escaped":
            doc[name] = text[:at] + "\x00" + text[at:]
        else:  # oversized: a 70 KB string, over the 64 KiB record limit
            doc[name] = "x" * 70_000
        return f":{name}", key, dumps(doc)

    return mutate


def _type_swap(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    name = f.rng.choice(list(doc))
    now = {str: "string", bool: "bool", int: "int", dict: "object", list: "array"}
    kind = f.rng.choice([k for k in SAMPLES if k != now.get(type(doc[name]), "null")])
    doc[name] = SAMPLES[kind]
    return f":{name}->{kind}", key, dumps(doc)


def _number(tokens: Callable[[int], Sequence[str]]) -> Mutation:
    def mutate(f: Fuzzer, doc: Doc, key: bytes) -> Made | None:
        ints = _fields(doc, int)
        names = [n for n in ("amount_cents", "points_redeemed", "score", "ces") if n in ints]
        if not names:
            return None
        name = f.rng.choice(names)
        token = f.rng.choice(tokens(doc[name]))
        doc[name] = Raw(token.encode())
        return f":{name}={token}", key, dumps(doc)

    return mutate


def _deep_nesting(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    shape = f.rng.choice(("arrays", "objects"))  # 20 KB or 60 KB of valid JSON, 10,000 levels
    deep = b"[" * DEEP + b"]" * DEEP if shape == "arrays" else b'{"a":' * DEEP + b"1" + b"}" * DEEP
    where = f.rng.choice(("unknown_field", "context"))
    if where == "context":
        context = doc.get("context")
        doc["context"] = {**(context if isinstance(context, dict) else {}), "x_deep": Raw(deep)}
    else:
        doc["x_deep"] = Raw(deep)
    return f":{where}:{shape}", key, dumps(doc)


BAD_TIMES = {"year_9999": "9999-12-31T23:59:59Z", "year_0001": "0001-01-01T00:00:00Z",
             "no_offset": "2026-11-23T10:00:00", "not_a_date": "next tuesday",
             "impossible_date": "2026-02-30T10:00:00Z"}  # fmt: skip


def _bad_timestamp(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    variant = f.rng.choice(sorted(BAD_TIMES))
    doc["occurred_at"] = BAD_TIMES[variant]
    return f":{variant}", key, dumps(doc)


def _missing_field(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    name = f.rng.choice(list(doc))
    del doc[name]
    return f":{name}", key, dumps(doc)


def _wrong_key(f: Fuzzer, doc: Doc, key: bytes) -> Made:
    variant = f.rng.choice(("none", "empty", "other_customer"))
    other = f.rng.choice([c for c in f.customers if c.encode() != key]).encode()
    return f":{variant}", {"none": None, "empty": b""}.get(variant, other), dumps(doc)


def _currency(codes: Sequence[str]) -> Mutation:
    def mutate(f: Fuzzer, doc: Doc, key: bytes) -> Made | None:
        if "currency" not in doc:
            return None
        doc["currency"] = f.rng.choice(codes)
        return f":{doc['currency']}", key, dumps(doc)

    return mutate


MUTATIONS: dict[str, tuple[int, Mutation]] = {  # name: (weight, mutation)
    "valid": (24, _valid),
    "unknown_fields": (5, _unknown_fields),
    "truncation": (6, _truncation),
    "byte_flip": (8, _byte_flip),
    "invalid_utf8": (4, _in_string("utf8")),
    "nul_raw": (3, _in_string("nul_raw")),
    "nul_escaped": (3, _in_string("nul_escaped")),
    "type_swap": (8, _type_swap),
    "huge_number": (3, _number(lambda v: ("18446744073709551616", "1e400", "-1"))),
    "integral_float": (4, _number(lambda v: (f"{v}.0", f"{v}e0", "1e2", "-0.0"))),
    "deep_nesting": (2, _deep_nesting),
    "bad_timestamp": (4, _bad_timestamp),
    "missing_field": (5, _missing_field),
    "wrong_key": (4, _wrong_key),
    "oversized_field": (1, _in_string("oversized")),
    "unknown_currency": (2, _currency(("XXX", "XTS", "ABC", "eur"))),
    "unrated_currency": (2, _currency(("JPY", "CHF", "SEK"))),
    "duplicate": (3, _valid),  # a producer retry: an earlier clean record sent again
}


class Fuzzer:
    """Records from the schema examples, each with a fresh event_id, mutated by a seeded RNG."""

    def __init__(self, seed: int, anchor: datetime, customers: int = 200, probes: int = 8) -> None:
        self.rng, self.seed, self.anchor, self.serial = random.Random(seed), seed, anchor, 0
        self.examples = {t: [json.loads(p.read_text()) for p in sorted(
            (SCHEMAS / "examples").glob(f"{t}.*.json"))] for t in TOPICS}  # fmt: skip
        self.customers = [f"fz-c-{i}" for i in range(customers)]
        self.probes = [f"fz-probe-{seed}-{i}" for i in range(probes)]
        self.clean: list[Record] = []  # valid records a retry may repeat

    def uid(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.seed}-{self.serial:06d}-{self.rng.getrandbits(32):08x}"

    def event(self, topic: str, example: dict[str, Any], probe: str | None) -> dict[str, Any]:
        """A copy of `example` with fresh ids, a recent time and a customer of the pool."""
        doc: Doc = json.loads(json.dumps(example))
        rng = self.rng
        doc["event_id"] = self.uid("fz")
        at = self.anchor - timedelta(seconds=rng.randint(60, 36 * 3600))
        offset = timezone(timedelta(hours=rng.choice((0, 1, -5))))
        spec = rng.choice(("seconds", "milliseconds"))
        doc["occurred_at"] = at.astimezone(offset).isoformat(timespec=spec)
        doc[KEY_FIELDS[topic]] = probe or rng.choice(self.customers)
        for name in ("order_id", "complaint_id", "referral_id", "referee_id"):
            if isinstance(doc.get(name), str):
                doc[name] = self.uid(name[:3])
        if doc.get("currency") not in (None, *RATED):
            doc["currency"] = rng.choice(RATED)
        if probe:
            doc["amount_cents"] = rng.randint(100, 100_000)
        if "score" in doc:
            doc["score"] = rng.randint(0, 10)
        return doc

    def make(self, name: str) -> Record:
        """One record of mutation `name` (another topic is tried where it does not apply)."""
        if name == "duplicate" and self.clean:
            original = self.rng.choice(self.clean)
            return Record(original.topic, original.key, original.value, "duplicate")
        name = "valid" if name == "duplicate" else name  # nothing to repeat yet
        for _ in range(50):
            topic = self.rng.choices(TOPICS, TOPIC_WEIGHTS)[0]
            examples = self.examples[topic]
            probe = None
            if topic == "purchases" and self.rng.random() < 0.25:
                probe = self.rng.choice(self.probes)
            doc = self.event(
                topic, examples[0 if probe else self.rng.randrange(len(examples))], probe
            )
            made = MUTATIONS[name][1](self, doc, str(doc[KEY_FIELDS[topic]]).encode())
            if made is not None:
                record = Record(topic, made[1], made[2], name + made[0])
                if name == "valid":
                    self.clean.append(record)
                return record
        raise AssertionError(f"mutation {name} applies to no topic")

    def records(self, count: int, exclude: Sequence[str] = ()) -> list[Record]:
        """`count` records: every mutation at least once, then by weight; plus one ~3.5 MiB."""
        names = [n for n in MUTATIONS if not n.startswith(tuple(exclude))]
        weights = [MUTATIONS[n][0] for n in names]
        out: list[Record] = []
        for i in itertools.count():
            if len(out) >= count:
                break
            record = self.make(names[i] if i < len(names) else self.rng.choices(names, weights)[0])
            if not record.mutation.startswith(tuple(exclude)):
                out.append(record)
        if not "huge_record".startswith(tuple(exclude)):
            doc = self.event("purchases", self.examples["purchases"][0], None)
            doc["x_blob"] = "x" * HUGE_RECORD_BYTES
            big = Record("purchases", doc["customer_id"].encode(), dumps(doc), "huge_record")
            out.insert(self.rng.randrange(len(out) + 1), big)
        return out

    def final_batch(self) -> list[Record]:
        """Valid events sent after the garbage: every example once, and one purchase per probe."""
        out = []
        for topic, examples in self.examples.items():
            for example in examples:
                doc = self.event(topic, example, None)
                out.append(Record(topic, str(doc[KEY_FIELDS[topic]]).encode(), dumps(doc), "final"))
        for probe in self.probes:
            doc = self.event("purchases", self.examples["purchases"][0], probe)
            out.append(Record("purchases", probe.encode(), dumps(doc), "final"))
        return out
