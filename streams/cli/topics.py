"""`rewards topics`: create the product's topics, or `--check` whether the existing ones agree."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from streams.settings import CONTROL_TOPICS, INPUT_TOPICS, OUTPUT_TOPICS, Settings


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create the product's topics (idempotent), or --check whether the existing ones agree."""
    from streams.adapters.kafka_io import ensure_topics, topic_partitions
    from streams.assembly import INGEST_TOPICS

    if args.check:
        together = [settings.topic(t) for t in INGEST_TOPICS] + [settings.changelog_topic()]
        others = [settings.topic(t) for t in INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS]
        others = [t for t in others if t not in together]
        found = topic_partitions(settings, together + others)
        lines, ok = layout_report(found, together, settings.partitions)
        print("\n".join(lines))
        return 0 if ok else 1
    ensure_topics(settings)
    for name in INPUT_TOPICS + CONTROL_TOPICS + OUTPUT_TOPICS:
        print(settings.topic(name))
    return 0


def layout_report(
    found: Mapping[str, int | None], together: list[str], wanted: int
) -> tuple[list[str], bool]:
    """One line per topic and a verdict: the topics read together (partition p of each holds
    the same customers) must have one partition count, and it must be REWARDS_PARTITIONS, or a
    topic created later (a new version's) would get another count and stop the worker."""
    width = max(len(t) for t in found)
    lines = [f"{'topic':<{width}}  partitions  role"]
    for topic, count in found.items():
        role = "read together" if topic in together else "output (any count works)"
        shown = "missing" if count is None else str(count)
        lines.append(f"{topic:<{width}}  {shown:<10}  {role}")
    counts = {found[t] for t in together if found[t] is not None}
    if len(counts) > 1:
        listed = ", ".join(f"{t}={found[t]}" for t in together if found[t] is not None)
        return [*lines, f"not ok: the topics read together differ ({listed}); partition p of "
                        "each must hold the same customers"], False  # fmt: skip
    if counts and counts != {wanted}:
        return [*lines, f"not ok: the topics read together have {counts.pop()} partitions but "
                        f"REWARDS_PARTITIONS is {wanted}: a topic created later would get "
                        f"{wanted} and the worker would refuse to start; set "
                        "REWARDS_PARTITIONS to the topics' count"], False  # fmt: skip
    missing = sum(count is None for count in found.values())
    tail = f"; {missing} missing (`rewards topics` or the worker creates them)" if missing else ""
    return [*lines, f"ok: the topics read together have {wanted} partitions each{tail}"], True


def add_topic_commands(sub: Any) -> None:
    """Register `topics [--check]`."""
    topics = sub.add_parser("topics", help=cmd_topics.__doc__)
    topics.add_argument("--check", action="store_true",
                        help="create nothing; say whether the existing topics agree")  # fmt: skip
    topics.set_defaults(run=cmd_topics)
