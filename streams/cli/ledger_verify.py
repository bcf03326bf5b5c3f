"""`rewards ledger verify`: rebuild every balance from `points-ledger`, compare with the state.

The rule (schemas/README.md, points-ledger): entries are de-duplicated by `entry_id`, and for
each (customer_id, sequence) the record at the highest offset is authoritative (a new entry of
sequence 1 starts the customer's chain again: erased, then a new account). A customer's
sequences must then run 1, 2, 3, ... without a gap, and each entry's afters must be the previous
afters plus its deltas; the last entry's afters and sequence are the rebuilt balance. It is
compared with the account table (the accounts changelog's latest record per customer) and with
the Redis mirror (`<app_id>:points:<customer_id>` hashes). Customers with ledger entries but no
account (erased, or not stored yet) are listed apart and are not a difference.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import msgspec
from tqdm import tqdm

from processors.account import Account
from schemas.outputs import PointsLedgerEntry
from streams.adapters.points_mirror import mirror_namespace
from streams.adapters.redis_client import connect_sync
from streams.adapters.topic_reader import read_to_end
from streams.cli.account_table import account_table
from streams.settings import Settings


@dataclass(frozen=True)
class Balance:
    """A customer's balances and ledger sequence."""

    pending: int
    available: int
    sequence: int


@dataclass
class Verification:
    """What `verify` found: counts, the customers only in the ledger, and every difference."""

    records: int = 0
    entries: int = 0
    customers: int = 0
    compared: int = 0
    mirrored: int = 0
    unstored: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


def read_ledger(
    settings: Settings, found: Verification, progress: bool, timeout_s: float
) -> dict[str, dict[int, PointsLedgerEntry]]:
    """The ledger's authoritative entries per customer, by sequence."""
    by_customer: dict[str, dict[int, PointsLedgerEntry]] = {}
    seen: set[str] = set()
    bar = tqdm(desc="points-ledger", unit="rec", file=sys.stderr, disable=not progress)
    decoder = msgspec.json.Decoder(PointsLedgerEntry)
    try:
        topic = settings.topic("points-ledger")
        for msg in read_to_end(
            settings.kafka_bootstrap_servers, topic, timeout_s, on_start=bar.reset
        ):
            bar.update()
            found.records += 1
            try:
                entry = decoder.decode(msg.value() or b"")
            except msgspec.DecodeError as exc:
                found.differences.append(
                    f"ledger record at {msg.partition()}:{msg.offset()} "
                    f"(key {(msg.key() or b'').decode(errors='replace')}) is not valid: {exc}"
                )
                continue
            if entry.entry_id in seen:
                continue
            seen.add(entry.entry_id)
            add_entry(by_customer, entry)
    finally:
        bar.close()
    found.entries = len(seen)
    return by_customer


def add_entry(by_customer: dict[str, dict[int, PointsLedgerEntry]], e: PointsLedgerEntry) -> None:
    """Record a new entry (the latest of its sequence); a new sequence 1 starts a new chain
    (the account was erased and started again)."""
    chain = by_customer.setdefault(e.customer_id, {})
    if e.sequence == 1:
        chain.clear()
    chain[e.sequence] = e


def rebuild(customer_id: str, entries: dict[int, PointsLedgerEntry]) -> tuple[Balance, list[str]]:
    """A customer's balance from their entries, and what is wrong with the chain."""
    problems: list[str] = []
    pending = available = 0
    for expected, sequence in enumerate(sorted(entries), start=1):
        if sequence != expected:
            problems.append(f"customer {customer_id}: ledger sequence {expected} missing")
            break
        e = entries[sequence]
        pending, available = pending + e.pending_delta, available + e.available_delta
        if (pending, available) != (e.pending_after, e.available_after):
            problems.append(
                f"customer {customer_id}: entry {e.entry_id} (sequence {sequence}) says "
                f"{e.pending_after}/{e.available_after} after, deltas give {pending}/{available}"
            )
            pending, available = e.pending_after, e.available_after
    last = entries[max(entries)]
    return Balance(last.pending_after, last.available_after, last.sequence), problems


def compare(
    customer_id: str, rebuilt: Balance | None, account: Account, mirror: dict[str, str] | None
) -> list[str]:
    """The differences between one customer's rebuilt balance, account and mirror hash."""
    stored = Balance(account.points.pending, account.points.available, account.points.sequence)
    differences = []
    if rebuilt is None and stored.sequence > 0:
        differences.append(f"customer {customer_id}: account {_show(stored)}, no ledger entries")
    elif rebuilt is not None and rebuilt != stored:
        differences.append(
            f"customer {customer_id}: ledger rebuilds {_show(rebuilt)}, account {_show(stored)}"
        )
    if mirror is None:
        if stored.sequence > 0:
            differences.append(f"customer {customer_id}: account {_show(stored)}, not in Redis")
        return differences
    try:
        mirrored = Balance(*(int(mirror[k]) for k in ("pending", "available", "sequence")))
    except (KeyError, ValueError):
        mirrored = None
    if mirrored != stored:
        differences.append(f"customer {customer_id}: account {_show(stored)}, Redis {mirror}")
    return differences


def _show(b: Balance) -> str:
    """pending/available @ sequence."""
    return f"{b.pending} pending/{b.available} available at sequence {b.sequence}"


def read_mirror(settings: Settings) -> dict[str, dict[str, str]]:
    """Every balance hash of the app in Redis, by customer id."""
    prefix = f"{mirror_namespace(settings.app_id)}:"
    client = connect_sync(
        settings.redis_url, cluster=settings.redis_cluster_mode, decode_responses=True
    )
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return {k[len(prefix) :]: v for k, v in zip(keys, pipe.execute(), strict=True) if v}
    finally:
        client.close()


def verify(settings: Settings, progress: bool = False, timeout_s: float = 120.0) -> Verification:
    """Rebuild every balance from the ledger and compare it with the table and the mirror."""
    found = Verification()
    ledger = read_ledger(settings, found, progress, timeout_s)
    table = account_table(settings, timeout_s)
    mirror = read_mirror(settings)
    found.customers, found.mirrored = len(ledger), len(mirror)
    for customer_id in sorted(ledger.keys() - table.keys()):
        found.unstored.append(customer_id)
    for customer_id in sorted(table):
        rebuilt = None
        if customer_id in ledger:
            rebuilt, problems = rebuild(customer_id, ledger[customer_id])
            found.differences += problems
        found.compared += 1
        found.differences += compare(
            customer_id, rebuilt, table[customer_id], mirror.get(customer_id)
        )
    for customer_id in sorted(mirror.keys() - table.keys()):
        found.differences.append(
            f"customer {customer_id}: in Redis {mirror[customer_id]}, no account"
        )
    return found
