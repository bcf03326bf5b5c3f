"""Pure tests of the delivery classification and the partition-key rule."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from processors.delivery import Delivery, Position, classify_delivery
from processors.routing import KEY_FIELDS, expected_key, key_mismatch
from schemas.codec import CONTROL_TOPICS, INPUT_TOPICS

HERE = Position("purchases", 3, 41)


@pytest.mark.parametrize(
    ("first_seen", "expected"),
    [
        (None, Delivery.NEW),
        ("3:41", Delivery.REDELIVERY),
        ("3:40", Delivery.DUPLICATE),
        ("2:41", Delivery.DUPLICATE),
        ("13:41", Delivery.DUPLICATE),
    ],
    ids=[
        "never-seen",
        "same-record-again",
        "earlier-offset",
        "other-partition",
        "no-prefix-collision",
    ],
)
def test_classify_delivery(first_seen: str | None, expected: Delivery) -> None:
    assert classify_delivery(first_seen, HERE) is expected


def test_position_token_is_partition_and_offset() -> None:
    assert HERE.token() == "3:41"
    assert Position("x", 0, 0).token() != Position("x", 0, 1).token()


@dataclass(frozen=True)
class Fake:
    customer_id: str = "c-1"
    referrer_id: str = "r-9"
    referee_id: str = "e-3"


@pytest.mark.parametrize("topic", sorted(KEY_FIELDS))
def test_matching_key_is_accepted(topic: str) -> None:
    event = Fake()
    assert key_mismatch(topic, event, expected_key(topic, event).encode()) is None


@pytest.mark.parametrize(
    ("topic", "key", "fragment"),
    [
        ("purchases", b"c-2", "differs from customer_id 'c-1'"),
        ("referrals", b"c-1", "differs from referrer_id 'r-9'"),
        ("complaints", None, "no key"),
        ("survey-responses", b"\xff\xfe", "differs"),
    ],
)
def test_wrong_or_missing_key_is_reported(topic: str, key: bytes | None, fragment: str) -> None:
    reason = key_mismatch(topic, Fake(), key)
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize("field", ["customer_id", "referrer_id", "referee_id"])
def test_an_id_with_nul_is_refused_even_with_a_matching_key(field: str) -> None:
    """`a\x00ob` would name order `b` of customer `a` in the store."""
    event = Fake(**{field: "c-1\x00oorder-7"})
    reason = key_mismatch("purchases", event, expected_key("purchases", event).encode())
    assert reason is not None and field in reason and "NUL" in reason


def test_every_input_topic_has_a_key_field() -> None:
    assert set(KEY_FIELDS) == set(INPUT_TOPICS + CONTROL_TOPICS)
    assert (KEY_FIELDS["fraud-decisions"], KEY_FIELDS["referral-commands"]) == (
        "referee_id",
        "customer_id",
    )
