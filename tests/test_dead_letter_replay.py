"""`rewards dead-letters replay` against the real broker and a worker subprocess."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.codec import encode
from schemas.outputs import DeadLetter, DeadLetterSource
from streams.adapters.kafka_io import delete_topics
from streams.adapters.topic_reader import read_topic
from streams.cli.dead_letter_replay import LEDGER, Outcome, ReplayFilter, replay_dead_letters
from streams.cli.main import main
from streams.settings_env import settings_env
from tests.events import purchase, record
from tests.support import eventually, publish

pytestmark = pytest.mark.integration

R, W = Outcome.REPLAYED, Outcome.WOULD_REPLAY
ALREADY, NOT = Outcome.ALREADY, Outcome.NOT_REPLAYABLE


@pytest.fixture
def ledger(settings):
    """The test's replay ledger topic, deleted afterwards."""
    yield settings.topic(LEDGER)
    delete_topics(settings, [LEDGER])


def dead_letters(settings, count: int) -> list[dict[str, Any]]:
    """The dead letters once there are `count` of them, decoded."""
    topic = settings.topic("dead-letter")

    def check() -> list[dict[str, Any]]:
        letters = [orjson.loads(m.value() or b"") for m in read_topic(settings, topic)]
        assert len(letters) == count, f"{len(letters)} of {count} dead letters"
        return letters

    return eventually(check)


def fixed_cause_letter(settings) -> None:
    """A dead letter of a valid purchase (as if its cause, e.g. a missing rate, had been fixed)."""
    key, value = record("purchases", purchase(customer_id="c-7"))
    letter = DeadLetter(
        reason="no_points_rate", detail="no rate for EUR",
        source=DeadLetterSource(topic=settings.topic("purchases"), partition=0, offset=0),
        original_value_b64=base64.b64encode(value).decode(),
        original_key_b64=base64.b64encode(key).decode(), failed_at=datetime.now(UTC),
        worker="test/1", original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
    )  # fmt: skip
    publish(settings, "dead-letter", [(key, encode(letter))])


def test_replay_filters_dry_run_and_is_idempotent(settings, start_worker, ledger, capsys):
    worker = start_worker(settings)
    purchases, referrals = settings.topic("purchases"), settings.topic("referrals")
    oversized = orjson.dumps(purchase(note="x" * 70_000))
    publish(settings, "purchases", [(b"c-1", b'{"event_id": '), (b"c-1", oversized)])
    publish(settings, "referrals", [(b"c-1", b"not json")])
    dead_letters(settings, 3)
    fixed_cause_letter(settings)
    dead_letters(settings, 4)

    dry = replay_dead_letters(settings, ReplayFilter(), dry_run=True)
    assert dry == {
        (purchases, "invalid_json", W): 1, (purchases, "oversized", NOT): 1,
        (purchases, "no_points_rate", W): 1, (referrals, "invalid_json", W): 1,
    }  # fmt: skip
    assert read_topic(settings, ledger, 3.0) == []
    assert worker.total("rewards_events_processed_total", topic="purchases") == 0

    since = datetime.now(UTC) - timedelta(hours=1)
    rules = ReplayFilter(reasons=frozenset({"invalid_json", "no_points_rate"}),
                         source_topics=frozenset({purchases}), since=since)  # fmt: skip
    first = replay_dead_letters(settings, rules)
    assert first == {(purchases, "invalid_json", R): 1, (purchases, "no_points_rate", R): 1}
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    letters = dead_letters(settings, 5)  # the invalid JSON failed again, marked as a replay
    again = [d for d in letters if d.get("replay_of")]
    assert len(again) == 1 and again[0]["reason"] == "invalid_json"
    assert again[0]["replay_of"].startswith(f"{settings.topic('dead-letter')}:")
    assert len(read_topic(settings, ledger)) == 2

    second = replay_dead_letters(settings, ReplayFilter())
    assert second == {
        (purchases, "invalid_json", ALREADY): 2, (purchases, "oversized", NOT): 1,
        (purchases, "no_points_rate", ALREADY): 1, (referrals, "invalid_json", R): 1,
    }  # fmt: skip
    dead_letters(settings, 6)

    env = settings_env(settings)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        assert main(["dead-letters", "replay"]) == 0
        out = capsys.readouterr().out
        assert main(["dead-letters"]) == 0
        counted = capsys.readouterr().out
    total = out.strip().splitlines()[-1].split()
    assert total == ["total", "0", "0", "5", "1"]  # replayed, would-replay, already, not replayable
    assert counted.strip().splitlines()[-1].split() == ["6", "total"]
    assert worker.total("rewards_events_processed_total", topic="purchases") == 1
