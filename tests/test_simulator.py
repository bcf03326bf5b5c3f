"""Pure tests of the demo traffic simulator: reproducible, realistic, and bad where meant to be."""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from types import ModuleType
from typing import Any

import orjson
import pytest

from streams.cli.simulator import BAD_KINDS, ShopSimulator, SimEvent

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
N = 20_000
GOOD_KINDS = {
    "purchase", "refund", "referral_invited", "referral_signed_up", "self_referral", "complaint",
    "survey",
}  # fmt: skip
ALL_KINDS = GOOD_KINDS | set(BAD_KINDS) | {"duplicate"}
KEY_FIELDS = {
    "purchases": "customer_id",
    "complaints": "customer_id",
    "referrals": "referrer_id",
    "survey-responses": "customer_id",
}
CURRENCIES = {"EUR", "USD", "GBP"}  # the simulated shop's currencies, all active ISO 4217 codes
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
OVERSIZE_LIMIT = 65_536  # the codec's default max_event_bytes
REQUIRED = {
    "purchases": {"event_id", "occurred_at", "customer_id", "type", "order_id", "amount_cents",
                  "currency"},
    "complaints": {"event_id", "occurred_at", "customer_id", "complaint_id", "severity",
                   "category"},
    "referrals": {"event_id", "occurred_at", "type", "referrer_id"},
    "survey-responses": {"event_id", "occurred_at", "customer_id", "survey_id", "score"},
}  # fmt: skip


# -- a hand-written reading of the v1 field spec (/tmp/fieldspec.md) ------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_str(errors: list[str], obj: dict[str, Any], field: str, lo: int, hi: int) -> None:
    if field not in obj or obj[field] is None:
        return
    value = obj[field]
    if not isinstance(value, str):
        errors.append(f"type: {field} is {type(value).__name__}")
    elif not lo <= len(value) <= hi:
        errors.append(f"length: {field} has {len(value)} chars")


def _check_int(errors: list[str], obj: dict[str, Any], field: str, lo: int, hi: int) -> None:
    if field not in obj or obj[field] is None:
        return
    value = obj[field]
    if not _is_int(value):
        errors.append(f"type: {field} is {type(value).__name__}")
    elif not lo <= value <= hi:
        errors.append(f"range: {field} = {value}")


def _check_context(errors: list[str], ctx: Any) -> None:
    if not isinstance(ctx, dict):
        errors.append("type: context is not an object")
        return
    for field, hi in [("email", 254), ("ip", 64), ("user_agent", 512), ("device_id", 128),
                      ("payment_fingerprint", 128)]:  # fmt: skip
        _check_str(errors, ctx, field, 0, hi)
    address = ctx.get("shipping_address")
    if address is None:
        return
    if not isinstance(address, dict):
        errors.append("type: shipping_address is not an object")
        return
    for field in ("line1", "line2", "city", "region", "postal_code"):
        _check_str(errors, address, field, 0, 10_000)
    country = address.get("country")
    if country is not None and not (isinstance(country, str) and re.fullmatch("[A-Z]{2}", country)):
        errors.append(f"value: country {country!r}")


def spec_errors(topic: str, obj: Any) -> list[str]:
    """Every way `obj` breaks the v1 contract of `topic`; empty when it conforms."""
    if not isinstance(obj, dict):
        return ["type: not an object"]
    errors = [f"missing: {field}" for field in sorted(REQUIRED[topic] - obj.keys())]
    for field in ("event_id", "customer_id", "order_id", "complaint_id", "referrer_id",
                  "referee_id", "referral_id", "survey_id"):  # fmt: skip
        _check_str(errors, obj, field, 1, 128)
    occurred_at = obj.get("occurred_at")
    if occurred_at is not None and not isinstance(occurred_at, str):
        errors.append(f"type: occurred_at is {type(occurred_at).__name__}")
    elif occurred_at is not None and not RFC3339.match(occurred_at):
        errors.append(f"value: occurred_at {occurred_at!r}")
    if topic == "purchases":
        _purchase_errors(errors, obj)
    elif topic == "complaints":
        _complaint_errors(errors, obj)
    elif topic == "referrals":
        _referral_errors(errors, obj)
    else:
        _check_int(errors, obj, "score", 0, 10)
        _check_int(errors, obj, "ces", 1, 7)
        _check_str(errors, obj, "channel", 0, 32)
        _check_str(errors, obj, "comment", 0, 2000)
    return errors


