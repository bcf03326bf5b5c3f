"""The gate fuzzed in-process: each record admitted, dead-lettered by contract, or a duplicate."""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.account import Account
from processors.compensation import GRANTED
from processors.fraud import FraudFacts, evaluate
from processors.routing import KEY_FIELDS
from processors.settlement import settle
from schemas.codec import CONTROL_TOPICS, INPUT_TOPICS, MAX_DETAIL_CHARS, SCHEMA_DIR, Codec
from schemas.models import FraudDecision, GiftCardOrder, Referral
from streams.assembly import policies
from streams.ingest import Admitted
from streams.referral_intake import signup_command
from streams.referrals_app import fraud_policy
from streams.settings import Settings
from streams.settings_models import LoyaltyTier, PointsExpiry
from tests import fuzz
from tests.fuzz import MUTATIONS, Fuzzer, dumps
from tests.fuzz_oracle import Oracle
from tests.worker.fakes.gate import DeadLetters, FirstSeenMarks, Letter, gate, record

TOPICS = INPUT_TOPICS + CONTROL_TOPICS
FULL = {f"t.{base}": base for base in TOPICS}  # a deployment prefix: letters name the full topic
GATE_REASONS = frozenset({"invalid_json", "wrong_type", "schema_violation", "unknown_currency",
                          "oversized", "out_of_range", "key_mismatch"})  # fmt: skip
"""What the gate may dead-letter a record for: the contract's reasons (never processing_error)."""
EXAMPLES = {t: [json.loads(p.read_text()) for p in sorted((SCHEMA_DIR / "examples").glob(
    f"{t}.*.json"))] for t in TOPICS}  # fmt: skip
