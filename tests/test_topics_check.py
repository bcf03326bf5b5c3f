"""`rewards topics --check`: whether the existing topics agree, without creating any."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # not re-exported

from streams.adapters.kafka_io import admin_client
from streams.cli.topics import layout_report
from tests.support import eventually
from tests.test_review_queue import rewards

TOGETHER = ["t-purchases", "t-referral-commands", "t-changelog"]


def test_topics_read_together_with_the_configured_count_agree():
    found = {"t-purchases": 4, "t-referral-commands": 4, "t-changelog": 4, "t-ledger": 12}
    lines, ok = layout_report(found, TOGETHER, 4)
    assert ok and lines[-1] == "ok: the topics read together have 4 partitions each"
    assert "output (any count works)" in next(line for line in lines if "t-ledger" in line)


def test_a_topic_read_together_with_another_count_does_not_agree():
    found = {"t-purchases": 4, "t-referral-commands": 3, "t-changelog": 4}
    lines, ok = layout_report(found, TOGETHER, 4)
    assert not ok and "t-referral-commands=3" in lines[-1]


def test_topics_that_agree_with_each_other_but_not_with_the_setting_do_not_agree():
    found = {"t-purchases": 8, "t-referral-commands": 8, "t-changelog": 8}
    lines, ok = layout_report(found, TOGETHER, 4)
    assert not ok and "have 8 partitions but REWARDS_PARTITIONS is 4" in lines[-1]


def test_missing_topics_are_counted_not_failed():
    found = {"t-purchases": 4, "t-referral-commands": None, "t-changelog": 4}
    lines, ok = layout_report(found, TOGETHER, 4)
    assert ok and lines[-1].endswith("; 1 missing (`rewards topics` or the worker creates them)")


@pytest.mark.integration
def test_the_command_reads_the_cluster_and_exits_1_when_the_topics_disagree(settings):
    agreed = rewards(settings, "topics", "--check")
    assert agreed.returncode == 0, agreed.stdout + agreed.stderr
    assert agreed.stdout.splitlines()[-1] == "ok: the topics read together have 2 partitions each"

    other = rewards(settings.model_copy(update={"partitions": 3}), "topics", "--check")
    assert other.returncode == 1 and "REWARDS_PARTITIONS is 3" in other.stdout

    admin, topic = admin_client(settings.kafka_bootstrap_servers), settings.topic("fraud-decisions")
    admin.delete_topics([topic])[topic].result(30)
    eventually(lambda: topic not in admin.list_topics(timeout=10).topics)
    eventually(lambda: admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30) is None)
    differ = rewards(settings, "topics", "--check")
    assert differ.returncode == 1 and f"{topic}=3" in differ.stdout
