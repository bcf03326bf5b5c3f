"""The account table read back from its changelog: the latest account of every customer."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Message

from processors.account import Account
from streams.adapters.order_records import assemble
from streams.adapters.topic_reader import read_to_end
from streams.settings import Settings


def account_table(settings: Settings, timeout_s: float = 60.0) -> dict[str, Account]:
    """The accounts of the accounts changelog (`table_of`), read to its end."""
    changelog = read_to_end(settings.kafka_bootstrap_servers, settings.changelog_topic(), timeout_s)
    return table_of(changelog)


def table_of(changelog: Iterable[Message]) -> dict[str, Account]:
    """The latest record of every key, in changelog order, assembled into accounts with their
    orders (each order is a record of its own: `streams/adapters/order_records.py`); a
    tombstone removes its key. Keys starting with `\\x00` are kept beside the accounts
    (first-seen marks, metadata), not accounts."""
    latest: dict[bytes, bytes] = {}
    for msg in changelog:
        key, raw = msg.key() or b"", msg.value()
        if key[:1] == b"\x00":
            continue
        if raw is None:
            latest.pop(key, None)
        else:
            latest[key] = raw
    return {account.customer_id: account for account in assemble(sorted(latest.items()))}
