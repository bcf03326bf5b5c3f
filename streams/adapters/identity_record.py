"""The purchases' signals recorded in the identity index, and the late evidence they reveal.

Two rounds of per-slot calls (`identity_lua`): the referral partners of the
customers whose rows carry a late kind (their `ref:by` and `ref:of` sets), then one row per
signal set: the partners' scores in it, then every customer of the batch that showed it added
with the purchase's time (ZADD GT, one command per set), and the customers' reverse index
(`id-of`).
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.adapters.identity_lua import (
    ADD,
    MEMBERS,
    ROWS_SCRIPT,
    SCORES_AND_ADD_ALL,
    Calls,
    members,
)
from streams.adapters.redis_client import RedisClient, SlotScript

LATE_KINDS = frozenset(("email", "device", "payment", "address"))
"""Signals that count as evidence whenever they show up (IP and agent count only close in time)."""
Row = tuple[str, int, str, str, str]
"""(customer, time, kind, keyed hash, event id): one signal a purchase showed."""
Found = tuple[str, str, str, str, str]
"""(referrer, referee, kind, keyed hash, event id): late evidence."""
Partners = dict[str, tuple[list[str], list[str]]]
"""customer -> (their referrers, their referees), sorted; only customers that have any."""


class SignalRecorder:
    """Records a batch's signal rows and finds its late evidence."""

    def __init__(self, client: RedisClient, namespace: str, ttl_s: int) -> None:
        self._script = SlotScript(client, ROWS_SCRIPT)
        self._head = (ttl_s, 0)
        self._ns = namespace
        self._by, self._of = f"{namespace}:ref:by:", f"{namespace}:ref:of:"

    async def record(self, rows: Sequence[Row]) -> list[Found]:
        """Record the rows (with the reverse index) and return the late evidence: a referral
        partner of the customer already in the same signal set, the batch's earlier rows (and
        this one) included."""
        partners = await self._partners({row[0] for row in rows if row[2] in LATE_KINDS})
        prefix = f"{self._ns}:id:"
        names: list[str] = []
        sets: dict[str, tuple[set[str], list[str | int]]] = {}
        """signal set -> (the partners to look up in it, its (score, member) pairs)"""
        signal_sets: dict[str, list[str]] = {}
        for customer, at, kind, digest, _ in rows:
            name = f"{prefix}{kind}:{digest}"
            names.append(name)
            found = sets.get(name)
            if found is None:
                found = sets[name] = (set(), [])
            found[1].extend((at, customer))
            ours = partners.get(customer) if kind in LATE_KINDS else None
            if ours is not None:
                found[0].update(ours[0], ours[1])
            customer_sets = signal_sets.get(customer)
            if customer_sets is None:
                signal_sets[customer] = [name]
            else:
                customer_sets.append(name)
        calls = Calls(self._script, self._head)
        asked: dict[str, tuple[int, list[str]]] = {}
        for name, (wanted, pairs) in sets.items():
            looked = sorted(wanted)
            asked[name] = (
                calls.row(name, SCORES_AND_ADD_ALL, len(looked), *looked, *pairs),
                looked,
            )
        for customer, added in signal_sets.items():
            calls.row(f"{self._ns}:id-of:{customer}", ADD, *added)
        replies = await calls.send()
        if not partners:
            return []
        before = {name: dict(zip(looked, replies[i], strict=True))
                  for name, (i, looked) in asked.items() if looked}  # fmt: skip
        return _late(rows, names, partners, before)

    async def _partners(self, customers: set[str]) -> Partners:
        """The customers' referral partners (one round; none for no customers)."""
        if not customers:
            return {}
        ordered = sorted(customers)
        calls = Calls(self._script, self._head)
        for customer in ordered:
            calls.row(self._by + customer, MEMBERS)
            calls.row(self._of + customer, MEMBERS)
        replies = await calls.send()
        partners: Partners = {}
        for i, customer in enumerate(ordered):
            by, of = replies[2 * i], replies[2 * i + 1]
            if by or of:
                partners[customer] = (sorted(members(by)), sorted(members(of)))
        return partners


def _late(
    rows: Sequence[Row],
    names: list[str],
    partners: Partners,
    before: dict[str, dict[str, bytes | None]],
) -> list[Found]:
    """Rows in turn: a partner in the set before the batch, or put there by this or an earlier
    row of the batch."""
    here: dict[str, set[str]] = {name: set() for name in before}
    found: list[Found] = []
    for (customer, _, kind, digest, event_id), name in zip(rows, names, strict=True):
        seen = here.get(name)
        if seen is None:
            continue
        seen.add(customer)
        ours = partners.get(customer) if kind in LATE_KINDS else None
        if ours is None:
            continue
        ups, downs = ours
        scores = before[name]
        found += [(up, customer, kind, digest, event_id)
                  for up in ups if up in seen or scores[up] is not None]  # fmt: skip
        found += [(customer, down, kind, digest, event_id)
                  for down in downs if down in seen or scores[down] is not None]  # fmt: skip
    return found
