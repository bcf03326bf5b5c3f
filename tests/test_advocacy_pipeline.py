"""Advocacy metrics end to end: Kafka in, the worker's table-backed windows out, read back through a
real Prometheus; exact after a replay, a crash and with two workers."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from processors.advocacy import RECOVERY_STAGES
from streams.bench.worker_process import free_port
from tests.events import complaint, new_id, record, referral, survey
from tests.prometheus import PrometheusProcess
from tests.support import REPO, eventually, publish
from tests.test_points_pipeline import ago, buy, send
from tests.test_referrals_pipeline import refer, signed_up

pytestmark = pytest.mark.integration
RULES = [REPO / "deploy" / "prometheus" / "rules" / "recording.yml"]
ANSWERS = [  # (score, minutes ago, channel): 4 promoters, 3 passives, 3 detractors in the hour
    (10, 5, "email"), (9, 6, "email"), (9, 7, "app"), (10, 8, None), (8, 9, "app"),
    (7, 10, "web"), (7, 11, "Kiosk"), (6, 12, "email"), (3, 13, "app"), (0, 14, "sms"),
]  # fmt: skip
OLDER = [(9, 60 * 30, "email"), (2, 60 * 24 * 40, "email")]  # 30 hours ago; 40 days ago


def answers(customer_prefix: str, rows=ANSWERS) -> list[dict[str, Any]]:
    return [
        survey(customer_id=f"{customer_prefix}-{i}", score=score, channel=channel,
               occurred_at=ago(timedelta(minutes=minutes)), ces=(i % 7) + 1)
        for i, (score, minutes, channel) in enumerate(rows)
    ]  # fmt: skip


def answer(settings, *events: dict[str, Any]) -> None:
    publish(settings, "survey-responses", [record("survey-responses", e) for e in events])


def gauge(worker, name: str, **labels: str) -> float:
    return float(worker.total(name, **labels))


def nps_counts(worker, window: str) -> tuple[float, float, float]:
    promoters, passives, detractors = (
        gauge(worker, "rewards_nps_responses", window=window, category=c)
        for c in ("promoter", "passive", "detractor")
    )
    return promoters, passives, detractors


def value(prometheus: PrometheusProcess, expr: str) -> float:
    """The single value of an instant query, once Prometheus has one: the final value only when
    the worker's figures were final before Prometheus started (then every scrape is the same)."""
    result = prometheus.wait_for(expr)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_scripted_surveys_and_referrals_read_back_exactly_from_prometheus(
    settings, start_worker, tmp_path
):
    worker = start_worker(settings)
    run = new_id("r")
    answer(settings, *answers(run), *answers(f"{run}-old", OLDER))
    alice, bob = new_id("alice"), new_id("bob")
    invites = [referral(referrer_id=who, occurred_at=ago(timedelta(minutes=m)))
               for who, m in ((alice, 3), (alice, 4), (alice, 5), (bob, 6))]  # fmt: skip
    carol, dave = new_id("carol"), new_id("dave")
    refer(settings, *invites, signed_up(alice, carol), signed_up(alice, dave))
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="referral-commands") == 2
    )
    send(settings, buy(carol, 4_000))  # carol converts; dave does not (yet)

    def final() -> bool:
        """Every figure Prometheus is asked about below, as the worker exports it."""
        assert nps_counts(worker, "1h") == (4, 3, 3)
        assert nps_counts(worker, "7d") == nps_counts(worker, "30d") == (5, 3, 3)  # 30 hours ago
        funnel = {s: gauge(worker, "rewards_referral_funnel", window="1h", stage=s)
                  for s in ("invites", "signups", "conversions")}  # fmt: skip
        assert funnel == {"invites": 4, "signups": 2, "conversions": 1}, funnel
        assert gauge(worker, "rewards_referrers_active", window="1h") == 2
        return True

    eventually(final)
    with PrometheusProcess([f"127.0.0.1:{worker.web_port}"], tmp_path, RULES) as prometheus:
        assert value(prometheus, 'rewards:nps:score{window="1h"}') == 10.0  # 40% - 30%
        assert value(prometheus, 'rewards:nps:score{window="7d"}') == pytest.approx(100 * 2 / 11)
        assert value(prometheus, 'rewards:nps:score{window="30d"}') == pytest.approx(100 * 2 / 11)
        assert value(prometheus, 'rewards:nps_by_channel:score{window="1h",channel="email"}') == (
            pytest.approx(100 * (2 - 1) / 3)
        )
        assert value(prometheus, 'rewards:ces:average{window="1h"}') == pytest.approx(
            sum((i % 7) + 1 for i in range(10)) / 10
        )
        funnel = {
            stage: value(prometheus, f'rewards:referral_funnel:sum{{window="1h",stage="{stage}"}}')
            for stage in ("invites", "signups", "conversions")
        }
        assert funnel == {"invites": 4, "signups": 2, "conversions": 1}
        assert value(prometheus, 'sum(rewards_referrers_active{window="1h"})') == 2
        assert value(prometheus, 'rewards:referral_conversion:ratio{window="1h"}') == 0.5
        assert value(prometheus, 'rewards:referral_k_factor:ratio{window="1h"}') == 0.5  # 4/2 x 1/4


