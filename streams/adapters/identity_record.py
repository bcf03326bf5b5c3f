"""The purchases' signals recorded in the identity index, and the late evidence they reveal.

Per-slot calls (`identity_lua`): the referral partners of the customers whose rows carry a late
kind (their `ref:by` and `ref:of` sets); then one row per signal set, every customer of the batch
that showed it added with the purchase's time (ZADD GT, one command per set), and the customers'
reverse index (`id-of`). A set that a partnered customer showed answers with its members before
the batch (signal sets are small: most hold one customer, while a referrer may have hundreds of
referees); a set larger than that is left to a last round that asks it for the partners' scores
instead, and then adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.adapters.identity_lua import (
    ADD,
    MEMBERS,
    MEMBERS_AND_ADD_ALL,
    ROWS_SCRIPT,
    SCORES_AND_ADD_ALL,
    Calls,
    members,
)
from streams.adapters.redis_client import RedisClient, SlotScript

LATE_KINDS = frozenset(("email", "device", "payment", "address"))
"""Signals that count as evidence whenever they show up (IP and agent count only close in time)."""
MEMBERS_LIMIT = 32
"""A set with at most this many members (or as many as the partners looked for) answers with
them; a larger one with the partners' scores."""
Row = tuple[str, int, str, str, str]
"""(customer, time, kind, keyed hash, event id): one signal a purchase showed."""
Found = tuple[str, str, str, str, str]
"""(referrer, referee, kind, keyed hash, event id): late evidence."""
Partners = dict[str, tuple[frozenset[str], frozenset[str]]]
"""customer -> (their referrers, their referees); only customers that have any."""
_Set = tuple[list[str], list[str | int]]
"""A signal set's partnered customers of the batch, and its (score, member) pairs."""


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
        sets: dict[str, _Set] = {}
        signal_sets: dict[str, list[str]] = {}
        for customer, at, kind, digest, _ in rows:
            name = f"{prefix}{kind}:{digest}"
            names.append(name)
            found = sets.get(name)
            if found is None:
                found = sets[name] = ([], [])
            found[1].extend((at, customer))
            if kind in LATE_KINDS and customer in partners:
                found[0].append(customer)
            customer_sets = signal_sets.get(customer)
            if customer_sets is None:
                signal_sets[customer] = [name]
            else:
                customer_sets.append(name)
        calls = Calls(self._script, self._head)
        asked: dict[str, int] = {}
        for name, (partnered, pairs) in sets.items():
            if partnered:
                most = sum(len(p[0]) + len(p[1]) for p in map(partners.__getitem__, partnered))
                limit = max(MEMBERS_LIMIT, most)
                asked[name] = calls.row(name, MEMBERS_AND_ADD_ALL, limit, *pairs)
            else:
                calls.row(name, SCORES_AND_ADD_ALL, 0, *pairs)
        for customer, added in signal_sets.items():
            calls.row(f"{self._ns}:id-of:{customer}", ADD, *added)
        replies = await calls.send()
        if not partners:
            return []
        before = {name: members(replies[i]) for name, i in asked.items() if replies[i] is not None}
        if len(before) < len(asked):
            before |= await self._large(sets, partners, [n for n in asked if n not in before])
        return _late(rows, names, partners, before)

    async def _large(
        self, sets: dict[str, _Set], partners: Partners, names: list[str]
    ) -> dict[str, set[str]]:
        """The sets too large to answer with their members: which of the partners they hold
        (before the batch), then the batch's pairs added."""
        calls = Calls(self._script, self._head)
        asked: list[tuple[int, list[str]]] = []
        for name in names:
            partnered, pairs = sets[name]
            wanted: set[str] = set()
            for customer in partnered:
                wanted.update(*partners[customer])
            looked = sorted(wanted)
            asked.append(
                (calls.row(name, SCORES_AND_ADD_ALL, len(looked), *looked, *pairs), looked)
            )
        replies = await calls.send()
        return {
            name: {p for p, score in zip(looked, replies[i], strict=True) if score is not None}
            for name, (i, looked) in zip(names, asked, strict=True)
        }

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
                partners[customer] = (frozenset(members(by)), frozenset(members(of)))
        return partners


def _late(
    rows: Sequence[Row],
    names: list[str],
    partners: Partners,
    before: dict[str, set[str]],
) -> list[Found]:
    """Rows in turn: a partner in the set before the batch, or put there by this or an earlier
    row of the batch (referrers, then referees, each in id order)."""
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
        near = seen | before[name]
        found += [(up, customer, kind, digest, event_id) for up in sorted(near & ours[0])]
        found += [(customer, down, kind, digest, event_id) for down in sorted(near & ours[1])]
    return found
