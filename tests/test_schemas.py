"""The v1 contract: JSON Schema files, examples, models and codec agree with each other."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas import (
    CONTROL_TOPICS,
    CURRENCIES,
    INPUT_MODELS,
    INPUT_TOPICS,
    OUTPUT_MODELS,
    OUTPUT_TOPICS,
    REASONS,
    Codec,
    Context,
    DeadLetter,
    DeadLetterSource,
    DecodeError,
    FraudRuleHit,
    FraudThresholds,
    GiftCard,
    Purchase,
    RewardIssued,
    ShippingAddress,
    encode,
    load_schema,
    schema_path,
)
from schemas.codec import MAX_DEPTH, SCHEMA_DIR

DECODED_TOPICS = INPUT_TOPICS + CONTROL_TOPICS
ALL_TOPICS = DECODED_TOPICS + OUTPUT_TOPICS
EXAMPLES = sorted((SCHEMA_DIR / "examples").glob("*.json"))
MAX_BYTES = 65536
CODEC = Codec(max_event_bytes=MAX_BYTES)

FORMATS = FormatChecker(formats=())


def _is_rfc3339(value: object) -> bool:
    """jsonschema's own date-time check needs an optional package; this one is strict enough."""
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z" too
    return parsed.tzinfo is not None


FORMATS.checks("date-time", raises=ValueError)(_is_rfc3339)


def topic_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def validator(topic: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(topic), format_checker=FORMATS)


VALIDATORS = {topic: validator(topic) for topic in ALL_TOPICS}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / "examples" / f"{name}.json").read_bytes())
    return data


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def schema_accepts(topic: str, raw: bytes) -> bool:
    """What a jsonschema-based consumer would conclude about the raw bytes."""
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except ValueError:
        return False
    return bool(VALIDATORS[topic].is_valid(value))


def codec_reason(topic: str, raw: bytes) -> str | None:
    try:
        CODEC.decode(topic, raw)
    except DecodeError as err:
        return err.reason
    return None


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# --------------------------------------------------------------------------- schema files


