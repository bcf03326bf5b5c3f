"""Which id each input topic is keyed (and so partitioned) by, and whether a record's key agrees."""

from __future__ import annotations

KEY_FIELDS: dict[str, str] = {
    "purchases": "customer_id",
    "complaints": "customer_id",
    "referrals": "referrer_id",
    "survey-responses": "customer_id",
    "fraud-decisions": "referee_id",
    "referral-commands": "customer_id",
    "gift-card-orders": "customer_id",
    "account-commands": "customer_id",
}
"""Topic (base name) -> the event field that must equal the Kafka key, so that per-customer
state stays on one partition."""


def expected_key(topic: str, event: object) -> str:
    """The partition key an event of `topic` must carry."""
    value = getattr(event, KEY_FIELDS[topic])
    if not isinstance(value, str):
        raise TypeError(f"{KEY_FIELDS[topic]} must be a string")
    return value


CUSTOMER_FIELDS = ("customer_id", "referrer_id", "referee_id")
"""Ids that name an account (a stored key: `<customer>` and `<customer>\x00o<order id>`)."""


def key_mismatch(topic: str, event: object, key: bytes | None) -> str | None:
    """Why the record key disagrees with the event's partition key, or None if it agrees.

    Per-customer state lives on the partition of the customer's key: a missing key or one that names
    another id would update that state on the wrong partition, so both are rejected.
    """
    for field in CUSTOMER_FIELDS:
        value = getattr(event, field, None)
        if isinstance(value, str) and "\x00" in value:
            return f"{field} contains NUL, which no customer id may (it would name stored records)"
    want = expected_key(topic, event)
    if key is None:
        return f"record has no key; expected {KEY_FIELDS[topic]} {want!r}"
    if key == want.encode():
        return None
    shown = key[:64].decode("utf-8", "replace")
    return f"record key {shown!r} differs from {KEY_FIELDS[topic]} {want!r}"
