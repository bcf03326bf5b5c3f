"""Every dashboard panel's query returns data from a real Prometheus scraping a worker fed through
Kafka (Debian's prometheus package; the recording rules loaded)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.events import complaint, new_id, record, referral, survey
from tests.prometheus import PrometheusProcess
from tests.support import REPO, eventually, publish
from tests.test_advocacy_pipeline import answer, answers
from tests.test_deploy import dashboard_exprs
from tests.test_points_pipeline import HOLD, ago, buy, refund, send
from tests.test_referrals_pipeline import refer, signed_up

pytestmark = pytest.mark.integration
RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$window": "24h",
    "$topic": ".*",  # "All" (the variable's allValue)
}  # fmt: skip


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables filled in) of every dashboard target."""
    found = []
    for title, raw in dashboard_exprs():
        expr = raw
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        found.append((title, expr))
    return found


def feed_everything(settings) -> None:
    """A little of every kind of event, so that every panel has something to show."""
    answer(settings, *answers(new_id("s")))
    alice, carol, mallory = new_id("alice"), new_id("carol"), new_id("mallory")
    invite = referral(referrer_id=alice, occurred_at=ago(timedelta(0)))
    refer(settings, invite, signed_up(alice, carol), signed_up(mallory, mallory, email="m@x.org"))
    happy = new_id("happy")
    complaints = [complaint(customer_id=c, severity="high", occurred_at=ago(timedelta(minutes=2)))
                  for c in (happy, new_id("other"))]  # fmt: skip
    publish(settings, "complaints", [record("complaints", c) for c in complaints])
    answer(settings, survey(customer_id=happy, score=9, occurred_at=ago(timedelta(minutes=1))))
    held = buy(carol, 4_000)
    released = buy(new_id("c"), 5_000, at=ago(HOLD + timedelta(days=1)))
    send(settings, held, released, refund(held, 1_000), buy(alice, 500, points_redeemed=10_000))
    publish(settings, "purchases", [(b"c-1", b"{not json")])


def test_every_dashboard_panel_returns_data(settings, start_worker, sandbox, tmp_path):
    worker = start_worker(settings)
    queries = panel_queries()
    assert len(queries) >= 60
    with PrometheusProcess([f"127.0.0.1:{worker.web_port}"], tmp_path, RULES) as prometheus:
        prometheus.wait_for('up{job="rewards-worker"} == 1')
        feed_everything(settings)  # while Prometheus scrapes: the rates move
        eventually(lambda: worker.total("rewards_gift_cards_issued_total") == 2)
        eventually(lambda: worker.total("rewards_compensation_budget_used_cents", period="day") > 0)
        prometheus.wait_for('rewards:recovery_promoter:ratio{window="24h"}')
        prometheus.wait_for("rate(rewards_events_consumed_total[1m]) > 0")
        empty = [(title, expr) for title, expr in queries if not _eventually_data(prometheus, expr)]
    assert empty == [], "\n".join(f"{title}: {expr}" for title, expr in empty)


def _eventually_data(prometheus: PrometheusProcess, expr: str) -> bool:
    """True once the query returns a sample (rates need two scrapes: allow a few seconds)."""
    try:
        prometheus.wait_for(expr, timeout_s=10)
    except TimeoutError:
        return False
    return True
