"""Render the headline advocacy metrics from Prometheus into one self-contained HTML file.

For people without Grafana: `render_report` reads the recording rules of
deploy/prometheus/rules/recording.yml over Prometheus' HTTP API (standard library only) and
writes one HTML page with its PNG charts embedded as data: URIs (no external assets). A value
Prometheus does not have (no series, or NaN) shows as "—".
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

TIMEOUT_S = 10.0  # per HTTP request to Prometheus
MAX_POINTS = 300  # per series in the trend chart
MISSING = "—"
WINDOWS = ("1h", "24h", "7d", "30d")
CATEGORIES = ("promoter", "passive", "detractor")
STAGES = ("invites", "signups", "conversions")
ARMS = ("gift_card", "discount", "none")
SHARES = ("promoter", "passive_or_better", "repurchase")
STATES = ("pending", "available")
TREND_WINDOWS = ("24h", "7d")

Values = dict[tuple[str, ...], float | None]  # instant vector: label values -> value (NaN: None)
Series = dict[str, list[tuple[float, float]]]  # range result: window -> [(unix time, value)]

# name -> (PromQL, the labels that identify a series); {range} is the report period.
QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "nps": ("rewards:nps:score", ("window",)),
    "responses": ("sum by (window) (rewards_nps_responses)", ("window",)),
    "categories": ("rewards:nps_responses:sum", ("window", "category")),
    "ces": ("rewards:ces:average", ("window",)),
    "funnel": ("rewards:referral_funnel:sum", ("window", "stage")),
    "conversion": ("rewards:referral_conversion:ratio", ("window",)),
    "k_factor": ("rewards:referral_k_factor:ratio", ("window",)),
    "promoter": ('rewards:recovery_promoter:ratio{window="30d"}', ("arm",)),
    "passive_or_better": ('rewards:recovery_passive_or_better:ratio{window="30d"}', ("arm",)),
    "repurchase": ('rewards:recovery_repurchase:ratio{window="30d"}', ("arm",)),
    "decided": (
        'sum by (arm) (rewards_recovery_complaints{window="30d", stage="decided"})',
        ("arm",),
    ),
    "outstanding": ("rewards:points_outstanding:sum", ("state",)),
    "window_end_min": ("min(rewards_advocacy_window_end_seconds)", ()),
    "window_end_max": ("max(rewards_advocacy_window_end_seconds)", ()),
    "gift_cards": ("sum by (tier) (increase(rewards_gift_cards_issued_total[{range}]))", ("tier",)),
}

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:0 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .7em}
td{text-align:right}th{background:#f3f3f3;text-align:left}img{max-width:100%;margin:.5em 0}
.meta{color:#555}"""


WINDOW_END_SLACK_S = 300.0
"""Window ends closer than this are one end (wall-clock windows differ by the scrape times)."""


class ReportError(Exception):
    """Prometheus did not answer, or answered with an error."""


def _api(base: str, path: str, params: Mapping[str, str]) -> Any:
    """GET one Prometheus API endpoint and return its `data`; ReportError on any failure."""
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - http(s)
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # Prometheus answers 400/422/503 with a JSON error
        try:
            body = json.loads(exc.read())
        except ValueError:
            raise ReportError(f"Prometheus at {base} answered HTTP {exc.code} to {path}") from exc
    except (OSError, ValueError) as exc:
        raise ReportError(f"Prometheus at {base} did not answer {path}: {exc}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", body) if isinstance(body, dict) else body
        raise ReportError(f"Prometheus at {base} answered an error to {path}: {detail}")
    return body["data"]


def _number(raw: str) -> float | None:
    """A sample value as Prometheus encodes it (a string); None for NaN or infinity."""
    value = float(raw)
    return value if math.isfinite(value) else None