def _purchase_errors(errors: list[str], obj: dict[str, Any]) -> None:
    if "type" in obj and obj["type"] not in ("purchase", "refund"):
        errors.append(f"value: type {obj['type']!r}")
    _check_int(errors, obj, "amount_cents", 0, 2**53 - 1)
    _check_int(errors, obj, "points_redeemed", 0, 2**53 - 1)
    if "currency" in obj and obj["currency"] not in CURRENCIES:
        errors.append(f"currency: {obj['currency']!r}")
    if obj.get("context") is not None:
        _check_context(errors, obj["context"])


def _complaint_errors(errors: list[str], obj: dict[str, Any]) -> None:
    if "severity" in obj and obj["severity"] not in ("low", "medium", "high", "critical"):
        errors.append(f"value: severity {obj['severity']!r}")
    _check_str(errors, obj, "category", 1, 64)
    _check_str(errors, obj, "channel", 0, 32)


def _referral_errors(errors: list[str], obj: dict[str, Any]) -> None:
    if "type" in obj and obj["type"] not in ("invited", "signed_up"):
        errors.append(f"value: type {obj['type']!r}")
    _check_str(errors, obj, "referral_code", 1, 64)
    _check_str(errors, obj, "invitee_email", 0, 254)
    if obj.get("referral_code") is None and obj.get("referral_id") is None:
        errors.append("missing: referral_code or referral_id")
    if obj.get("type") == "signed_up":
        if obj.get("referee_id") is None:
            errors.append("missing: referee_id")
        if obj.get("context") is None:
            errors.append("missing: context")
        else:
            _check_context(errors, obj["context"])


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def events() -> list[SimEvent]:
    return list(ShopSimulator(seed=7, start=START).events(N))


def _good(events: list[SimEvent]) -> list[tuple[SimEvent, dict[str, Any]]]:
    """Well-formed events (first sends only) with their parsed values, in stream order."""
    return [(e, orjson.loads(e.value)) for e in events if e.kind in GOOD_KINDS]


def _normal_email(email: str) -> str:
    local, domain = email.lower().split("@", 1)
    return f"{local.split('+', 1)[0].replace('.', '')}@{domain}"


def _fingerprints(ctx: dict[str, Any]) -> set[tuple[str, str]]:
    """The identifying signals the spec names for self-referral: email modulo dots/+tags etc."""
    address = ctx.get("shipping_address") or {}
    return {
        ("email", _normal_email(ctx["email"])),
        ("device_id", ctx["device_id"]),
        ("payment_fingerprint", ctx["payment_fingerprint"]),
        ("address", orjson.dumps(address, option=orjson.OPT_SORT_KEYS).decode()),
    }


def _codec() -> ModuleType:
    try:
        return importlib.import_module("schemas.codec")
    except Exception as exc:  # the codec or its schema files are not there yet
        pytest.skip(f"schemas.codec is not importable: {exc!r}")


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_same_bytes() -> None:
    first = list(ShopSimulator(seed=11, start=START).events(3000))
    second = list(ShopSimulator(seed=11, start=START).events(3000))
    assert first == second


def test_other_seed_other_events() -> None:
    a = [e.value for e in ShopSimulator(seed=1, start=START).events(200)]
    b = [e.value for e in ShopSimulator(seed=2, start=START).events(200)]
    assert a != b


def test_events_continue_the_stream() -> None:
    sim = ShopSimulator(seed=3, start=START)
    chunked = list(sim.events(500)) + list(sim.events(500))
    assert chunked == list(ShopSimulator(seed=3, start=START).events(1000))


def test_ids_are_reproducible_without_a_start() -> None:
    a = [
        orjson.loads(e.value)["event_id"]
        for e in ShopSimulator(seed=5, bad_event_ratio=0).events(50)
    ]
    b = [
        orjson.loads(e.value)["event_id"]
        for e in ShopSimulator(seed=5, bad_event_ratio=0).events(50)
    ]
    assert a == b


