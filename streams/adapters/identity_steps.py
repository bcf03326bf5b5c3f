"""The identity index's batch steps: per-slot reads and writes that replay a batch in order.

Every row names its key, and the rows of one hash slot go in one call (`identity_lua`), so the
steps run on one Redis and on a Redis Cluster alike. A batch of sign-ups is one round, and a
round per further level of the ring walk for the `ref:by` sets not read yet (`ring_depth` - 2 at
most); conversions are one round (purchases: `identity_record`). The version before ran a batch
as one script taking the specs in turn, each seeing what the ones before it wrote: a key's rows
run in the specs' order, so the same holds per key (signal members with GT scores, velocity
entries); the ring walks read the `ref:by` sets before any edge of the batch is written and lay
the batch's earlier edges over them. Set members are taken sorted (SMEMBERS has no order), so a
ring's path is the same on every run. Writes are idempotent (same members, GT scores): a
redelivered batch leaves the index as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from streams.adapters.identity_lua import (
    ADD,
    EXISTS,
    MEMBERS,
    ROWS_SCRIPT,
    SCORE_AND_ADD,
    SCORES,
    VELOCITY,
    Calls,
    members,
)
from streams.adapters.redis_client import RedisClient, SlotScript


@dataclass(frozen=True, slots=True)
class Spec:
    """One sign-up (`signup`: also walk for a ring, count velocity and record it) or conversion."""

    referrer: str
    referee: str
    event_id: str
    at: int
    signals: dict[str, str]  # kind -> keyed hash
    check: tuple[str, ...]  # the kinds to look the referrer up by
    velocity: tuple[tuple[str, str], ...]  # (who, subject) of the velocity sets it counts in
    signup: bool


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What the index knew of a spec when its turn came."""

    shared: dict[str, float]  # kind -> when the referrer was last seen with the referee's signal
    rejected: tuple[bool, bool]  # (referrer, referee) rejected for fraud before
    ring: tuple[str, ...]
    velocity: dict[str, int]


class IdentitySteps:
    """The index's batches as rounds of per-slot calls (`identity_index` holds the rest)."""

    def __init__(
        self, client: RedisClient, namespace: str, ttl_s: int, velocity_s: int, ring_depth: int
    ) -> None:
        self._script = SlotScript(client, ROWS_SCRIPT)
        self._ns = namespace
        self._head = (ttl_s, velocity_s)
        self._depth = ring_depth
        self._by, self._of = f"{namespace}:ref:by:", f"{namespace}:ref:of:"

    async def facts(self, specs: Sequence[Spec]) -> list[SpecFacts]:
        """Each spec's facts as the version before's script found them; the sign-ups' records,
        velocity entries and edges written in the same round. A key's rows run in the specs'
        order, so a spec sees the earlier specs' writes; the `ref:by` sets of the ring walks'
        first level are read before any edge of the batch is written."""
        calls = self._calls()
        first = sorted({node for s in specs if s.signup for node in (s.referrer, s.referee)})
        for node in first:
            calls.row(self._by + node, MEMBERS)
        plans = [self._queue(s, calls) for s in specs]
        for s in specs:
            if s.signup:
                calls.row(self._by + s.referee, ADD, s.referrer)
                calls.row(self._of + s.referrer, ADD, s.referee)
        replies = await calls.send()
        rings = await self._rings(specs, {n: members(replies[i]) for i, n in enumerate(first)})
        return [_spec_facts(plan, replies, ring) for plan, ring in zip(plans, rings, strict=True)]

    def _queue(self, s: Spec, calls: Calls) -> _Plan:
        """A spec's reads, velocity entries and (a sign-up's) signal records; their rows."""
        ns, shared = self._ns, {}
        for kind, digest in s.signals.items():
            key = f"{ns}:id:{kind}:{digest}"
            checked = kind in s.check
            if s.signup:
                if checked:
                    shared[kind] = calls.row(key, SCORE_AND_ADD, s.at, s.referee, s.referrer)
                else:
                    calls.row(key, SCORE_AND_ADD, s.at, s.referee)
            elif checked:
                shared[kind] = calls.row(key, SCORES, s.referrer)
        rejected = (
            calls.row(f"{ns}:fraud:rejected:{s.referrer}", EXISTS),
            calls.row(f"{ns}:fraud:rejected:{s.referee}", EXISTS),
        )
        velocity = [
            (who, calls.row(f"{ns}:vel:{who}:{subject}", VELOCITY, s.at, s.event_id))
            for who, subject in s.velocity
        ]
        if s.signup and s.signals:
            keys = [f"{ns}:id:{kind}:{digest}" for kind, digest in s.signals.items()]
            calls.row(f"{ns}:id-of:{s.referee}", ADD, *keys)
        return _Plan([(kind, shared[kind]) for kind in s.check], rejected, velocity)

    async def _rings(
        self, specs: Sequence[Spec], first: dict[str, set[str]]
    ) -> list[tuple[str, ...]]:
        """Each sign-up's ring, the walks of all the batch's sign-ups a level at a time: a level's
        `ref:by` sets not read yet are read in one round (the first level came with the reads)."""
        edges = _Edges(first)
        for i, s in enumerate(specs):
            if s.signup:
                edges.added.setdefault(s.referee, []).append((i, s.referrer))
        walks = [_Walk(i, s.referrer, s.referee) for i, s in enumerate(specs) if s.signup]
        for _ in range(self._depth - 1):
            active = [w for w in walks if w.frontier]
            need = sorted({node for w in active for node in w.frontier if node not in edges.before})
            if need:
                reads = self._calls()
                for node in need:
                    reads.row(self._by + node, MEMBERS)
                fetched = await reads.send()
                edges.before.update({node: members(fetched[i]) for i, node in enumerate(need)})
            for walk in active:
                walk.step(edges.visible)
        paths = {w.spec: w.path for w in walks}
        return [paths.get(i, ()) for i in range(len(specs))]

    def _calls(self) -> Calls:
        return Calls(self._script, self._head)


