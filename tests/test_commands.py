"""The operational commands and the settings object, against the real broker where they need one."""

from __future__ import annotations

import faust
import orjson
import pytest
from pydantic import SecretStr

from streams.app import create_app
from streams.cli.main import main
from streams.cli.publish import publish_demo
from streams.settings import INPUT_TOPICS, Settings
from streams.settings_models import CompensationTier
from tests.events import purchase
from tests.support import eventually, settled


def test_explicit_service_variables_win(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/2")
    monkeypatch.setenv("REWARDS_PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert settings.brokers() == ["kafka://k1:9092", "kafka://k2:9092"]
    assert settings.redis_url == "redis://r:6379/2"
    assert settings.partitions == 12
    with pytest.raises(Exception, match="frozen"):
        settings.partitions = 3


def test_faust_environment_variables_cannot_override_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("WEB_PORT", "1234")
    monkeypatch.setenv("BROKER", "kafka://elsewhere:9092")
    monkeypatch.setenv("STORE", "rocksdb://")
    settings = Settings(
        web_port=7777,
        store="memory://",
        data_dir=tmp_path,
        topic_prefix="x-",
        pii_hash_key=SecretStr("a-key-of-16-or-more-chars"),
        gift_card_api_key=SecretStr("sk-test-key"),
    )
    app = create_app(settings)
    assert isinstance(app, faust.App)
    assert app.conf.web_port == 7777
    assert str(app.conf.store) == "memory:"
    assert [str(url) for url in app.conf.broker] == ["kafka://127.0.0.1:19092"]
    assert app.conf.topic_partitions == settings.partitions


def test_a_paying_policy_needs_the_provider_key_and_a_budget(tmp_path):
    base = {"store": "memory://", "data_dir": tmp_path, "pii_hash_key": "a-key-of-16-or-more-chars"}
    with pytest.raises(ValueError, match="REWARDS_GIFT_CARD_API_KEY"):
        create_app(Settings(**base))
    assert isinstance(create_app(Settings(**base, compensation_tiers=())), faust.App)
    tier = CompensationTier(
        name="gbp", severities=frozenset({"high"}), amount_cents=500, currency="GBP"
    )
    with pytest.raises(ValueError, match="compensation_budgets has no entry for GBP"):
        Settings(**base, compensation_tiers=(tier,))


@pytest.mark.integration
def test_publish_command_sends_a_jsonl_file_that_the_worker_admits(
    settings, start_worker, tmp_path, monkeypatch
):
    worker = start_worker(settings)
    lines = [orjson.dumps(purchase(customer_id=f"c-{i}")) for i in range(3)] + [b"{broken", b""]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("REWARDS_TOPIC_PREFIX", settings.topic_prefix)
    assert main(["publish", "--topic", "purchases", str(path)]) == 0
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 3)
    eventually(lambda: worker.total("rewards_dead_letters_total", reason="invalid_json") == 1)


@pytest.mark.integration
def test_demo_traffic_is_all_accounted_for(settings, start_worker):
    worker = start_worker(settings)
    kinds = publish_demo(settings, events=600, rate=0, seed=5)
    counts = settled(worker, 600, topics=INPUT_TOPICS)
    dead, duplicates = counts["dead_letters"], counts["duplicate_events"]
    bad = sum(
        n
        for kind, n in kinds.items()
        if kind.startswith("bad_") or kind in {"missing_field", "oversized"}
    )
    assert dead == bad
    assert duplicates == kinds["duplicate"]
