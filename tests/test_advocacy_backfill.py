"""A backfill of history older than the windows, with event-time windows, through a real broker,
worker and Prometheus, and `rewards report --as-of`."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.cli.report import render_report
from tests.events import new_id, record, survey
from tests.prometheus import PrometheusProcess
from tests.support import REPO, eventually, publish
from tests.test_points_pipeline import ago, buy, send
from tests.test_report import Tables

pytestmark = pytest.mark.integration
RULES = [REPO / "deploy" / "prometheus" / "rules" / "recording.yml"]
WINDOWS = ("1h", "24h", "7d", "30d")


def answer(settings, customer: str, score: int, days_ago: float) -> dict[str, Any]:
    event = survey(customer_id=customer, score=score, channel="email",
                   occurred_at=ago(timedelta(days=days_ago)))  # fmt: skip
    publish(settings, "survey-responses", [record("survey-responses", event)])
    return event


def nps(worker, window: str = "30d") -> tuple[float, ...]:
    return tuple(
        worker.total("rewards_nps_responses", window=window, category=c)
        for c in ("promoter", "passive", "detractor")
    )


def headline(prometheus: PrometheusProcess, out, as_of: float | None = None) -> dict[str, Any]:
    render_report(prometheus.url, out, hours=1, now=as_of)
    page = out.read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(page)
    return {"page": page, **dict(zip(WINDOWS, parsed.tables[0]["Responses"], strict=True))}


def responses_read(prometheus: PrometheusProcess, out, count: str) -> dict[str, Any]:
    """Wait until the report itself reads `count` answers in the 30d window; return that headline.

    The report reads Prometheus (scraped every second, recording rules evaluated on their own
    interval), so it catches up a beat after the worker. Waiting on anything else (the worker's
    gauges, the window end) is a proxy: the Redis-agreed end can move by a rounding error alone.
    """

    def read() -> dict[str, Any]:
        figures = headline(prometheus, out)
        assert figures["30d"] == count, {k: v for k, v in figures.items() if k != "page"}
        return figures

    return eventually(read)


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
        responses_read(prometheus, tmp_path / "before.html", "2")  # what `then` reads, at `before`
        before = time.time()
        time.sleep(2)
        answer(event_mode, new_id("carol"), 9, 59)  # moves the end a day on
        eventually(lambda: nps(worker) == (2, 0, 1))
        now = responses_read(prometheus, tmp_path / "now.html", "3")
        then = headline(prometheus, tmp_path / "then.html", as_of=before)
    assert now["30d"] == "3" and then["30d"] == "2"
    stamp = datetime.fromtimestamp(end, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    assert f"Rolling windows end at {stamp}" in then["page"]
