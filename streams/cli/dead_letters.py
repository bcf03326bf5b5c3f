"""`rewards dead-letters [count]` and `rewards dead-letters replay`: the dead-letter commands."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import orjson

from streams.adapters.topic_reader import read_topic
from streams.cli.dead_letter_replay import (
    ReplayFilter,
    parse_time,
    replay_dead_letters,
    summary_lines,
)
from streams.settings import Settings


def count_dead_letters(settings: Settings, timeout_s: float = 10.0) -> Counter[tuple[str, str]]:
    """Dead letters by (source topic, reason), as many as could be read within `timeout_s`."""
    counts: Counter[tuple[str, str]] = Counter()
    for msg in read_topic(settings, settings.topic("dead-letter"), timeout_s):
        letter = orjson.loads(msg.value() or b"{}")
        counts[(letter.get("source", {}).get("topic", "?"), letter.get("reason", "?"))] += 1
    return counts


def cmd_count(settings: Settings, args: argparse.Namespace) -> int:
    """Count the dead-letter topic's records by reason and source topic."""
    counts = count_dead_letters(settings, timeout_s=args.timeout)
    for (topic, reason), n in sorted(counts.items()):
        print(f"{n:8d}  {reason:<18} from {topic}")
    print(f"{sum(counts.values()):8d}  total")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    """Re-publish dead-lettered records to their source topic, each at most once."""
    topics = {t if t.startswith(settings.topic_prefix) else settings.topic(t) for t in args.topic}
    rules = ReplayFilter(
        reasons=frozenset(args.reason),
        source_topics=frozenset(topics),
        since=parse_time(args.since) if args.since else None,
        include_failed_replays=args.include_failed_replays,
    )
    summary = replay_dead_letters(settings, rules, dry_run=args.dry_run, timeout_s=args.timeout)
    if args.dry_run:
        print("dry run: nothing was published", file=sys.stderr)
    for line in summary_lines(summary):
        print(line)
    return 0


def add_dead_letter_commands(sub: Any) -> None:
    """Register `dead-letters` (plain: count) with its `count` and `replay` subcommands."""
    dead = sub.add_parser("dead-letters", help="count (default) or replay the dead letters")
    dead.add_argument("--timeout", type=float, default=10.0, help="seconds to read the topics")
    dead.set_defaults(run=cmd_count)
    actions = dead.add_subparsers(dest="dead_letters_action")
    count = actions.add_parser("count", help=cmd_count.__doc__)
    count.add_argument("--timeout", type=float, default=argparse.SUPPRESS)
    count.set_defaults(run=cmd_count)
    replay = actions.add_parser("replay", help=cmd_replay.__doc__)
    replay.add_argument("--timeout", type=float, default=argparse.SUPPRESS)
    replay.add_argument(
        "--reason", action="append", default=[], help="only this reason (repeatable)"
    )
    replay.add_argument(
        "--source-topic", dest="topic", action="append", default=[],
        help="only dead letters read from this topic, base or full name (repeatable)",
    )  # fmt: skip
    replay.add_argument("--since", help="only dead letters that failed at or after this ISO time")
    replay.add_argument("--dry-run", action="store_true", help="report only; publish nothing")
    replay.add_argument(
        "--include-failed-replays", action="store_true",
        help="also replay dead letters of records that failed again after a replay",
    )  # fmt: skip
    replay.set_defaults(run=cmd_replay)
