"""The ingest agent: one stream over all input topics, handled in batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import faust
from faust.types import StreamT

from schemas.codec import FULFILMENT_TOPICS
from streams.ingest import Admitted, Gate, Rejected
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, Settings

Handler = Callable[[Sequence[Admitted]], Awaitable[Sequence[Rejected]]]
Agent = Callable[[StreamT[bytes]], Awaitable[None]]


async def accept(admitted: Sequence[Admitted]) -> Sequence[Rejected]:
    """Topics without a handler of their own: admitted and counted."""
    return ()


INGEST_TOPICS = tuple(t for t in INPUT_TOPICS + CONTROL_TOPICS if t not in FULFILMENT_TOPICS)
"""What the ingest agent reads: every input and control topic but the fulfilment agent's."""


def subscribed(app: faust.App, settings: Settings, bases: Sequence[str]) -> faust.TopicT:
    """Topics as one raw-bytes channel (co-partitioned: partition p of each is the same
    customers); the codec, not Faust, decodes and validates."""
    return app.topic(
        *(settings.topic(base) for base in bases),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
        replicas=settings.replication_factor,
    )


def ingest_agent(gate: Gate, handlers: Mapping[str, Handler], settings: Settings) -> Agent:
    """Build the agent that admits each batch and hands every topic's events to its handler."""

    async def ingest_events(stream: StreamT[bytes]) -> None:
        """Decode, validate and deduplicate each batch, then hand it to the domain processors."""
        batches = stream.take_events(settings.batch_max, within=settings.batch_within_s)  # type: ignore[attr-defined]
        async for records in batches:
            admitted = await gate.admit(records)
            by_handler: defaultdict[Handler, list[Admitted]] = defaultdict(list)
            for item in admitted:  # topics that share a handler go to it together, in order
                by_handler[handlers.get(item.topic, accept)].append(item)
            for handler, items in by_handler.items():
                await gate.reject(await handler(items))
            gate.done(admitted)

    return ingest_events


def register_ingest_agent(
    app: faust.App, settings: Settings, gate: Gate, handlers: Mapping[str, Handler]
) -> None:
    """One agent over every input topic (measured faster than one agent per topic)."""
    agent = ingest_agent(gate, handlers, settings)
    app.agent(subscribed(app, settings, INGEST_TOPICS), name="ingest-events")(agent)


def register_fulfilment_agent(
    app: faust.App, settings: Settings, gate: Gate, handler: Handler
) -> None:
    """An agent of its own for gift-card orders: a slow provider holds only these batches."""
    agent = ingest_agent(gate, dict.fromkeys(FULFILMENT_TOPICS, handler), settings)
    app.agent(subscribed(app, settings, FULFILMENT_TOPICS), name="fulfil-gift-cards")(agent)
