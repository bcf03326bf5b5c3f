"""The account table read back from its changelog: the latest account of every customer."""

from __future__ import annotations

from processors.account import Account
from streams.adapters.account_codec import decode_account
from streams.adapters.topic_reader import read_to_end
from streams.settings import Settings


def account_table(settings: Settings, timeout_s: float = 60.0) -> dict[str, Account]:
    """The accounts changelog's latest record per customer; a tombstone removes the customer
    (keys starting with `\\x00` are the first-seen marks kept beside the accounts)."""
    table: dict[str, Account] = {}
    for msg in read_to_end(settings.kafka_bootstrap_servers, settings.changelog_topic(), timeout_s):
        key = msg.key() or b""
        if key[:1] == b"\x00":  # kept beside the accounts (first-seen marks), not an account
            continue
        customer_id, raw = key.decode(), msg.value()
        if raw is None:
            table.pop(customer_id, None)
        else:
            table[customer_id] = decode_account(raw)
    return table
