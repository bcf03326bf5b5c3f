"""The ingest agent: one stream over all input topics, handled in batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import faust
from faust.types import StreamT

from streams.ingest import Admitted, Gate, Rejected
from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, Settings

Handler = Callable[[Sequence[Admitted]], Awaitable[Sequence[Rejected]]]
Agent = Callable[[StreamT[bytes]], Awaitable[None]]


async def accept(admitted: Sequence[Admitted]) -> Sequence[Rejected]:
    """Topics without a processor yet (referrals, compensation, metrics): admitted, counted."""
    return ()


def input_topics(app: faust.App, settings: Settings) -> faust.TopicT:
    """All input and control topics as one raw-bytes channel (co-partitioned: partition p of each
    is the same customers); the codec, not Faust, decodes and validates."""
    return app.topic(
        *(settings.topic(base) for base in INPUT_TOPICS + CONTROL_TOPICS),
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
    app.agent(input_topics(app, settings), name="ingest-events")(agent)