def test_recovery_by_arm_follows_each_compensated_customer(
    settings, start_worker, sandbox, tmp_path
):
    settings = settings.model_copy(update={"compensation_discount_share": 0.0})
    worker = start_worker(settings)
    happy, sad = new_id("happy"), new_id("sad")
    now = ago(timedelta(minutes=10))
    events = [complaint(customer_id=c, severity="high", occurred_at=now) for c in (happy, sad)]
    second = complaint(customer_id=happy, severity="critical", occurred_at=now)  # customer period
    publish(settings, "complaints", [record("complaints", e) for e in (*events, second)])
    eventually(lambda: worker.total("rewards_compensation_decisions_total") == 3)
    answer(settings, survey(customer_id=happy, score=10, occurred_at=ago(timedelta(minutes=5))),
           survey(customer_id=sad, score=7, occurred_at=ago(timedelta(minutes=5))))  # fmt: skip
    send(settings, buy(happy, 2_000))  # happy's second complaint is the "none" arm: a limit

    def stages(arm: str) -> dict[str, float]:
        return {s: gauge(worker, "rewards_recovery_complaints", window="24h", arm=arm, stage=s)
                for s in RECOVERY_STAGES}  # fmt: skip

    def final() -> bool:  # sad's answer is on another partition than happy's purchase
        assert stages("gift_card") == {"decided": 2, "surveyed": 2, "promoter": 1,
                                       "passive_or_better": 2, "repurchased": 1}  # fmt: skip
        assert stages("none") == {"decided": 1, "surveyed": 1, "promoter": 1,
                                  "passive_or_better": 1, "repurchased": 1}  # fmt: skip
        return True

    eventually(final)
    with PrometheusProcess([f"127.0.0.1:{worker.web_port}"], tmp_path, RULES) as prometheus:
        promoter = 'rewards:recovery_promoter:ratio{window="24h",arm="gift_card"}'
        assert value(prometheus, promoter) == 0.5
        repurchase = 'rewards:recovery_repurchase:ratio{window="24h",arm="gift_card"}'
        assert value(prometheus, repurchase) == 0.5


def test_windows_neither_double_count_a_replay_nor_lose_a_crash(settings, start_worker):
    settings = settings.model_copy(update={"dedupe_ttl_s": 1})
    worker = start_worker(settings)
    events = answers(new_id("c"))
    answer(settings, *events)
    eventually(lambda: nps_counts(worker, "1h") == (4, 3, 3))
    time.sleep(1.5)  # a replay after the marks' TTL: the same ids are new to the worker again
    answer(settings, *events)
    eventually(
        lambda: worker.total("rewards_events_processed_total", topic="survey-responses") == 20
    )
    assert nps_counts(worker, "1h") == (4, 3, 3)
    worker.kill()  # the windows come back from the table, not from a counter in memory
    again = start_worker(settings.model_copy(update={"web_port": free_port()}))
    eventually(lambda: nps_counts(again, "1h") == (4, 3, 3), timeout_s=90)


def test_two_workers_split_the_partitions_and_sum_to_the_whole(settings, start_worker, tmp_path):
    first = start_worker(settings)
    other = {"web_port": free_port(), "data_dir": tmp_path / "second-worker"}
    second = start_worker(settings.model_copy(update=other))
    eventually(lambda: second.total("rewards_points_recoveries_total") >= 1)
    answer(settings, *answers(new_id("a")), *answers(new_id("b")))

    def summed() -> tuple[float, ...]:
        a, b = nps_counts(first, "1h"), nps_counts(second, "1h")
        assert sum(a) > 0 and sum(b) > 0, (a, b)  # both own customers
        return tuple(x + y for x, y in zip(a, b, strict=True))

    eventually(lambda: summed() == (8, 6, 6), timeout_s=90)
    with PrometheusProcess(
        [f"127.0.0.1:{first.web_port}", f"127.0.0.1:{second.web_port}"], tmp_path, RULES
    ) as prometheus:
        eventually(lambda: value(prometheus, 'rewards:nps:score{window="1h"}') == 10.0)
