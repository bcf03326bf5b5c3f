"""The worker's agents: each batch is admitted by the gate, then each topic's events go to the
domain function that handles them, and everything they refuse is dead-lettered."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from confluent_kafka import Message

from streams.ingest import Admitted, Gate, Rejected

Handler = Callable[[Sequence[Admitted]], Awaitable[Sequence[Rejected]]]


async def accept(admitted: Sequence[Admitted]) -> Sequence[Rejected]:
    """Topics without a handler of their own: admitted and counted."""
    return ()


class Agents:
    """One consumer's batches: admitted, handed to each topic's agent, dead letters out."""

    def __init__(self, gate: Gate, agents: Mapping[str, Handler]) -> None:
        self._gate = gate
        self._agents = dict(agents)

    async def handle(self, records: list[Message]) -> None:
        """Decode, validate and deduplicate the batch, then hand it to the domain processors
        (topics that share an agent go to it together, in order)."""
        admitted = await self._gate.admit(records)
        by_agent: defaultdict[Handler, list[Admitted]] = defaultdict(list)
        for item in admitted:
            by_agent[self._agents.get(item.topic, accept)].append(item)
        refused: set[int] = set()
        for agent, items in by_agent.items():
            rejected = await agent(items)
            await self._gate.reject(rejected)
            refused.update(id(r.item) for r in rejected)
        self._gate.done([item for item in admitted if id(item) not in refused])