def test_default_start_is_now() -> None:
    before = datetime.now(UTC)
    first = next(ShopSimulator(bad_event_ratio=0).events(1))
    occurred = datetime.fromisoformat(orjson.loads(first.value)["occurred_at"])
    assert before <= occurred <= datetime.now(UTC) + timedelta(seconds=10)


def test_naive_start_is_taken_as_utc() -> None:
    naive = next(ShopSimulator(start=START.replace(tzinfo=None), bad_event_ratio=0).events(1))
    aware = next(ShopSimulator(start=START, bad_event_ratio=0).events(1))
    assert naive == aware


def test_sim_event_is_frozen() -> None:
    event = SimEvent("purchases", b"k", b"{}", "purchase")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.kind = "other"  # type: ignore[misc]  # read-only: what this test checks


@pytest.mark.parametrize(
    "kwargs",
    [{"customers": 0}, {"customers": 5, "self_referrers": 6}, {"self_referrers": -1},
     {"bad_event_ratio": -0.1}, {"bad_event_ratio": 1.0}],
)  # fmt: skip
def test_rejects_impossible_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ShopSimulator(**kwargs)


# -- the mix --------------------------------------------------------------------------------------


def test_every_kind_appears(events: list[SimEvent]) -> None:
    assert {e.kind for e in events} == ALL_KINDS


def test_kind_mix_is_roughly_as_configured(events: list[SimEvent]) -> None:
    kinds = Counter(e.kind for e in events)
    bad = sum(kinds[k] for k in BAD_KINDS)
    assert 0.006 <= bad / N <= 0.014
    assert 0.006 <= kinds["duplicate"] / N <= 0.014
    assert kinds.most_common(1)[0][0] == "purchase"
    assert 0.4 <= kinds["purchase"] / N <= 0.6
    assert kinds["refund"] < kinds["purchase"] / 5
    assert kinds["self_referral"] < kinds["referral_signed_up"] / 2
    assert kinds["referral_signed_up"] < kinds["referral_invited"]
    assert all(kinds[k] >= 10 for k in BAD_KINDS)


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.3])
def test_bad_event_ratio_is_honoured(ratio: float) -> None:
    kinds = Counter(e.kind for e in ShopSimulator(bad_event_ratio=ratio, start=START).events(5000))
    share = sum(kinds[k] for k in BAD_KINDS) / 5000
    assert abs(share - ratio) <= 0.02


def test_no_self_referrals_without_self_referrers() -> None:
    kinds = Counter(e.kind for e in ShopSimulator(self_referrers=0, start=START).events(5000))
    assert kinds["self_referral"] == 0
    assert kinds["referral_signed_up"] > 0


def test_currencies_amounts_and_redemptions(events: list[SimEvent]) -> None:
    purchases = [v for e, v in _good(events) if e.kind == "purchase"]
    currencies = Counter(v["currency"] for v in purchases)
    assert currencies.most_common(1)[0][0] == "EUR"
    assert currencies["EUR"] / len(purchases) > 0.7
    assert currencies["USD"] > 0 and currencies["GBP"] > 0
    assert all(_is_int(v["amount_cents"]) and v["amount_cents"] > 0 for v in purchases)
    redeemed = [v["points_redeemed"] for v in purchases if "points_redeemed" in v]
    assert 0.02 < len(redeemed) / len(purchases) < 0.2
    assert all(_is_int(p) and p > 0 for p in redeemed)


# -- the contract ---------------------------------------------------------------------------------


def test_good_events_follow_the_spec(events: list[SimEvent]) -> None:
    for event, value in _good(events):
        assert spec_errors(event.topic, value) == [], (event.kind, value)
        assert len(event.value) <= OVERSIZE_LIMIT


def test_keys_match_the_id_field(events: list[SimEvent]) -> None:
    for event in events:
        if event.kind == "bad_json":
            continue
        value = orjson.loads(event.value)
        assert event.key == value[KEY_FIELDS[event.topic]].encode(), event.kind


