"""The soak's verdict put together: checks, per-topic counts, the faults and what they stalled."""

from __future__ import annotations

import statistics
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.chaos.faults import Fault
from streams.chaos.observe import Observed
from streams.chaos.oracle import Expected
from streams.chaos.publish import PublishStats
from streams.chaos.read import Rec
from streams.chaos.stack import Crash
from streams.chaos.verdict import (
    Check,
    Lag,
    balances,
    budget,
    fraud_alerts,
    gift_cards,
    lag_check,
    ledger_entries,
    processed,
    rewards,
)

WINDOW_S = 120.0
"""How long after a fault (at most, or until the next one) its stall is looked for."""


@dataclass
class Verdict:
    """PASS only if every gating check passes."""

    passed: bool
    checks: list[Check]
    topics: list[dict[str, Any]]
    faults: list[dict[str, Any]]
    figures: dict[str, Any]
    crashes: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For `--json`."""
        return asdict(self)


def judge(  # noqa: PLR0917 - everything the verdict weighs
    expected: Expected,
    found: Observed,
    faults: Sequence[Fault],
    crashes: Sequence[Crash],
    stats: PublishStats,
    lag: Lag,
    prefix: str,
) -> Verdict:
    """Compare, and gather the figures."""
    unprocessed, topics = processed(expected, found, prefix)
    checks = [
        unprocessed,
        balances(expected, found),
        *rewards(expected, found),
        *gift_cards(expected, found),
        lag_check(lag),
        ledger_entries(expected, found),
        budget(expected, found),
        fraud_alerts(found),
    ]
    checks.append(
        Check(
            "worker crashes (exits nobody caused)",
            0,
            len(crashes),
            not crashes,
            gating=False,
            evidence=[f"{c.worker}: {c.what}" for c in crashes],
        )
    )
    passed = all(c.ok for c in checks if c.gating)
    rows = fault_rows(faults, found.topics.get("points-ledger", []), expected, stats.started)
    figures = _figures(expected, found, faults, crashes, stats, lag)
    crash_rows = [asdict(c) for c in crashes]
    return Verdict(passed, checks, topics, rows, figures, crash_rows)


def _figures(  # noqa: PLR0917 - everything the figures count
    expected: Expected,
    found: Observed,
    faults: Sequence[Fault],
    crashes: Sequence[Crash],
    stats: PublishStats,
    lag: Lag,
) -> dict[str, Any]:
    kinds = Counter(f.kind for f in faults)
    return {
        "published": stats.sent,
        "acknowledged": stats.delivered,
        "publish_failures": stats.failed,
        "publish_rate": round(stats.rate, 1),
        "publish_seconds": round(stats.paced - stats.started, 1),
        "acknowledged_after_s": round(stats.finished - stats.started, 1),
        "customers": len(expected.customers),
        "gift_cards_expected": len(expected.gift_cards),
        "sandbox_create_requests": found.sandbox.get("requests", {}).get("create"),
        "gift_card_order_records": len(found.topics.get("gift-card-orders", [])),
        "ledger_records": len(found.topics.get("points-ledger", [])),
        "dead_letters": len(found.topics.get("dead-letter", [])),
        "mirror_keys": found.mirror_keys,
        "worker_kills": kinds["worker_kill"],
        "broker_outages": kinds["broker_outage"],
        "redis_outages": kinds["redis_outage"],
        "worker_restarts": sum(1 for f in faults if f.kind == "worker_kill" and f.restarted)
        + sum(1 for c in crashes if c.what.startswith("exited")),
        "broker_restarts": sum(1 for f in faults if f.kind == "broker_outage" and f.ready),
        "redis_restarts": sum(1 for f in faults if f.kind == "redis_outage" and f.ready),
        "worker_crashes": len(crashes),
        "lag_zero_after_last_event_s": _round(lag.after_s(lag.last_event_at)),
        "lag_zero_after_last_fault_s": _round(lag.after_s(lag.last_fault_at)),
        "offset_lag_at_end": lag.raw,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def fault_rows(
    faults: Sequence[Fault], ledger: Sequence[Rec], expected: Expected, origin: float
) -> list[dict[str, Any]]:
    """Per fault: when, how long the target was down, and what it stalled: how long, from the
    fault on, some ledger partition's output paused (record timestamps; faults close together
    share a pause), and the longest input-to-ledger delay of the events published from the
    fault until the next one."""
    by_partition: defaultdict[int, list[float]] = defaultdict(list)
    first_out: dict[str, float] = {}
    for rec in sorted(ledger, key=lambda r: r.timestamp_ms):
        at = rec.timestamp_ms / 1000
        by_partition[rec.partition].append(at)
        first_out.setdefault(str(rec.json().get("source_event_id")), at)
    delays = sorted(
        (expected.timestamps[e] / 1000, out - expected.timestamps[e] / 1000)
        for e, out in first_out.items()
        if e in expected.timestamps
    )
    ordered = sorted(faults, key=lambda f: f.started)
    rows = []
    for i, fault in enumerate(ordered):
        until = ordered[i + 1].started if i + 1 < len(ordered) else fault.started + WINDOW_S
        lo, hi = fault.started, min(until, fault.started + WINDOW_S)
        rows.append(
            {
                "kind": fault.kind,
                "target": fault.target,
                "at_s": round(fault.started - origin, 1),
                "down_s": _round(fault.restarted - fault.started if fault.restarted else None),
                "ready_s": _round(fault.ready - fault.started if fault.ready else None),
                "stall_s": round(_longest_pause(by_partition, lo, hi), 1),
                "max_delay_s": _round(_max_delay(delays, fault.started, hi)),
                "note": fault.note,
            }
        )
    return rows


def _longest_pause(by_partition: dict[int, list[float]], lo: float, hi: float) -> float:
    """The longest time, from `lo` on, that one partition's output paused, over the pauses
    (gaps between consecutive output timestamps) that overlap [lo, hi)."""
    longest = 0.0
    for times in by_partition.values():
        first, last = max(0, bisect_left(times, lo) - 1), bisect_left(times, hi)
        for k in range(first, min(last, len(times) - 1)):
            if times[k + 1] > lo:
                longest = max(longest, times[k + 1] - max(times[k], lo))
    return longest


def _max_delay(delays: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    """The longest delay of the events appended in [lo, hi) (None: none was)."""
    first, last = bisect_left(delays, (lo, -1.0)), bisect_left(delays, (hi, -1.0))
    return max((d for _, d in delays[first:last]), default=None)


def delay_figures(verdict: Verdict, ledger: Sequence[Rec], expected: Expected) -> None:
    """Add the overall input-to-ledger delay percentiles to the figures."""
    first_out: dict[str, float] = {}
    for rec in ledger:
        event = str(rec.json().get("source_event_id"))
        first_out[event] = min(first_out.get(event, float("inf")), rec.timestamp_ms / 1000)
    delays = sorted(
        out - expected.timestamps[e] / 1000
        for e, out in first_out.items()
        if e in expected.timestamps
    )
    if len(delays) >= 2:
        cuts = statistics.quantiles(delays, n=100)
        verdict.figures["delay_p50_s"] = round(cuts[49], 2)
        verdict.figures["delay_p99_s"] = round(cuts[98], 2)
        verdict.figures["delay_max_s"] = round(delays[-1], 2)


def render(verdict: Verdict) -> str:
    """The verdict as the operator reads it."""
    lines = [f"rewards chaos: {'PASS' if verdict.passed else 'FAIL'}", ""]
    lines.append(f"  {'check':<50}{'expected':>22}{'observed':>26}")
    for c in verdict.checks:
        mark = ("ok  " if c.ok else "FAIL") if c.gating else ("ok  " if c.ok else "note")
        lines.append(f"{mark} {c.name:<49}{_cell(c.expected):>22}{_cell(c.observed):>26}")
    lines += [
        "",
        f"  {'topic':<14}{'records':>9}{'unique':>9}{'retries':>9}  outcome of each unique",
    ]
    for row in verdict.topics:
        outcomes = {
            k: v for k, v in row.items() if k not in {"topic", "records", "unique", "retries"}
        }
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        lines.append(
            f"  {row['topic']:<14}{row['records']:>9}{row['unique']:>9}{row['retries']:>9}  {shown}"
        )
    lines += [
        "",
        f"  {'fault':<15}{'target':<10}{'at s':>7}{'down s':>8}{'ready s':>9}"
        f"{'stall s':>9}{'max delay s':>13}",
    ]
    for f in verdict.faults:
        lines.append(
            f"  {f['kind']:<15}{f['target']:<10}{f['at_s']:>7}{_cell(f['down_s']):>8}"
            f"{_cell(f['ready_s']):>9}{f['stall_s']:>9}{_cell(f['max_delay_s']):>13}"
            f"  {f['note']}"
        )
    lines += ["", "  " + ", ".join(f"{k}={v}" for k, v in verdict.figures.items())]
    for c in verdict.checks:
        if not c.ok and c.evidence:
            lines += ["", f"  {c.name}:", *(f"    {e}" for e in c.evidence)]
    for crash in verdict.crashes:
        tail = crash["log_tail"].strip().splitlines()[-8:]
        lines += ["", f"  crash of {crash['worker']}: {crash['what']}", *(f"    {t}" for t in tail)]
    return "\n".join(lines)


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 24 else text[:21] + "..."
