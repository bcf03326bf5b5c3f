"""`rewards review list|show`: the referrals held for review, from durable state, with reasons."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from streams.settings_env import settings_env
from tests.events import new_id
from tests.support import REPO, eventually
from tests.test_points_pipeline import buy, send, topic_records
from tests.test_referrals_pipeline import decide, refer, signed_up

pytestmark = pytest.mark.integration


def rewards(settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `rewards ...` as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(settings), cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip


def queue(settings) -> list[str]:
    """The referee ids `rewards review list` shows, in its order, and its lines."""
    done = rewards(settings, "review", "list")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def held_for_review(settings, referrer: str, referee: str, alerts: int) -> None:
    """`referee` signs up on `referrer`'s device and buys: the referral is held for review."""
    refer(settings, signed_up(referrer, referee, device_id="dev-shared-tablet"))
    eventually(lambda: len(topic_records(settings, "fraud-alerts")) >= alerts)
    send(settings, buy(referee, 3000))


def test_held_referrals_are_listed_oldest_first_and_survive_a_restart(settings, start_worker):
    worker = start_worker(settings)
    referrer, first, second = new_id("p"), new_id("first"), new_id("second")
    send(settings, buy(referrer, 1000, context={"device_id": "dev-shared-tablet"}))
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    held_for_review(settings, referrer, first, 1)
    eventually(lambda: any(first in line and "held" in line for line in queue(settings)))
    held_for_review(settings, referrer, second, 2)

    def both_held() -> list[str]:
        lines = queue(settings)
        assert sum("held" in x for x in lines) == 2, lines
        return lines

    lines = eventually(both_held)
    assert [x for x in lines if first in x or second in x] == lines[:2]
    assert first in lines[0] and second in lines[1], lines
    assert all("same_device(" in x and "score " in x and "[waiting]" in x for x in lines[:2])
    assert lines[-1] == "2 waiting for a decision (0 decided, pending)"

    shown = rewards(settings, "review", "show", "--referee", second)
    assert shown.returncode == 0, shown.stderr
    assert f"referrer     {referrer}" in shown.stdout
    assert re.search(
        r"rule same_device +weight +70  hash=[0-9a-f]{12}, signal=device\n", shown.stdout
    )
    assert "review >= 40" in shown.stdout
    missing = rewards(settings, "review", "show", "--referee", new_id("nobody"))
    assert missing.returncode == 1 and "not waiting" in missing.stderr

    worker.stop()  # the queue is state, not memory: listed with no worker running
    assert queue(settings)[:2] == lines[:2]
    decide(settings, "approve", first)
    stopped = queue(settings)
    assert first in stopped[0] and "[decided, pending]" in stopped[0], stopped
    assert stopped[-1] == "2 waiting for a decision (1 decided, pending)"

    start_worker(settings)

    def one_left() -> list[str]:  # an entry and the summary line
        lines = queue(settings)
        assert len(lines) == 2, lines
        return lines

    after = eventually(one_left)
    assert second in after[0] and "[waiting]" in after[0]
    assert not any(first in x for x in after)