class _Plan(NamedTuple):
    """A spec's rows: its checked signals', its parties' fraud flags', its velocity counts'."""

    shared: list[tuple[str, int]]
    """(kind, row) in the order of the spec's `check`"""
    rejected: tuple[int, int]
    velocity: list[tuple[str, int]]
    """(who, row)"""


def _spec_facts(plan: _Plan, replies: list[Any], ring: tuple[str, ...]) -> SpecFacts:
    """The spec's facts from its rows' replies."""
    shared: dict[str, float] = {}
    for kind, row in plan.shared:
        score = replies[row][0]
        if score is not None:
            shared[kind] = float(score)
    rejected = (bool(replies[plan.rejected[0]]), bool(replies[plan.rejected[1]]))
    velocity = {who: int(replies[row]) for who, row in plan.velocity}
    return SpecFacts(shared, rejected, ring, velocity)


class _Edges:
    """`ref:by` sets as they were before the batch, and the edges its sign-ups add."""

    __slots__ = ("_sorted", "added", "before")

    def __init__(self, first: dict[str, set[str]]) -> None:
        self.before: dict[str, set[str]] = first
        self.added: dict[str, list[tuple[int, str]]] = {}
        """node -> (spec, referrer) of the batch's sign-ups of that referee"""
        self._sorted: dict[str, list[str]] = {}

    def visible(self, node: str, spec: int) -> list[str]:
        """The node's `ref:by` members as sign-up `spec` sees them, sorted."""
        added = self.added.get(node)
        if added is None or added[0][0] >= spec:
            found = self._sorted.get(node)
            if found is None:
                found = self._sorted[node] = sorted(self.before[node])
            return found
        return sorted(self.before[node] | {referrer for i, referrer in added if i < spec})


class _Walk:
    """One sign-up's walk up `ref:by` from its referrer, looking for its referee."""

    __slots__ = ("frontier", "parent", "path", "referee", "spec")

    def __init__(self, spec: int, referrer: str, referee: str) -> None:
        self.spec = spec
        self.referee = referee
        self.parent: dict[str, str | None] = {referrer: None}
        self.frontier = [referrer]
        self.path: tuple[str, ...] = ()

    def step(self, members: Callable[[str, int], list[str]]) -> None:
        """One level: the path back (referee, node, ..., referrer, referee) if found."""
        following: list[str] = []
        for node in self.frontier:
            for up in members(node, self.spec):
                if up == self.referee:
                    path, cur = [self.referee, node], self.parent[node]
                    while cur is not None:
                        path.append(cur)
                        cur = self.parent[cur]
                    self.path, self.frontier = (*path, self.referee), []
                    return
                if up not in self.parent:
                    self.parent[up] = node
                    following.append(up)
        self.frontier = following