def test_topics_match_kinds(events: list[SimEvent]) -> None:
    topics = {
        "purchase": "purchases", "refund": "purchases", "complaint": "complaints",
        "survey": "survey-responses", "referral_invited": "referrals",
        "referral_signed_up": "referrals", "self_referral": "referrals",
        "bad_currency": "purchases", "oversized": "purchases",
    }  # fmt: skip
    for event in events:
        assert event.topic in KEY_FIELDS
        if event.kind in topics:
            assert event.topic == topics[event.kind], event.kind


def test_event_times_advance_a_few_seconds_apart(events: list[SimEvent]) -> None:
    times = [datetime.fromisoformat(v["occurred_at"]) for _, v in _good(events)]
    assert times[0] > START
    gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
    assert min(gaps) >= 0
    assert sum(gaps) / len(gaps) < 10
    assert all(v["occurred_at"].endswith("Z") for _, v in _good(events))


def test_event_ids_are_unique_uuids(events: list[SimEvent]) -> None:
    ids = [v["event_id"] for _, v in _good(events)]
    assert len(ids) == len(set(ids))
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i)
        for i in ids
    )


def test_duplicates_resend_an_earlier_event_exactly(events: list[SimEvent]) -> None:
    seen: set[tuple[str, bytes | None, bytes]] = set()
    for event in events:
        record = (event.topic, event.key, event.value)
        if event.kind == "duplicate":
            assert record in seen
        elif event.kind in GOOD_KINDS:
            seen.add(record)


# -- realistic relations between events ----------------------------------------------------------


def test_refunds_refund_earlier_orders(events: list[SimEvent]) -> None:
    orders: dict[str, dict[str, Any]] = {}
    full = partial = 0
    for event, value in _good(events):
        if event.kind == "purchase":
            orders[value["order_id"]] = value
        elif event.kind == "refund":
            order = orders.pop(value["order_id"])  # refunded once, after it was bought
            assert value["customer_id"] == order["customer_id"]
            assert value["currency"] == order["currency"]
            assert 0 < value["amount_cents"] <= order["amount_cents"]
            full += value["amount_cents"] == order["amount_cents"]
            partial += value["amount_cents"] < order["amount_cents"]
    assert full > 0 and partial > 0


def test_complaints_and_follow_up_surveys(events: list[SimEvent]) -> None:
    orders: dict[str, str] = {}
    complaints: dict[str, dict[str, Any]] = {}
    scores: dict[str, list[int]] = {"none": [], "low": [], "critical": []}
    for event, value in _good(events):
        if event.kind == "purchase":
            orders[value["order_id"]] = value["customer_id"]
        elif event.kind == "complaint":
            if "order_id" in value:
                assert orders[value["order_id"]] == value["customer_id"]
            complaints[value["complaint_id"]] = value
        elif event.kind == "survey" and "complaint_id" in value:
            complaint = complaints.pop(value["complaint_id"])
            assert complaint["customer_id"] == value["customer_id"]
            scores.setdefault(complaint["severity"], []).append(value["score"])
        elif event.kind == "survey":
            scores["none"].append(value["score"])
    severities = Counter(v["severity"] for v in complaints.values())
    assert set(severities) == {"low", "medium", "high", "critical"}

    def mean(xs: list[int]) -> float:
        return sum(xs) / len(xs)

    assert mean(scores["critical"]) < mean(scores["low"]) < mean(scores["none"])
    assert mean(scores["none"]) > 7  # most ordinary answers are promoters
    assert min(scores["critical"]) <= 3


def test_honest_sign_ups_follow_an_invitation(events: list[SimEvent]) -> None:
    invites: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()  # customer ids that appeared so far
    referees: set[str] = set()
    for event, value in _good(events):
        seen.update(value[f] for f in ("customer_id", "referrer_id") if f in value)
        if event.kind == "referral_invited":
            invites[value["referral_id"]] = value
        elif event.kind == "referral_signed_up":
            invite = invites.pop(value["referral_id"])
            assert invite["referrer_id"] == value["referrer_id"]
            assert invite["referral_code"] == value["referral_code"]
            assert value["context"]["email"] == invite["invitee_email"]
        if event.kind in ("referral_signed_up", "self_referral"):
            assert value["referee_id"] not in seen  # a new customer
            assert value["referee_id"] != value["referrer_id"]
            referees.add(value["referee_id"])
    assert referees


