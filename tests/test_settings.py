"""Settings fail fast (one line, exit 2, nothing created); the README table is the settings."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # not re-exported by admin

from streams.adapters.kafka_io import admin_client
from streams.settings import Settings
from streams.settings_env import settings_table, with_settings_table
from tests.support import REPO

VALID = {
    "REWARDS_PII_HASH_KEY": "a-key-of-16-or-more-chars",
    "REWARDS_GIFT_CARD_API_KEY": "sk-test-key",
}
BAD = {  # the variable set, its value, what the one line must name
    "missing-pii-key": ({"REWARDS_PII_HASH_KEY": ""}, "REWARDS_PII_HASH_KEY"),
    "missing-provider-key": ({"REWARDS_GIFT_CARD_API_KEY": ""}, "REWARDS_GIFT_CARD_API_KEY"),
    "malformed-json": ({"REWARDS_POINTS_RATES": '{"EUR": [1, 100'}, "REWARDS_POINTS_RATES"),
    "json-of-the-wrong-shape": ({"REWARDS_REFERRAL_CAPS": '[{"period": "P30D"}]'},
                                "REWARDS_REFERRAL_CAPS"),
    "out-of-range": ({"REWARDS_WEB_PORT": "70000"}, "REWARDS_WEB_PORT"),
    "not-a-number": ({"REWARDS_BATCH_MAX": "many"}, "REWARDS_BATCH_MAX"),
    "duration-too-long": ({"REWARDS_POINTS_HOLD": "P99999D"}, "REWARDS_POINTS_HOLD"),
    "not-a-duration": ({"REWARDS_REFERRAL_WINDOW": "soon"}, "REWARDS_REFERRAL_WINDOW"),
    "unknown-choice": ({"REWARDS_LOG_LEVEL": "loud"}, "REWARDS_LOG_LEVEL"),
    "short-secret": ({"REWARDS_PII_HASH_KEY": "short"}, "REWARDS_PII_HASH_KEY"),
    "bad-url": ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL"),
    "cluster-database": ({"REDIS_URL": "redis+cluster://127.0.0.1:7000/3"}, "REDIS_URL"),
    "commit-vs-transaction-timeout": ({"REWARDS_COMMIT_INTERVAL_S": "20"},
                                      "REWARDS_COMMIT_INTERVAL_S"),
    "tier-without-budget": ({"REWARDS_COMPENSATION_TIERS": '[{"name": "gbp", "severities": '
                             '["high"], "amount_cents": 500, "currency": "GBP"}]'},
                            "compensation_budgets"),
}  # fmt: skip


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REWARDS_")}
    merged = {**clean, **VALID, **env}
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", "worker"],
        env={k: v for k, v in merged.items() if v != ""},
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize(("env", "named"), list(BAD.values()), ids=list(BAD))
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_is_created(settings, env, named):
    prefix = f"bad-{uuid.uuid4().hex[:8]}-"
    base = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "REDIS_URL": settings.redis_url, "REWARDS_TOPIC_PREFIX": prefix}  # fmt: skip
    done = run_worker({**base, **env})
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and lines[0].startswith("rewards: "), lines
    assert "Traceback" not in done.stderr
    for secret in (VALID["REWARDS_PII_HASH_KEY"], VALID["REWARDS_GIFT_CARD_API_KEY"], "short"):
        assert secret not in done.stderr  # secrets are never printed
    topics = admin_client(settings.kafka_bootstrap_servers).list_topics(timeout=20).topics
    assert not [t for t in topics if t.startswith(prefix)]  # nothing was created


@pytest.mark.integration
def test_topics_with_other_partition_counts_are_refused_with_one_line(settings):
    admin = admin_client(settings.kafka_bootstrap_servers)
    prefix, app = f"odd-{uuid.uuid4().hex[:8]}-", f"odd-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(f"{prefix}purchases", 3, 1)])[f"{prefix}purchases"].result(30)
    env = {"KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "REDIS_URL": settings.redis_url, "REWARDS_TOPIC_PREFIX": prefix,
           "REWARDS_PARTITIONS": "2", "REWARDS_APP_ID": app,
           "REWARDS_DATA_DIR": str(settings.data_dir)}  # fmt: skip
    try:
        done = run_worker(env)
        assert done.returncode == 2, done.stderr[-2000:]
        assert "same number of partitions" in done.stderr and "Traceback" not in done.stderr
    finally:
        existing = admin.list_topics(timeout=20).topics
        doomed = sorted(t for t in existing if t.startswith((prefix, app)))
        for future in admin.delete_topics(doomed).values():
            future.result(30)


def test_the_readme_configuration_table_is_the_settings():
    readme = (REPO / "README.md").read_text()
    assert with_settings_table(readme) == readme, "run `rewards config --readme README.md`"
    for name, info in Settings.model_fields.items():
        assert info.description, f"{name} has no description"
    assert settings_table().count("\n") == len(Settings.model_fields) + 2


def test_the_config_command_prints_the_table():
    done = subprocess.run([sys.executable, "-m", "streams.cli", "config"], cwd=REPO,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout == settings_table()
