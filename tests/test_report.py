"""`streams.cli.report`: a real Prometheus scrapes a fixed exposition; the report shows it."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streams.bench.worker_process import free_port
from streams.cli.report import ReportError, _trend, render_report
from tests.prometheus import PrometheusProcess
from tests.support import REPO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WINDOWS = ("1h", "24h", "7d", "30d")

# (window, channel) -> (promoters, passives, detractors); 1h has no answers at all.
NPS = {
    ("24h", "app"): (3, 2, 1), ("24h", "email"): (1, 1, 2),  # 4/3/3 of 10: NPS 10.0
    ("7d", "app"): (8, 3, 2), ("7d", "email"): (4, 2, 1),  # 12/5/3 of 20: NPS 45.0
    ("30d", "app"): (15, 10, 5), ("30d", "email"): (10, 5, 5),  # 25/15/10 of 50: NPS 30.0
}  # fmt: skip
# (window, channel) -> (CES answers, sum of scores)
CES = {
    ("24h", "app"): (5, 20), ("24h", "email"): (3, 16),  # 36 / 8 = 4.50
    ("7d", "app"): (10, 35), ("7d", "email"): (6, 25),  # 60 / 16 = 3.75
    ("30d", "app"): (20, 90), ("30d", "email"): (20, 70),  # 160 / 40 = 4.00
}  # fmt: skip
# window -> (invites, signups, conversions, active referrers)
FUNNEL = {
    "24h": (6, 3, 1, 3),  # conversion 1/3 = 33.3%, k = 6/3 * 1/6 = 0.33
    "7d": (20, 6, 3, 5),  # conversion 50.0%, k = 20/5 * 3/20 = 0.60
    "30d": (40, 10, 4, 8),  # conversion 40.0%, k = 40/8 * 4/40 = 0.50
}
# arm -> (decided, surveyed, promoter, passive_or_better, repurchased), 30d window
RECOVERY = {
    "gift_card": (10, 8, 4, 6, 5),  # 4/8 = 50.0%, 6/8 = 75.0%, 5/10 = 50.0%
    "discount": (8, 5, 1, 3, 2),  # 20.0%, 60.0%, 25.0%
    "none": (4, 0, 0, 0, 1),  # nobody surveyed: "—", "—"; 1/4 = 25.0%
}
RECOVERY_STAGES = ("decided", "surveyed", "promoter", "passive_or_better", "repurchased")


def family(name: str, kind: str, samples: Sequence[tuple[Mapping[str, str], float]]) -> list[str]:
    """One metric family in the text exposition format."""
    lines = [f"# HELP {name} Test data for {name}.", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
        lines.append(f"{name}{{{rendered}}} {value}")
    return lines


def exposition(scrape: int) -> str:
    """The worker's advocacy metrics; the gift-card counter grows with every scrape."""
    channels = ("app", "email")
    nps = [
        ({"window": w, "channel": c, "category": cat}, NPS.get((w, c), (0, 0, 0))[i])
        for w in WINDOWS for c in channels
        for i, cat in enumerate(("promoter", "passive", "detractor"))
    ]  # fmt: skip
    ces = [
        ({"window": w, "channel": c}, CES.get((w, c), (0, 0))) for w in WINDOWS for c in channels
    ]
    funnel = [
        ({"window": w, "stage": stage}, FUNNEL.get(w, (0, 0, 0, 0))[i])
        for w in WINDOWS for i, stage in enumerate(("invites", "signups", "conversions"))
    ]  # fmt: skip
    recovery = [
        ({"window": w, "arm": arm, "stage": stage}, counts[i] if w == "30d" else 0)
        for w in WINDOWS for arm, counts in RECOVERY.items()
        for i, stage in enumerate(RECOVERY_STAGES)
    ]  # fmt: skip
    budget = {"currency": "EUR", "period": "day"}
    lines = [
        *family("rewards_nps_responses", "gauge", nps),
        *family("rewards_ces_responses", "gauge", [(ls, n) for ls, (n, _) in ces]),
        *family("rewards_ces_score_sum", "gauge", [(ls, s) for ls, (_, s) in ces]),
        *family("rewards_referral_funnel", "gauge", funnel),
        *family(
            "rewards_referrers_active", "gauge",
            [({"window": w}, FUNNEL.get(w, (0, 0, 0, 0))[3]) for w in WINDOWS],
        ),
        *family("rewards_recovery_complaints", "gauge", recovery),
        *family(
            "rewards_points_outstanding", "gauge",
            [({"state": "pending"}, 1500), ({"state": "available"}, 4200)],
        ),
        *family("rewards_compensation_budget_limit_cents", "gauge", [(budget, 100_000)]),
        *family("rewards_compensation_budget_used_cents", "gauge", [(budget, 25_000)]),
        *family(
            "rewards_gift_cards_issued_total", "counter",
            [
                ({"tier": "critical", "currency": "EUR"}, 1 + scrape),
                ({"tier": "high", "currency": "EUR"}, 2 + 2 * scrape),
                ({"tier": "medium", "currency": "EUR"}, 3),
            ],
        ),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


class ExpositionHandler(BaseHTTPRequestHandler):
    """/metrics: the exposition; /api/v1/*: a Prometheus-style error (for the error path)."""

    scrapes = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/"):
            self.answer(503, "application/json", b'{"status":"error","error":"test says no"}')
        elif self.path.startswith("/metrics"):
            with self.lock:
                type(self).scrapes += 1
                scrape = self.scrapes
            self.answer(200, "text/plain; version=0.0.4", exposition(scrape).encode())
        else:
            self.answer(404, "text/plain", b"not found")

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    """host:port of a fake worker /metrics page."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), ExpositionHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prometheus(exporter, tmp_path_factory) -> Iterator[PrometheusProcess]:
    """Prometheus scraping the fake worker, once every series the report reads has data: each
    recording rule's (one rule's first evaluation says nothing of the next one's) and the
    gift-card counter's increase (two scrapes)."""
    rules = REPO / "deploy" / "prometheus" / "rules" / "recording.yml"
    with PrometheusProcess([exporter], tmp_path_factory.mktemp("prometheus"), [rules]) as prom:
        for series in prom.recorded():  # the exposition is fixed: the first values are final
            prom.wait_for(series)
        prom.wait_for('increase(rewards_gift_cards_issued_total{tier="critical"}[1m]) > 0')
        yield prom


class Tables(HTMLParser):
    """Every <table> as {row header: [cell texts]}, and every <img> src."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, list[str]]] = []
        self.images: list[str] = []
        self.row: list[str] | None = None
        self.text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append({})
        elif tag == "tr":
            self.row = []
        elif tag in {"th", "td"}:
            self.text = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"th", "td"} and self.row is not None and self.text is not None:
            self.row.append("".join(self.text).strip())
            self.text = None
        elif tag == "tr" and self.row:
            self.tables[-1][self.row[0]] = self.row[1:]
            self.row = None

    def handle_data(self, data: str) -> None:
        if self.text is not None:
            self.text.append(data)


@pytest.fixture(scope="module")
def report(prometheus, tmp_path_factory) -> tuple[str, Tables]:
    """The rendered report and its parsed tables."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert render_report(prometheus.url, out, hours=24) == out
    page = out.read_text(encoding="utf-8")
    parsed = Tables()
    parsed.feed(page)
    return page, parsed


@pytest.mark.integration
def test_report_is_one_self_contained_html_document(report, prometheus):
    page = report[0]
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<html") == 1 and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page and "url(" not in page
    assert prometheus.url in page
    assert re.search(r"Generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", page)
    assert re.search(r"time range \S+Z to \S+Z", page)


@pytest.mark.integration
def test_headline_figures_match_the_hand_worked_values(report):
    headline = report[1].tables[0]
    assert headline[""] == list(WINDOWS)
    assert headline["NPS"] == ["—", "10.0", "45.0", "30.0"]
    assert headline["Responses"] == ["0", "10", "20", "50"]
    assert headline["Promoters"] == ["0", "4", "12", "25"]
    assert headline["Passives"] == ["0", "3", "5", "15"]
    assert headline["Detractors"] == ["0", "3", "3", "10"]
    assert headline["CES average"] == ["—", "4.50", "3.75", "4.00"]
    assert headline["Invites"] == ["0", "6", "20", "40"]
    assert headline["Signups"] == ["0", "3", "6", "10"]
    assert headline["Conversions"] == ["0", "1", "3", "4"]
    assert headline["Conversion rate"] == ["—", "33.3%", "50.0%", "40.0%"]
    assert headline["K-factor"] == ["—", "0.33", "0.60", "0.50"]


@pytest.mark.integration
def test_recovery_and_rewards_tables(report):
    recovery, points, cards = report[1].tables[1:4]
    assert recovery["gift_card"] == ["10", "50.0%", "75.0%", "50.0%"]
    assert recovery["discount"] == ["8", "20.0%", "60.0%", "25.0%"]
    assert recovery["none"] == ["4", "—", "—", "25.0%"]
    assert points["Pending"] == ["1,500"] and points["Available"] == ["4,200"]
    assert set(cards) == {"Tier", "critical", "high", "medium"}
    assert cards["medium"] == ["0"]  # a constant counter: nothing issued in the period
    assert float(cards["critical"][0].replace(",", "")) > 0


@pytest.mark.integration
def test_every_image_is_an_embedded_png(report):
    images = report[1].images
    assert len(images) == 4
    for src in images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src.removeprefix(prefix), validate=True).startswith(PNG_SIGNATURE)


@pytest.mark.integration
def test_trend_has_the_latest_point(prometheus):
    now = time.time()
    series = _trend(prometheus.url, now - 24 * 3600, now)
    assert {"24h", "7d"} <= set(series)
    last_time, last_nps = series["24h"][-1]
    assert last_time == pytest.approx(now, abs=0.01) and last_nps == 10.0
    assert series["7d"][-1][1] == 45.0


def test_nothing_listening_is_a_report_error(tmp_path: Path):
    with pytest.raises(ReportError, match="did not answer"):
        render_report(f"http://127.0.0.1:{free_port()}", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_an_error_answer_is_a_report_error(exporter, tmp_path: Path):
    with pytest.raises(ReportError, match="test says no"):
        render_report(f"http://{exporter}", tmp_path / "r.html")


def test_not_an_http_url_is_a_report_error(tmp_path: Path):
    with pytest.raises(ReportError, match="not an http"):
        render_report("file:///etc/passwd", tmp_path / "r.html")