def _vector(base: str, expr: str, labels: tuple[str, ...], at: float) -> Values:
    """Run an instant query and key each sample by the given label values."""
    data = _api(base, "/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
    if data.get("resultType") != "vector":
        raise ReportError(f"expected a vector from {expr!r}, got {data.get('resultType')}")
    return {
        tuple(s["metric"].get(label, "") for label in labels): _number(s["value"][1])
        for s in data["result"]
    }


def _trend(base: str, start: float, end: float) -> Series:
    """The NPS of the trend windows over [start, end], at most MAX_POINTS points per window."""
    step = max(1, math.ceil((end - start) / (MAX_POINTS - 1)))
    start = end - step * math.floor((end - start) / step)  # so the last point is `end` itself
    windows = "|".join(TREND_WINDOWS)
    params = {"query": f'rewards:nps:score{{window=~"{windows}"}}', "step": str(step)}
    data = _api(
        base, "/api/v1/query_range", {**params, "start": f"{start:.3f}", "end": f"{end:.3f}"}
    )
    series: Series = {}
    for s in data.get("result", []):
        points = [(float(t), _number(v)) for t, v in s["values"]]
        series[s["metric"].get("window", "")] = [(t, v) for t, v in points if v is not None]
    return series


def _fetch(base: str, hours: float, now: float) -> dict[str, Values]:
    """Every instant query of the report, evaluated at `now`."""
    period = f"{max(1, round(hours * 3600))}s"
    return {
        name: _vector(base, expr.replace("{range}", period), labels, now)
        for name, (expr, labels) in QUERIES.items()
    }


def _rfc3339(ts: float) -> str:
    """A unix time as RFC 3339 in UTC, to the second."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _count(value: float | None) -> str:
    """A count: thousands separated, one decimal only when not whole (e.g. an increase())."""
    if value is None:
        return MISSING
    return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"


def _fixed(value: float | None, digits: int) -> str:
    """A number with `digits` decimals, or the missing mark."""
    return MISSING if value is None else f"{value:.{digits}f}"


def _percent(value: float | None) -> str:
    """A ratio (0..1) as a percentage with one decimal, or the missing mark."""
    return MISSING if value is None else f"{100 * value:.1f}%"


def _table(caption: str, headers: Sequence[str], rows: Sequence[tuple[str, list[str]]]) -> str:
    """An HTML table: a header row, then one row per (label, cells); every string escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells)
        + "</tr>"
        for label, cells in rows
    )
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def _headline(d: dict[str, Values]) -> str:
    """NPS, CES and the referral funnel per window."""
    w = WINDOWS
    rows = [
        ("NPS", [_fixed(d["nps"].get((x,)), 1) for x in w]),
        ("Responses", [_count(d["responses"].get((x,))) for x in w]),
        *((f"{c.title()}s", [_count(d["categories"].get((x, c))) for x in w]) for c in CATEGORIES),
        ("CES average", [_fixed(d["ces"].get((x,)), 2) for x in w]),
        *((s.title(), [_count(d["funnel"].get((x, s))) for x in w]) for s in STAGES),
        ("Conversion rate", [_percent(d["conversion"].get((x,))) for x in w]),
        ("K-factor", [_fixed(d["k_factor"].get((x,)), 2) for x in w]),
    ]
    return _table("Headline figures by rolling window", ["", *w], rows)


def _recovery(d: dict[str, Values]) -> str:
    """Recovery after a complaint, by arm, over the 30d window."""
    headers = ["Arm", "Decided", "Promoter", "Passive or better", "Repurchased"]
    rows = [
        (arm, [_count(d["decided"].get((arm,))), *(_percent(d[s].get((arm,))) for s in SHARES)])
        for arm in ARMS
    ]
    return _table("Recovery after a complaint, by arm (30d)", headers, rows)


def _rewards(d: dict[str, Values], hours: float) -> str:
    """Outstanding points by state and gift cards issued by tier over the report period."""
    points = [(s.title(), [_count(d["outstanding"].get((s,)))]) for s in STATES]
    tiers = sorted(d["gift_cards"].items())
    cards = [(t, [_count(v)]) for (t,), v in tiers] or [("(none)", [MISSING])]
    return _table("Points outstanding", ["State", "Points"], points) + _table(
        f"Gift cards issued in the last {hours:g}h", ["Tier", "Cards"], cards
    )