def walk_properties(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every property declaration anywhere in a schema, with where it is."""
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{path}.{name}", sub
        for key, sub in node.items():
            if key != "examples":
                yield from walk_properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from walk_properties(sub, f"{path}[{index}]")


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_schema_file_is_a_documented_open_draft_2020_12_schema(topic: str) -> None:
    schema = load_schema(topic)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://schemas.rewards.example/v1/{topic}.schema.json"
    assert schema["title"] and schema["description"]
    assert schema["type"] == "object"
    assert schema.get("additionalProperties", True) is not False
    assert schema["examples"]
    undocumented = [path for path, sub in walk_properties(schema) if not sub.get("description")]
    assert undocumented == []
    assert schema_path(topic).name == f"{topic}.schema.json"


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_every_topic_has_at_least_two_example_files(topic: str) -> None:
    assert len([p for p in EXAMPLES if topic_of(p) == topic]) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_file_is_valid_for_schema_and_runtime(path: Path) -> None:
    topic = topic_of(path)
    raw = path.read_bytes()
    errors = [e.message for e in VALIDATORS[topic].iter_errors(json.loads(raw))]
    assert errors == []
    if topic in DECODED_TOPICS:
        assert isinstance(CODEC.decode(topic, raw), INPUT_MODELS[topic])
    else:
        assert isinstance(msgspec.json.decode(raw, type=OUTPUT_MODELS[topic]), OUTPUT_MODELS[topic])


@pytest.mark.parametrize("topic", ALL_TOPICS)
def test_inline_schema_examples_are_valid(topic: str) -> None:
    for instance in load_schema(topic)["examples"]:
        assert VALIDATORS[topic].is_valid(instance)
        msgspec.convert(instance, type=(INPUT_MODELS | OUTPUT_MODELS)[topic], strict=False)


def test_currency_enum_is_identical_in_every_schema_and_at_runtime() -> None:
    enums = {
        topic: schema["$defs"]["currency"]["enum"]
        for topic in ALL_TOPICS
        if "currency" in (schema := load_schema(topic)).get("$defs", {})
    }
    assert set(enums) >= {"purchases", "rewards-issued"}
    reference = enums["purchases"]
    assert all(codes == reference for codes in enums.values())
    assert reference == sorted(set(reference))
    assert all(re.fullmatch("[A-Z]{3}", code) for code in reference)
    assert frozenset(reference) == CURRENCIES
    assert {"USD", "EUR", "GBP", "JPY"} <= CURRENCIES
    assert not {"XXX", "XTS"} & CURRENCIES


def test_shared_definitions_are_identical_across_schemas() -> None:
    for name in ("id", "timestamp", "context", "shipping_address", "amount_cents"):
        found = [s["$defs"][name] for t in ALL_TOPICS if name in (s := load_schema(t))["$defs"]]
        assert len(found) >= 2, name
        assert all(item == found[0] for item in found), name


MODELS_BY_SCHEMA: list[tuple[str, str, type]] = [
    *[(topic, "", model) for topic, model in (INPUT_MODELS | OUTPUT_MODELS).items()],
    ("purchases", "$defs/context", Context),
    ("purchases", "$defs/shipping_address", ShippingAddress),
    ("rewards-issued", "properties/gift_card", GiftCard),
    ("fraud-alerts", "properties/thresholds", FraudThresholds),
    ("fraud-alerts", "properties/rules/items", FraudRuleHit),
    ("dead-letter", "properties/source", DeadLetterSource),
]


@pytest.mark.parametrize(
    ("topic", "pointer", "model"),
    MODELS_BY_SCHEMA,
    ids=[m.__name__ for _, _, m in MODELS_BY_SCHEMA],
)
def test_model_fields_match_schema_properties(topic: str, pointer: str, model: type) -> None:
    node = load_schema(topic)
    for part in filter(None, pointer.split("/")):
        node = node[int(part)] if isinstance(node, list) else node[part]
    fields = msgspec.structs.fields(model)
    assert list(node["properties"]) == [f.name for f in fields]
    no_default = {f.name for f in fields if f.required}
    assert set(node.get("required", [])) == no_default


def test_codec_constants() -> None:
    assert REASONS == (
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
    assert INPUT_TOPICS == ("purchases", "complaints", "referrals", "survey-responses")
    assert CONTROL_TOPICS == (
        "fraud-decisions",
        "referral-commands",
        "gift-card-orders",
        "account-commands",
    )
    assert set(INPUT_MODELS) == set(DECODED_TOPICS)
    assert set(OUTPUT_MODELS) == set(OUTPUT_TOPICS)
    err = DecodeError("key_mismatch", "record has no key")
    assert isinstance(err, ValueError)
    assert (err.reason, err.detail) == ("key_mismatch", "record has no key")


# --------------------------------------------------------------------------- conformance corpus

BASES = {
    "purchases": "purchases.with-context",
    "complaints": "complaints.with-order",
    "referrals": "referrals.signed-up",
    "survey-responses": "survey-responses.complaint-follow-up",
    "fraud-decisions": "fraud-decisions.approve",
    "referral-commands": "referral-commands.credit-referrer",
    "gift-card-orders": "gift-card-orders.critical",
    "account-commands": "account-commands.adjust-credit",
}
"""A rich valid example per input topic; every invalid variant is derived from it."""

CONDITIONALLY_REQUIRED = {
    "referrals": ["referee_id", "context"],
    "referral-commands": ["points", "release_at", "order_id"],
    "account-commands": ["points", "reason", "adjustment_id"],
}
WRONG_VALUES: dict[str, dict[str, Any]] = {
    "string": {"int": 12345, "bool": True, "object": {"a": 1}},
    "integer": {"string": "12", "float": 1.5, "bool": True},
    "number": {"string": "1.5"},
    "object": {"string": "text", "array": [1]},
    "array": {"object": {"a": 1}},
}
"""JSON type of a field -> wrong values (by name) of another type."""


def resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref or the non-null branch of a nullable anyOf."""
    if "anyOf" in prop:
        prop = next(p for p in prop["anyOf"] if p.get("type") != "null")
    if "$ref" in prop:
        target = schema["$defs"][prop["$ref"].rsplit("/", 1)[1]]
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def json_type(prop: dict[str, Any]) -> str:
    kind = prop.get("type", "string")
    return str(next(t for t in kind if t != "null") if isinstance(kind, list) else kind)


def field_specs(topic: str) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """(path, resolved schema) of every field, nested context fields included."""
    schema = load_schema(topic)

    def visit(
        node: dict[str, Any], prefix: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        for name, prop in node["properties"].items():
            resolved = resolve(schema, prop)
            yield (*prefix, name), resolved
            if json_type(resolved) == "object" and "properties" in resolved:
                yield from visit(resolved, (*prefix, name))

    yield from visit(schema, ())


def with_value(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    node = doc
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return doc


def without(base: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != field}


def out_of_range(prop: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    if "minimum" in prop:
        yield "below-minimum", prop["minimum"] - 1
    if "exclusiveMinimum" in prop:
        yield "at-exclusive-minimum", prop["exclusiveMinimum"]
    if "maximum" in prop:
        yield "above-maximum", prop["maximum"] + 1
    if prop.get("minLength", 0) > 0:
        yield "too-short", "A" * (prop["minLength"] - 1)
    if "maxLength" in prop:
        yield "too-long", "A" * (prop["maxLength"] + 1)
    if "enum" in prop and not set(prop["enum"]) & CURRENCIES:
        yield "not-in-enum", "bogus"
    if prop.get("pattern") == "^[A-Z]{2}$":
        yield "lower-case", "ie"


def invalid_cases() -> Iterator[Any]:
    """(topic, raw bytes, expected reason), systematically derived from the schemas."""
    for topic in DECODED_TOPICS:
        schema = load_schema(topic)
        base = example(BASES[topic])
        for field in schema["required"] + CONDITIONALLY_REQUIRED.get(topic, []):
            doc = without(base, field)
            yield pytest.param(topic, dumps(doc), "schema_violation", id=f"{topic}-drop-{field}")
        for path, prop in field_specs(topic):
            dotted = ".".join(path)
            for kind, wrong in WRONG_VALUES[json_type(prop)].items():
                raw = dumps(with_value(base, path, wrong))
                yield pytest.param(topic, raw, "wrong_type", id=f"{topic}-{dotted}-as-{kind}")
            if len(path) == 1 and path[0] in schema["required"]:
                raw = dumps(with_value(base, path, None))
                yield pytest.param(topic, raw, "wrong_type", id=f"{topic}-{dotted}-null")
            for label, value in out_of_range(prop):
                raw = dumps(with_value(base, path, value))
                yield pytest.param(topic, raw, "schema_violation", id=f"{topic}-{dotted}-{label}")
        for label, stamp in [
            ("no-offset", "2026-11-23T10:00:00"),
            ("date-only", "2026-11-23"),
            ("month-13", "2026-13-01T10:00:00Z"),
            ("feb-30", "2026-02-30T10:00:00Z"),
            ("hour-24", "2026-11-23T24:00:00Z"),
            ("words", "yesterday"),
            ("empty", ""),
        ]:
            raw = dumps({**base, "occurred_at": stamp})
            yield pytest.param(topic, raw, "schema_violation", id=f"{topic}-timestamp-{label}")
        for label, stamp in [  # v1 tightening: years 2000-2099, so no date arithmetic overflows
            ("year-9999", "9999-12-31T23:59:59Z"),
            ("year-0001", "0001-01-01T00:00:00Z"),
            ("year-1999", "1999-12-31T23:59:59Z"),
            ("year-2100", "2100-01-01T00:00:00Z"),
        ]:
            raw = dumps({**base, "occurred_at": stamp})
            yield pytest.param(topic, raw, "out_of_range", id=f"{topic}-timestamp-{label}")
        # Padding a length-limited field makes the schema reject the event as well.
        padded = "comment" if topic == "survey-responses" else "event_id"
        pad = MAX_BYTES - len(dumps({**base, padded: ""})) + 1
        raw = dumps({**base, padded: "x" * pad})
        yield pytest.param(topic, raw, "oversized", id=f"{topic}-oversized")
        for label, raw, reason in [
            ("not-json", b"not json at all", "invalid_json"),
            ("truncated", dumps(base)[:-1], "invalid_json"),
            ("empty-bytes", b"", "invalid_json"),
            ("nan-literal", dumps(base)[:-1] + b', "x": NaN}', "invalid_json"),
            (
                "bad-utf8",
                dumps(base).replace(b'"event_id": "', b'"event_id": "\xff\xfe'),
                "invalid_json",
            ),
            ("json-array", dumps([base]), "wrong_type"),
            ("json-string", b'"hello"', "wrong_type"),
            ("json-null", b"null", "wrong_type"),
            ("json-number", b"42", "wrong_type"),
        ]:
            yield pytest.param(topic, raw, reason, id=f"{topic}-{label}")
    purchase = example("purchases.purchase")
    for label, code, reason in [
        ("unknown-XXX", "XXX", "unknown_currency"),
        ("unknown-ABC", "ABC", "unknown_currency"),
        ("withdrawn-HRK", "HRK", "unknown_currency"),
        ("lower-case", "usd", "schema_violation"),
        ("two-letters", "US", "schema_violation"),
        ("four-letters", "USDX", "schema_violation"),
        ("trailing-newline", "USD\n", "schema_violation"),
    ]:
        raw = dumps({**purchase, "currency": code})
        yield pytest.param("purchases", raw, reason, id=f"purchases-currency-{label}")
    signed_up = example("referrals.signed-up")
    invited = example("referrals.invited")
    for label, doc in [
        ("signed-up-without-referee-id", without(signed_up, "referee_id")),
        ("signed-up-null-referee-id", {**signed_up, "referee_id": None}),
        ("signed-up-without-context", without(signed_up, "context")),
        ("signed-up-null-context", {**signed_up, "context": None}),
        ("no-code-nor-id", without(without(signed_up, "referral_code"), "referral_id")),
        ("invited-no-code-nor-id", without(invited, "referral_code")),
        ("null-code-and-id", {**invited, "referral_code": None, "referral_id": None}),
    ]:
        yield pytest.param("referrals", dumps(doc), "schema_violation", id=f"referrals-{label}")


INVALID = list(invalid_cases())


@pytest.mark.parametrize(("topic", "raw", "reason"), INVALID)
def test_invalid_variant_is_rejected_by_schema_and_codec(
    topic: str, raw: bytes, reason: str
) -> None:
    assert reason in REASONS
    with pytest.raises(DecodeError) as caught:
        CODEC.decode(topic, raw)
    assert caught.value.reason == reason, caught.value.detail
    assert 0 < len(caught.value.detail) <= 500
    assert not schema_accepts(topic, raw)


def valid_variants() -> Iterator[Any]:
    for topic in DECODED_TOPICS:
        base = example(BASES[topic])
        extra = {**base, "future_field": {"nested": [1, 2.5, None]}, "x_flag": True}
        yield pytest.param(topic, dumps(extra), id=f"{topic}-extra-fields")
        schema = load_schema(topic)
        neutral = example("referrals.invited") if topic == "referrals" else base
        neutral = {**neutral, "referral_id": "ref-1"} if topic == "referrals" else neutral
        if topic == "referral-commands":  # a command whose only conditional field is order_id
            neutral = example("referral-commands.cancel-referrer")
        if topic == "account-commands":  # a command without conditional fields
            neutral = example("account-commands.forget")
        for name in schema["properties"]:
            if name not in schema["required"] and (topic, name) != (
                "referral-commands",
                "order_id",
            ):
                yield pytest.param(topic, dumps({**neutral, name: None}), id=f"{topic}-null-{name}")
                doc = without(neutral, name)
                yield pytest.param(topic, dumps(doc), id=f"{topic}-absent-{name}")
    ctx = example("purchases.with-context")
    ctx["context"]["browser_locale"] = "en-IE"
    ctx["context"]["shipping_address"]["floor"] = "3"
    yield pytest.param("purchases", dumps(ctx), id="purchases-extra-nested-fields")
    for label, stamp in [
        ("offset", "2026-11-23T10:00:00+05:30"),
        ("fraction", "2026-11-23T10:00:00.123456Z"),
        ("negative-offset", "2026-11-23T10:00:00-08:00"),
        ("lower-case-t-z", "2026-11-23t10:00:00z"),
    ]:
        raw = dumps({**example("complaints.minimal"), "occurred_at": stamp})
        yield pytest.param("complaints", raw, id=f"complaints-timestamp-{label}")
    for label, stamp in [
        ("year-2000", "2000-01-01T00:00:00Z"),
        ("year-2099", "2099-12-31T23:59:59Z"),
    ]:
        raw = dumps({**example("complaints.minimal"), "occurred_at": stamp})
        yield pytest.param("complaints", raw, id=f"complaints-timestamp-{label}")
    for label, number in [("45.0", b"45.0"), ("1e2", b"1e2"), ("minus-zero", b"-0.0")]:
        raw = dumps({**example("purchases.purchase"), "amount_cents": 7}).replace(b"7", number, 1)
        yield pytest.param("purchases", raw, id=f"integral-float-{label}")
    yield pytest.param(
        "purchases", dumps({**example("purchases.purchase"), "amount_cents": 0}), id="zero-amount"
    )
    yield pytest.param(
        "survey-responses",
        dumps({**example("survey-responses.nps"), "score": 0, "ces": 7}),
        id="survey-bounds",
    )


@pytest.mark.parametrize(("topic", "raw"), list(valid_variants()))
def test_valid_variant_is_accepted_by_schema_and_codec(topic: str, raw: bytes) -> None:
    assert codec_reason(topic, raw) is None
    assert schema_accepts(topic, raw)


def test_points_redeemed_defaults_to_zero() -> None:
    for value in ({}, {"points_redeemed": None}):
        event = CODEC.decode("purchases", dumps({**example("purchases.purchase"), **value}))
        assert isinstance(event, Purchase)
        assert event.points_redeemed == 0


def test_integral_floats_are_integers_as_in_json_schema() -> None:
    raw = dumps({**example("purchases.purchase"), "amount_cents": 7, "points_redeemed": 8})
    for amount, redeemed in [(b"45.0", b"1e1"), (b"1E2", b"-0.0"), (b"4599.000", b"0.0")]:
        event = CODEC.decode("purchases", raw.replace(b"7", amount, 1).replace(b"8", redeemed, 1))
        assert isinstance(event, Purchase)
        assert (event.amount_cents, event.points_redeemed) == (
            int(float(amount)),
            int(float(redeemed)),
        )
        assert type(event.amount_cents) is int
    for fraction in (b"45.5", b"1e-1"):
        assert codec_reason("purchases", raw.replace(b"7", fraction, 1)) == "wrong_type"


@pytest.mark.parametrize("where", ["unknown-field", "context", "array"])
def test_json_nested_deeper_than_the_limit_is_a_schema_violation(where: str) -> None:
    base = example("purchases.with-context")
    for depth, reason in [(MAX_DEPTH, None), (MAX_DEPTH + 1, "schema_violation"),
                          (10_000, "schema_violation")]:  # fmt: skip
        inner = depth - (2 if where == "context" else 1)  # levels below the field
        opener, closer = (b"[", b"]") if where == "array" else (b'{"a":', b"}")
        deep = opener * inner + b"1" + closer * inner
        doc = with_value(base, ("context", "deep") if where == "context" else ("x",), "DEEP")
        raw = dumps(doc).replace(b'"DEEP"', deep)  # built as text: encoders limit depth
        assert codec_reason("purchases", raw) == reason, (where, depth)
    strings = dumps({**base, "x": "[" * 10_000 + "{" * 10_000})  # brackets in a string: flat
    assert codec_reason("purchases", strings) is None


def test_size_limit_is_inclusive_and_checked_first() -> None:
    raw = dumps(example("complaints.minimal"))
    assert Codec(max_event_bytes=len(raw)).decode("complaints", raw)
    with pytest.raises(DecodeError) as caught:
        Codec(max_event_bytes=len(raw) - 1).decode("complaints", raw)
    assert caught.value.reason == "oversized"
    with pytest.raises(DecodeError) as caught:
        Codec(max_event_bytes=4).decode("complaints", b"not json")
    assert caught.value.reason == "oversized"


@pytest.mark.parametrize("topic", ["rewards-issued", "purchase", "", "prod.purchases"])
def test_unknown_topic(topic: str) -> None:
    with pytest.raises(DecodeError) as caught:
        CODEC.decode(topic, dumps(example("purchases.purchase")))
    assert caught.value.reason == "unknown_topic"


def test_detail_names_the_json_path_and_is_truncated() -> None:
    raw = dumps({**example("purchases.purchase"), "amount_cents": "12"})
    with pytest.raises(DecodeError) as caught:
        CODEC.decode("purchases", raw)
    assert caught.value.detail == "Expected `int`, got `str` - at `$.amount_cents`"
    raw = dumps({**example("purchases.purchase"), "type": "x" * 5000})
    with pytest.raises(DecodeError) as caught:
        CODEC.decode("purchases", raw)
    assert len(caught.value.detail) == 500


# --------------------------------------------------------------------------- outputs


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if topic_of(p) in OUTPUT_TOPICS], ids=lambda p: p.stem
)
def test_encode_round_trips_output_examples(path: Path) -> None:
    topic = topic_of(path)
    model = msgspec.json.decode(path.read_bytes(), type=OUTPUT_MODELS[topic])
    raw = encode(model)
    document = json.loads(raw)
    assert VALIDATORS[topic].is_valid(document), list(VALIDATORS[topic].iter_errors(document))
    assert msgspec.json.decode(raw, type=OUTPUT_MODELS[topic]) == model
    assert not list(null_paths(document))


def null_paths(value: Any, path: str = "$") -> Iterator[str]:
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from null_paths(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from null_paths(item, f"{path}[{index}]")


def test_encode_omits_none_and_writes_utc_as_z() -> None:
    from datetime import UTC

    letter = DeadLetter(
        reason="oversized",
        detail="record is 70000 bytes; the limit is 65536",
        source=DeadLetterSource(topic="purchases", partition=0, offset=1),
        original_value_b64="",
        failed_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        worker="host/1",
    )
    document = json.loads(encode(letter))
    assert document["failed_at"] == "2026-11-23T10:00:00Z"
    assert "original_key_b64" not in document
    assert "timestamp_ms" not in document["source"]
    assert VALIDATORS["dead-letter"].is_valid(document)


@pytest.mark.parametrize(
    ("label", "changes"),
    [
        ("points-without-points", {"kind": "points", "points": None}),
        ("gift-card-without-amount", {"kind": "gift_card", "amount_cents": None}),
        ("discount-without-currency", {"kind": "discount", "currency": None}),
    ],
)
def test_reward_kind_rules_hold_in_schema_and_model(label: str, changes: dict[str, Any]) -> None:
    base = example("rewards-issued." + ("points" if changes["kind"] == "points" else "discount"))
    document = {k: v for k, v in {**base, **changes}.items() if v is not None}
    assert not VALIDATORS["rewards-issued"].is_valid(document)
    with pytest.raises(msgspec.ValidationError, match="required"):
        msgspec.convert(document, type=RewardIssued, strict=False)


# --------------------------------------------------------------------------- differential


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)  # integral ones (45.0) are integers
    | st.sampled_from([45.0, 1e2, -0.0, 2.0**53, 1e300])
    | st.text(max_size=20)
    | st.sampled_from(["USD", "XXX", "usd", "2026-11-23T10:00:00Z", "2026-11-23", "", "A" * 300])
    | st.sampled_from(["9999-12-31T23:59:59Z", "1999-12-31T23:59:59Z", "2099-12-31T23:59:59Z"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELD_PATHS = [(topic, path) for topic in DECODED_TOPICS for path, _ in field_specs(topic)]


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(target=st.sampled_from(FIELD_PATHS), value=JSON_VALUES)
def test_schema_and_codec_agree_on_mutated_fields(
    target: tuple[str, tuple[str, ...]], value: Any
) -> None:
    topic, path = target
    raw = dumps(with_value(example(BASES[topic]), path, value))
    assert (codec_reason(topic, raw) is None) == schema_accepts(topic, raw), raw