SETTINGS = Settings()
LOYALTY = Settings(
    tiers=(LoyaltyTier(name="silver", threshold=1000), LoyaltyTier(name="gold", threshold=50_000)),
    points_expiry=PointsExpiry(lifetime=timedelta(days=365), inactivity=timedelta(days=180),
                               warning=timedelta(days=30)),
)  # fmt: skip
RULES = (policies(SETTINGS), policies(LOYALTY))
FRAUD = fraud_policy(SETTINGS)
EXAMPLES_EACH = int(os.environ.get("REWARDS_GATE_FUZZ_EXAMPLES", "150"))
"""Examples per property: a few seconds in CI; raise it for a soak (`...=20000`)."""
FUZZ = settings(max_examples=EXAMPLES_EACH, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
BYTE_FLIPPED = (  # issue #20's kind (tests/fuzz.py seed 6): `"ip":"203…` became a number
    b'{"event_id":"fz6-002920-8ca98e0a","occurred_at":"2026-11-22T09:07:39.000-05:00",'
    b'"customer_id":"fz-c-63","type":"purchase","order_id":"ord6l002921-c4779cdf",'
    b'"amount_cents":120000,"currency":"USD","points_redeemed":250,"context":{"email":'
    b'"ada@example.com","ip": 203.0.113.7","user_agent":"Mozilla/5.0 (X11; Linux x86_64)"}}'
)


@dataclass(frozen=True)
class Sent:
    """One record of a batch, as the gate reads it."""

    base: str
    key: bytes | None
    value: bytes

    def __repr__(self) -> str:  # a 60 KB record would drown a failure's report
        shown = self.value if len(self.value) <= 300 else self.value[:300] + b"..."
        return f"Sent({self.base!r}, {self.key!r}, {shown!r} ({len(self.value)} bytes))"


@dataclass
class Outcome:
    """What the gate made of a batch."""

    records: list[Any]
    admitted: list[Admitted]
    letters: list[Letter]
    marks: FirstSeenMarks


def admit(batch: Sequence[Sent]) -> Outcome:
    """The batch through a fresh gate on in-memory ports, one record per offset."""
    marks, letters = FirstSeenMarks(), DeadLetters()
    the_gate = gate(FULL, first_seen=marks, dead_letters=letters)
    records = [
        record(f"t.{s.base}", s.value, s.key, partition=i % 3, offset=100 + i)
        for i, s in enumerate(batch)
    ]
    admitted = asyncio.run(the_gate.admit(records))  # raises if a record gets out of the gate
    return Outcome(records, admitted, letters.sent, marks)


def position(message: Any) -> tuple[str, int, int]:
    return (str(message.topic()), int(message.partition()), int(message.offset()))


def check_each_record_once(out: Outcome) -> None:
    """Every record is admitted, dead-lettered once with a contract reason and its bytes, or a
    duplicate of an event id first seen at another position; nothing else."""
    by_position = {position(r): r for r in out.records}
    admitted = [a.position for a in out.admitted]
    admitted_at = {(p.topic, p.partition, p.offset) for p in admitted}
    lettered = [letter.position for letter in out.letters]
    assert len(admitted_at) == len(admitted) and len(set(lettered)) == len(lettered)
    assert not admitted_at & set(lettered), "admitted and dead-lettered"
    for letter in out.letters:
        sent = by_position[letter.position]
        assert letter.reason in GATE_REASONS, (letter.reason, letter.detail, sent.value()[:300])
        assert 0 < len(letter.detail) <= MAX_DETAIL_CHARS
        assert (letter.value, letter.key) == (sent.value() or b"", sent.key())
        assert letter.base_topic == FULL[letter.topic]
    for at, sent in by_position.items():
        if at not in admitted_at and at not in lettered:  # a duplicate: decodes, seen elsewhere
            event = Codec().decode(FULL[at[0]], sent.value())
            first = out.marks.marks[(at[0], event.event_id)]
            assert first != f"{at[1]}:{at[2]}", f"dropped, not a duplicate: {sent.value()[:300]!r}"


def customer_of(event: Any) -> str:
    """Whose account the hot path settles an event against."""
    if isinstance(event, FraudDecision):
        return event.referee_id
    return event.referrer_id if isinstance(event, Referral) else str(event.customer_id)


def check_domain_takes(admitted: Sequence[Admitted]) -> None:
    """Each admitted event settles against an empty account without raising, as the hot path
    would settle it (sign-ups as the referee's `signup` command; gift-card orders are not
    settled), before and after its fraud verdict and budget answer."""
    for item in admitted:
        event: Any = item.event
        if isinstance(event, GiftCardOrder):
            continue
        if isinstance(event, Referral) and event.type == "signed_up":
            assert event.referee_id is not None
            verdict = evaluate(FraudFacts("signup", event.referrer_id, event.referee_id), FRAUD)
            event = signup_command(event, verdict, "fa-fuzz")
        owner = customer_of(event)
        for rules in RULES:
            settle(Account(owner), [event], item.at, rules, times=[item.at])
            answers = {event.event_id: "approve"}
            grants = {event.event_id: GRANTED}
            settle(Account(owner), [event], item.at, rules, answers, grants=grants, times=[item.at])


# (a) arbitrary bytes ------------------------------------------------------------------------

FIELDS = sorted({name for docs in EXAMPLES.values() for doc in docs for name in doc})
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def json_bytes(draw: st.DrawFn) -> bytes:
    """A JSON object of contract-like field names, in any encoding a producer might get wrong
    (NaN, lone surrogates, not ASCII)."""
    doc = draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON_VALUES,
                               max_size=8))  # fmt: skip
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


SENT = st.builds(
    Sent,
    st.sampled_from(TOPICS),
    st.none() | st.binary(max_size=12),
    st.binary(max_size=200) | json_bytes(),
)


@FUZZ
@given(st.lists(SENT, min_size=1, max_size=6))
def test_arbitrary_bytes_on_every_topic_get_a_contract_verdict(batch: list[Sent]) -> None:
    out = admit(batch)
    check_each_record_once(out)
    check_domain_takes(out.admitted)


# (b) mutated valid events -------------------------------------------------------------------

FUZZER = Fuzzer(seed=20, anchor=datetime(2026, 11, 23, tzinfo=UTC))
NAMES = sorted(MUTATIONS)


def duplicate_member(raw: bytes, name: str, value: Any, first: bool) -> bytes:
    """The object with one more member named `name`: before the others (the later one is
    read) or after them (this one is read)."""
    if not raw.startswith(b"{") or not raw.endswith(b"}") or raw == b"{}":
        return raw
    member = json.dumps(name).encode() + b":" + json.dumps(value).encode()
    return b"{" + member + b"," + raw[1:] if first else raw[:-1] + b"," + member + b"}"


