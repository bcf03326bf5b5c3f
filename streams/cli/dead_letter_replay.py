"""`rewards dead-letters replay`: re-publish dead-lettered records to their source topic, once.

Each replay is one transaction that holds the republished record (original key and bytes, plus a
`rewards-replay-of` header naming the dead letter) and an entry in the compacted topic
`dead-letter-replays`, keyed by the dead letter's `partition:offset`: a dead letter is replayed
exactly when its entry is on the broker, so running the tool again (or after a crash) skips it.
A replayed record that fails again gets a new dead letter with `replay_of` set; those are skipped
too unless `--include-failed-replays` (after fixing a further cause). An `oversized` record (over
the size limit, its original possibly kept only in part) is never replayed: skipped and counted.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from confluent_kafka import Message, Producer
from tqdm import tqdm

from streams.adapters.dead_letter import REPLAY_HEADER
from streams.adapters.kafka_io import ensure_topics, producer_config
from streams.adapters.topic_reader import read_to_end
from streams.settings import Settings

LEDGER = "dead-letter-replays"
NOT_REPLAYABLE = frozenset({"oversized"})
"""Reasons a replay cannot fix: the record breaks a size limit (and may be kept only in part)."""
BATCH = 500
"""Replays per transaction."""


class Outcome(StrEnum):
    """What the tool did with one dead letter."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would-replay"
    ALREADY = "skipped-already-replayed"
    NOT_REPLAYABLE = "skipped-not-replayable"


Summary = Counter[tuple[str, str, Outcome]]
"""Dead letters by (source topic, reason, outcome)."""


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to replay: every one when all fields are empty."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None
    include_failed_replays: bool = False

    def matches(self, letter: dict[str, Any]) -> bool:
        """Whether the dead letter is selected by reason, source topic and failure time."""
        if self.reasons and letter.get("reason") not in self.reasons:
            return False
        if self.source_topics and letter["source"]["topic"] not in self.source_topics:
            return False
        return self.since is None or parse_time(letter["failed_at"]) >= self.since


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is UTC."""
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def position(msg: Message) -> str:
    """A dead letter's ledger key: its `partition:offset` in the dead-letter topic."""
    return f"{msg.partition()}:{msg.offset()}"


def replayed_positions(settings: Settings, timeout_s: float) -> set[str]:
    """The dead letters replayed so far (the ledger's live keys)."""
    done: set[str] = set()
    for msg in read_to_end(settings.kafka_bootstrap_servers, settings.topic(LEDGER), timeout_s):
        key = (msg.key() or b"").decode()
        if msg.value() is None:
            done.discard(key)
        else:
            done.add(key)
    return done


def classify(letter: dict[str, Any], key: str, done: set[str], rules: ReplayFilter) -> Outcome:
    """Whether a selected dead letter is to be replayed, and if not why."""
    if key in done or (letter.get("replay_of") and not rules.include_failed_replays):
        return Outcome.ALREADY
    if letter.get("reason") in NOT_REPLAYABLE or letter.get("original_truncated"):
        return Outcome.NOT_REPLAYABLE
    return Outcome.REPLAYED


class Replayer:
    """Republishes dead letters in transactions, each with its ledger entry."""

    def __init__(self, settings: Settings) -> None:
        ensure_topics(settings, [LEDGER])
        self._ledger = settings.topic(LEDGER)
        self._letters = settings.topic("dead-letter")
        # One id for every run: a run's init fences an earlier one (a crashed run's open
        # transaction is aborted, a concurrent run fails at its commit).
        tid = f"{settings.app_id}-dead-letter-replay"
        self._producer = Producer(producer_config(settings, tid))
        self._producer.init_transactions(60)
        self._open = 0

    def replay(self, msg: Message, letter: dict[str, Any]) -> None:
        """Queue the original record and the ledger entry in the open transaction."""
        if self._open == 0:
            self._producer.begin_transaction()
        key_b64 = letter.get("original_key_b64")
        origin = f"{self._letters}:{position(msg)}"
        self._producer.produce(
            letter["source"]["topic"],
            value=base64.b64decode(letter["original_value_b64"]),
            key=base64.b64decode(key_b64) if key_b64 is not None else None,
            headers=[(REPLAY_HEADER, origin.encode())],
        )
        entry = {"replayed_at": datetime.now(UTC).isoformat(), "source": letter["source"],
                 "reason": letter.get("reason")}  # fmt: skip
        self._producer.produce(self._ledger, key=position(msg).encode(), value=orjson.dumps(entry))
        self._open += 1
        if self._open >= BATCH:
            self.commit()

    def commit(self) -> None:
        """Commit the open transaction, if any."""
        if self._open:
            self._producer.commit_transaction(60)
            self._open = 0


def replay_dead_letters(
    settings: Settings, rules: ReplayFilter, dry_run: bool = False, timeout_s: float = 60.0
) -> Summary:
    """Replay the selected dead letters not replayed yet; returns what went where."""
    done = replayed_positions(settings, timeout_s)
    replayer = None if dry_run else Replayer(settings)
    summary: Summary = Counter()
    bar = tqdm(unit="letter", desc="replay dead letters", disable=None)
    scan = read_to_end(
        settings.kafka_bootstrap_servers,
        settings.topic("dead-letter"),
        timeout_s,
        on_start=bar.reset,
    )
    for msg in scan:
        bar.update()
        letter = orjson.loads(msg.value() or b"{}")
        if not rules.matches(letter):
            continue
        outcome = classify(letter, position(msg), done, rules)
        if outcome is Outcome.REPLAYED:
            if replayer is None:
                outcome = Outcome.WOULD_REPLAY
            else:
                replayer.replay(msg, letter)
        summary[(letter["source"]["topic"], str(letter.get("reason")), outcome)] += 1
    bar.close()
    if replayer is not None:
        replayer.commit()
    return summary


def summary_lines(summary: Summary) -> Iterable[str]:
    """The summary as a table: per source topic and reason, how many of each outcome."""
    outcomes = list(Outcome)
    yield f"{'source topic':<32}{'reason':<22}" + "".join(f"{o.value:>26}" for o in outcomes)
    for topic, reason in sorted({(t, r) for t, r, _ in summary}):
        counts = "".join(f"{summary[(topic, reason, o)]:>26}" for o in outcomes)
        yield f"{topic:<32}{reason:<22}{counts}"
    totals = "".join(f"{sum(n for k, n in summary.items() if k[2] is o):>26}" for o in outcomes)
    yield f"{'total':<54}{totals}"