def _png(fig: Figure) -> str:
    """Render a figure with Agg and return it as a data: URI."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(title: str, groups: Sequence[str], bars: Mapping[str, Sequence[float | None]]) -> str:
    """Grouped bars (one colour per key of `bars`), missing values drawn as a labelled gap."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(bars))
    for i, (name, values) in enumerate(bars.items()):
        xs = [g + (i - (len(bars) - 1) / 2) * width for g in range(len(groups))]
        drawn = ax.bar(xs, [v or 0.0 for v in values], width, label=name)
        ax.bar_label(drawn, [MISSING if v is None else f"{v:g}" for v in values], fontsize=8)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_title(title)
    if len(bars) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def _trend_chart(series: Series, hours: float) -> str:
    """The NPS trend lines, or a 'no data' note."""
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot()
    for window in TREND_WINDOWS:
        points = series.get(window, [])
        times = np.array([round(t) for t, _ in points], dtype="datetime64[s]")  # naive = UTC
        ax.plot(times, [v for _, v in points], ".-", markersize=3, label=f"NPS {window}")
    if not any(series.values()):
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(f"NPS over the last {hours:g}h (UTC)")
    ax.set_ylim(-100, 100)
    ax.legend(fontsize=8, loc="lower left")
    fig.autofmt_xdate()
    return _png(fig)


def _charts(d: dict[str, Values], series: Series, hours: float) -> list[tuple[str, str]]:
    """Every chart as (alt text, data: URI)."""
    split = [d["categories"].get(("24h", c)) for c in CATEGORIES]
    funnel = [d["funnel"].get(("30d", s)) for s in STAGES]
    shares = {
        s: [None if (v := d[s].get((a,))) is None else round(100 * v, 1) for a in ARMS]
        for s in SHARES
    }
    return [
        ("NPS trend", _trend_chart(series, hours)),
        ("Promoters, passives, detractors (24h)", _bars("Answers (24h)", CATEGORIES, {"": split})),
        ("Referral funnel (30d)", _bars("Referral funnel (30d)", STAGES, {"": funnel})),
        ("Recovery by arm (30d, %)", _bars("Recovery by arm (30d, %)", ARMS, shares)),
    ]


def _window_ends(d: dict[str, Values]) -> str:
    """Where the workers' rolling windows end (event-time windows may end in the past)."""
    low, high = d["window_end_min"].get(()), d["window_end_max"].get(())
    if low is None or high is None:
        return ""
    if high - low < WINDOW_END_SLACK_S:
        return f" Rolling windows end at {_rfc3339(high)}."
    return (f" Rolling windows end between {_rfc3339(low)} and {_rfc3339(high)}: the workers' "
            "event clocks disagree, so sums over workers mix windows.")  # fmt: skip


def _page(url: str, start: float, end: float, sections: list[str], ends: str = "") -> str:
    """The whole HTML document."""
    title = "Rewards advocacy report"
    meta = (
        f"Generated {_rfc3339(time.time())} from Prometheus at {url}; "
        f"time range {_rfc3339(start)} to {_rfc3339(end)}.{ends}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p>'
        + "\n".join(sections)
        + "</body></html>\n"
    )


def render_report(
    prometheus_url: str, out: Path, *, hours: float = 24.0, now: float | None = None
) -> Path:
    """Query Prometheus and write the HTML report to `out`; returns `out`."""
    if urllib.parse.urlsplit(prometheus_url).scheme not in {"http", "https"}:
        raise ReportError(f"not an http(s) URL: {prometheus_url!r}")
    if not hours > 0:
        raise ValueError(f"hours must be positive, got {hours}")
    end = time.time() if now is None else now
    start = end - hours * 3600
    data = _fetch(prometheus_url, hours, end)
    series = _trend(prometheus_url, start, end)
    charts = "".join(
        f'<figure><img alt="{html.escape(alt)}" src="{html.escape(uri)}"></figure>'
        for alt, uri in _charts(data, series, hours)
    )
    sections = [
        "<h2>Advocacy</h2>" + _headline(data),
        "<h2>Recovery</h2>" + _recovery(data),
        "<h2>Rewards</h2>" + _rewards(data, hours),
        "<h2>Charts</h2>" + charts,
    ]
    page = _page(prometheus_url, start, end, sections, _window_ends(data))
    out.write_text(page, encoding="utf-8")
    return out