@st.composite
def mutated(draw: st.DrawFn, topics: Sequence[str] = TOPICS, twice: bool = True) -> Sent:
    """A schema example with fresh ids, mutated by one to three of the fuzz soak's mutations
    in turn (each on what the previous left), perhaps with a member named twice."""
    topic = draw(st.sampled_from(topics))
    example = draw(st.sampled_from(EXAMPLES[topic]))
    FUZZER.rng, FUZZER.serial = random.Random(draw(st.integers(0, 2**32 - 1))), 0
    doc = FUZZER.event(topic, example, None)
    key: bytes | None = str(doc[KEY_FIELDS[topic]]).encode()
    value = dumps(doc)
    for name in draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3)):
        try:
            made = MUTATIONS[name][1](FUZZER, doc, key or b"")
        except IndexError:  # nothing left for it to mutate (no string field, say)
            continue
        if made is not None:
            _, key, value = made
    member = draw(st.none() | st.tuples(st.sampled_from(FIELDS), JSON_VALUES, st.booleans()))
    if twice and member is not None:
        value = duplicate_member(value, *member)
    return Sent(topic, key, value)


@st.composite
def batches(draw: st.DrawFn) -> list[Sent]:
    """Mutated records, some sent again (a producer retry: a duplicate)."""
    batch = draw(st.lists(mutated(), min_size=1, max_size=5))
    again = draw(st.lists(st.integers(0, len(batch) - 1), max_size=2))
    return batch + [batch[i] for i in again]


@FUZZ
@given(batches())
def test_mutated_events_get_a_contract_verdict_and_the_admitted_settle(batch: list[Sent]) -> None:
    out = admit(batch)
    check_each_record_once(out)
    check_domain_takes(out.admitted)


ORACLE = Oracle(SETTINGS.max_event_bytes, SETTINGS.points_rates)


@FUZZ
@given(mutated(topics=fuzz.TOPICS, twice=False))
def test_the_gate_judges_as_the_json_schemas_do(sent: Sent) -> None:
    """The fuzz soak's oracle (the v1 JSON Schema files, not the codec) agrees with the gate on
    every input topic. Not with a member named twice: the codec checks every occurrence where
    the oracle reads only the last (RFC 8259 leaves duplicate names to the reader)."""
    verdict = ORACLE.judge(fuzz.Record(sent.base, sent.key, sent.value, "gate"))
    out = admit([sent])
    got = out.letters[0].reason if out.letters else "admitted"
    if verdict.outcome == "processed" or verdict.reason == "no_points_rate":  # refused later
        assert got == "admitted", (got, out.letters[0].detail if out.letters else "")
    elif verdict.reason == "invalid":
        assert got not in ("admitted", "key_mismatch", "oversized"), got
    else:
        assert got == verdict.reason


FLOAT_FIRST = BYTE_FLIPPED.split(b',"context"')[0].replace(b":120000,", b":120000.0,")
"""A purchase whose amount is an integral float: read twice, the second time with it an int."""


@pytest.mark.parametrize(
    ("rest", "reason"),
    [
        pytest.param(b',"context":{"ip": 203.0.113.7"}}', "invalid_json", id="malformed"),
        pytest.param(b',"x":1,}', "invalid_json", id="trailing-comma"),
        pytest.param(b',"x":NaN}', "invalid_json", id="nan"),
        pytest.param(b',"x":"\\udc00"}', "invalid_json", id="lone-surrogate"),
        pytest.param(b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}", "schema_violation", id="deep"),
        pytest.param(b',"points_redeemed":1e400}', "schema_violation", id="1e400-counted"),
        pytest.param(b',"x":1e400}', None, id="1e400-unknown-field"),
        pytest.param(b"}", None, id="valid"),
    ],
)
def test_what_follows_an_integral_float_is_judged_as_without_it(
    rest: bytes, reason: str | None
) -> None:
    """The second reading of a record with an integral float reads the rest of it for the first
    time: malformed is `invalid_json`, too deep `schema_violation` (issue #20: both escaped the
    codec and were dead-lettered as `processing_error`)."""
    out = admit([Sent("purchases", b"fz-c-63", FLOAT_FIRST + rest)])
    assert [letter.reason for letter in out.letters] == ([reason] if reason else [])
    assert len(out.admitted) == (0 if reason else 1)


def test_a_byte_flip_that_stops_the_first_reading_is_invalid_json() -> None:
    """The first reading stops at `203.0` (a float where a string belongs) and reads again with
    integral floats as integers, which met the broken rest: `processing_error` before #20."""
    out = admit([Sent("purchases", b"fz-c-63", BYTE_FLIPPED)])
    assert [(letter.reason, letter.value) for letter in out.letters] == [
        ("invalid_json", BYTE_FLIPPED)
    ]