def _known_contexts(events: list[SimEvent]) -> dict[str, set[tuple[str, str]]]:
    """Signals seen per customer: from their purchases' context and their own sign-up."""
    known: dict[str, set[tuple[str, str]]] = {}
    for event, value in _good(events):
        if event.topic == "purchases" and value.get("context"):
            known.setdefault(value["customer_id"], set()).update(_fingerprints(value["context"]))
    return known


def test_self_referrers_share_signals_with_their_referees(events: list[SimEvent]) -> None:
    known = _known_contexts(events)
    self_referrals = [v for e, v in _good(events) if e.kind == "self_referral"]
    referrers = {v["referrer_id"] for v in self_referrals}
    assert 1 <= len(referrers) <= 8
    checked = 0
    for value in self_referrals:
        if value["referrer_id"] in known:
            assert _fingerprints(value["context"]) & known[value["referrer_id"]], value
            checked += 1
    assert checked >= 0.9 * len(self_referrals)
    aliases = [v["context"]["email"] for v in self_referrals]
    assert any("+" in a for a in aliases)  # a +tag alias of the referrer's mailbox


def test_honest_referees_share_nothing_with_their_referrer(events: list[SimEvent]) -> None:
    known = _known_contexts(events)
    for event, value in _good(events):
        if event.kind == "referral_signed_up" and value["referrer_id"] in known:
            assert not _fingerprints(value["context"]) & known[value["referrer_id"]]


# -- bad inputs -----------------------------------------------------------------------------------


def test_bad_events_are_really_bad(events: list[SimEvent]) -> None:
    for event in events:
        if event.kind == "bad_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(event.value)
            continue
        if event.kind not in BAD_KINDS:
            continue
        errors = spec_errors(event.topic, orjson.loads(event.value))
        if event.kind == "oversized":
            assert errors == []  # well-formed, only far too big
            assert 90_000 <= len(event.value) <= 120_000 and len(event.value) > OVERSIZE_LIMIT
        elif event.kind == "bad_currency":
            assert errors == ["currency: 'XYZ'"]
        elif event.kind == "bad_type":
            assert len(errors) == 1 and errors[0].startswith("type: "), errors
        else:
            assert len(errors) == 1 and errors[0].startswith("missing: "), errors


def test_bad_events_spread_over_topics(events: list[SimEvent]) -> None:
    topics = {e.topic for e in events if e.kind in ("bad_json", "bad_type", "missing_field")}
    assert topics == set(KEY_FIELDS)


# -- the real codec (schemas.codec), once it is importable ---------------------------------------

EXPECTED_REASONS = {
    "bad_json": "invalid_json",
    "bad_currency": "unknown_currency",
    "bad_type": "wrong_type",
    "missing_field": "schema_violation",
    "oversized": "oversized",
}


def test_codec_accepts_good_and_rejects_bad_events(events: list[SimEvent]) -> None:
    codec_module = _codec()
    codec = codec_module.Codec()
    for event in events:
        if event.kind in BAD_KINDS:
            with pytest.raises(codec_module.DecodeError) as caught:
                codec.decode(event.topic, event.value)
            assert caught.value.reason == EXPECTED_REASONS[event.kind], event.kind
        else:
            decoded = codec.decode(event.topic, event.value)
            assert decoded.event_id == orjson.loads(event.value)["event_id"]


def test_events_against_the_published_json_schemas(events: list[SimEvent]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    codec_module = _codec()
    validator = jsonschema.Draft202012Validator
    validators = {
        topic: validator(codec_module.load_schema(topic), format_checker=validator.FORMAT_CHECKER)
        for topic in KEY_FIELDS
    }
    for event in events[:5000] + [e for e in events if e.kind in BAD_KINDS]:
        if event.kind == "bad_json":
            continue
        errors = list(validators[event.topic].iter_errors(orjson.loads(event.value)))
        if event.kind in BAD_KINDS and event.kind != "oversized":  # size is no schema matter
            assert errors, event.kind
        else:
            assert errors == [], (event.kind, [e.message for e in errors])
