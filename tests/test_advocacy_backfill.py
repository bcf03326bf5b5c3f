"""A backfill of history older than the windows, with event-time windows, through a real broker,
worker and Prometheus, and `rewards report --as-of`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from streams.tools.report import render_report
from tests.events import new_id, record, survey
from tests.prometheus import PrometheusProcess
from tests.support import REPO, eventually, publish
from tests.test_points_pipeline import ago, buy, send
from tests.test_report import Tables

pytestmark = pytest.mark.integration
RULES = [REPO / "deploy" / "prometheus" / "rules" / "recording.yml"]
WINDOWS = ("1h", "24h", "7d", "30d")


def answer(settings, customer: str, score: int, days_ago: float) -> dict:
    event = survey(customer_id=customer, score=score, channel="email",
                   occurred_at=ago(timedelta(days=days_ago)))  # fmt: skip
    publish(settings, "survey-responses", [record("survey-responses", event)])
    return event


def nps(worker, window: str = "30d") -> tuple[float, ...]:
    return tuple(
        worker.total("rewards_nps_responses", window=window, category=c)
        for c in ("promoter", "passive", "detractor")
    )


def headline(prometheus: PrometheusProcess, out, as_of: float | None = None) -> dict:
    render_report(prometheus.url, out, hours=1, now=as_of)
    page = out.read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(page)
    return {"page": page, **dict(zip(WINDOWS, parsed.tables[0]["Responses"], strict=True))}


def test_backfilled_history_fills_event_time_windows_and_the_report_reads_any_time(
    settings, start_worker, tmp_path
):
    event_mode = settings.model_copy(update={"advocacy_clock": "event"})
    worker = start_worker(event_mode)
    alice, bob = new_id("alice"), new_id("bob")
    answer(event_mode, alice, 10, 90)  # outside the 30 days before the newest answer
    answer(event_mode, alice, 10, 65)
    newest = answer(event_mode, bob, 2, 60)
    eventually(lambda: nps(worker) == (1, 0, 1))
    send(event_mode, buy(alice, 4_000))  # touches the account at today's stream time
    eventually(lambda: worker.total("rewards_events_processed_total", topic="purchases") == 1)
    assert nps(worker) == (1, 0, 1) and nps(worker, "24h") == (0, 0, 1)  # alice is 5 days older
    end = worker.total("rewards_advocacy_window_end_seconds")
    assert end == datetime.fromisoformat(newest["occurred_at"]).timestamp()

    with PrometheusProcess([f"127.0.0.1:{worker.web_port}"], tmp_path, RULES) as prometheus:
        eventually(lambda: prometheus.query('rewards:nps:score{window="30d"}'))
        before = time.time()
        time.sleep(2)
        answer(event_mode, new_id("carol"), 9, 59)  # moves the end a day on
        eventually(lambda: nps(worker) == (2, 0, 1))
        eventually(lambda: prometheus.query("rewards_advocacy_window_end_seconds > " + str(end)))
        now = headline(prometheus, tmp_path / "now.html")
        then = headline(prometheus, tmp_path / "then.html", as_of=before)
    assert now["30d"] == "3" and then["30d"] == "2"
    stamp = datetime.fromtimestamp(end, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert f"Rolling windows end at {stamp}" in then["page"]
