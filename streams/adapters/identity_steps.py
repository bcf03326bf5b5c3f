"""The identity index's batch steps: per-slot reads and writes that replay a batch in order.

Every call names its keys, all of one hash slot (`identity_lua`), so the steps run on one Redis
and on a Redis Cluster alike. A batch of sign-ups is one round (each key read, then written, in
its call: the reads see the index as it was before the batch) and a round per further level of
the ring walk for the `ref:by` sets not read yet (`ring_depth` - 2 at most); conversions are one
round (purchases: `identity_record`). The version before ran a batch as one script taking the
specs in turn, each seeing what the ones before it wrote: the steps lay over the state before the batch what its earlier specs write (signal members
with GT scores, edges; a velocity set's entries go in order in its key's call). Set members are
taken sorted (SMEMBERS has no order), so a ring's path is the same on every run. Writes are
idempotent (same members, GT scores): a redelivered batch leaves the index as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from streams.adapters.identity_lua import STEPS_SCRIPT, Got, Rows
from streams.adapters.redis_client import RedisClient, SlotScript

Written = dict[str, dict[str, int]]
"""The batch's earlier signal writes: key -> member -> score."""


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
        self._script = SlotScript(client, STEPS_SCRIPT)
        self._ns = namespace
        self._head = (ttl_s, velocity_s)
        self._depth = ring_depth
        self._by, self._of = f"{namespace}:ref:by:", f"{namespace}:ref:of:"

    async def facts(self, specs: Sequence[Spec]) -> list[SpecFacts]:
        """Each spec's facts as the version before's script found them; the sign-ups' records,
        velocity entries and edges written in the same round (each key read before written)."""
        rows = self._rows()
        plans = [self._queue(s, rows) for s in specs]
        got = await rows.send()
        rings = await self._rings(specs, got)
        out: list[SpecFacts] = []
        written: Written = {}
        for s, plan, ring in zip(specs, plans, rings, strict=True):
            out.append(_spec_facts(s, plan, got, written, ring))
            if s.signup:
                referee, at = s.referee, s.at
                for key in plan.signals.values():
                    members = written.setdefault(key, {})
                    members[referee] = max(members.get(referee, at), at)
        return out

    def _queue(self, s: Spec, rows: Rows) -> _Plan:
        """A spec's reads, velocity entries and (a sign-up's) writes; its keys."""
        ns = self._ns
        signals = {kind: f"{ns}:id:{kind}:{digest}" for kind, digest in s.signals.items()}
        plan = _Plan(
            signals, (f"{ns}:fraud:rejected:{s.referrer}", f"{ns}:fraud:rejected:{s.referee}"), []
        )
        for kind in s.check:
            rows.add(signals[kind], "score", s.referrer)
        rows.read(plan.rejected[0], "exists")
        rows.read(plan.rejected[1], "exists")
        for who, subject in s.velocity:
            key = f"{ns}:vel:{who}:{subject}"
            plan.velocity.append((who, key, rows.add(key, "velocity", s.at, s.event_id) // 2 - 1))
        if s.signup:
            referee, at = s.referee, s.at
            for key in signals.values():
                rows.add(key, "zadd", at, referee)
            rows.add(f"{ns}:id-of:{referee}", "sadd", *signals.values())
            rows.read(self._by + s.referrer, "members")  # the ring walk's first level
            rows.read(self._by + referee, "members")  # before the edge: the walks' view
            rows.add(self._by + referee, "sadd", s.referrer)
            rows.add(self._of + s.referrer, "sadd", referee)
        return plan

    async def _rings(self, specs: Sequence[Spec], got: Got) -> list[tuple[str, ...]]:
        """Each sign-up's ring, the walks of all the batch's sign-ups a level at a time: a level's
        `ref:by` sets not read yet are read in one round (the first level came with the reads)."""
        edges = _Edges(self._by, got)
        for i, s in enumerate(specs):
            if s.signup:
                edges.added.setdefault(s.referee, []).append((i, s.referrer))
        walks = [_Walk(i, s.referrer, s.referee) for i, s in enumerate(specs) if s.signup]
        for _ in range(self._depth - 1):
            active = [w for w in walks if w.frontier]
            need = {node for w in active for node in w.frontier if not edges.known(node)}
            if need:
                reads = self._rows()
                for node in need:
                    reads.read(self._by + node, "members")
                fetched = await reads.send()
                edges.before.update({node: fetched.members(self._by + node) for node in need})
            for walk in active:
                walk.step(edges.visible)
        paths = {w.spec: w.path for w in walks}
        return [paths.get(i, ()) for i in range(len(specs))]

    def _rows(self) -> Rows:
        return Rows(self._script, self._head)


class _Plan(NamedTuple):
    """A spec's keys: its signal sets by kind, its parties' fraud flags, its velocity counts."""

    signals: dict[str, str]
    rejected: tuple[str, str]
    velocity: list[tuple[str, str, int]]
    """(who, key, position in the key's reply)"""


def _spec_facts(
    s: Spec, plan: _Plan, got: Got, written: Written, ring: tuple[str, ...]
) -> SpecFacts:
    """The spec's facts: the reads with the earlier specs' signal writes laid over them."""
    shared: dict[str, float] = {}
    referrer = s.referrer
    for kind in s.check:
        key = plan.signals[kind]
        before = got.score(key, referrer)
        ours = written[key].get(referrer) if key in written else None
        if ours is not None:
            before = float(ours) if before is None else max(before, ours)
        if before is not None:
            shared[kind] = before
    raw = got.raw
    rejected = (bool(raw[plan.rejected[0]]), bool(raw[plan.rejected[1]]))
    velocity = {who: int(raw[key][i]) for who, key, i in plan.velocity}
    return SpecFacts(shared, rejected, ring, velocity)


class _Edges:
    """`ref:by` sets as they were before the batch, and the edges its sign-ups add."""

    __slots__ = ("_by", "_first", "_sorted", "added", "before")

    def __init__(self, by: str, first: Got) -> None:
        self._by, self._first = by, first
        self.before: dict[str, set[str]] = {}
        self.added: dict[str, list[tuple[int, str]]] = {}
        """node -> (spec, referrer) of the batch's sign-ups of that referee"""
        self._sorted: dict[str, list[str]] = {}

    def known(self, node: str) -> bool:
        """The node's set was read (in the first round, or fetched since)."""
        if node not in self.before:
            key = self._by + node
            if "members" not in self._first.rows.get(key, ()):
                return False
            self.before[node] = self._first.members(key)
        return True

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
