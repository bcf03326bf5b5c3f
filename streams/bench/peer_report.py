"""The peer benchmark's figures: one result per run, a summary per system, table and JSON."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

BASELINE = "quix"


@dataclass(frozen=True)
class RunResult:
    """One system, one repetition."""

    system: str
    repetition: int
    status: str
    """`done`, or why the run ended early (stalled, exited, no output...)."""
    verification: str
    ok: bool
    """Finished by the end rule and verified: only then are the figures meaningful."""
    events: float
    """Input events counted inside the interval (see peer_monitor and deploy/bench/README.md)."""
    wall_s: float
    outputs_s: float
    """From the start of the interval until the last expected record arrived (wall_s minus the
    wait for the input offsets to become durable)."""
    cpu_s: float
    peak_rss_mib: float
    output_records: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.ok and self.wall_s > 0 else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        return self.events / self.cpu_s if self.ok and self.cpu_s > 0 else 0.0

    def line(self) -> str:
        """One line for the progress log."""
        if not self.ok:
            return f"{self.system}: {self.status}; {self.verification}"
        return (f"{self.system}: {self.events_per_s:,.0f} events/s, "
                f"{self.events_per_cpu_s:,.0f} events/CPU-s, {self.wall_s:.2f} s (last output "
                f"at {self.outputs_s:.2f} s), peak RSS {self.peak_rss_mib:,.0f} MiB, "
                f"{self.verification}")  # fmt: skip

    def figures(self) -> dict[str, Any]:
        return asdict(self) | {
            "events_per_s": self.events_per_s,
            "events_per_cpu_s": self.events_per_cpu_s,
        }


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def summarise(results: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    """Per system: min/median/max of both rates over the verified runs, the largest peak RSS,
    the verification outcome, and the medians' ratios to Quix Streams'."""
    out: dict[str, dict[str, Any]] = {}
    for system in dict.fromkeys(r.system for r in results):
        runs = [r for r in results if r.system == system]
        good = [r for r in runs if r.ok]
        out[system] = {
            "runs": len(runs),
            "verified": len(good),
            "failures": [f"{r.status}; {r.verification}" for r in runs if not r.ok],
            "events_per_s": _spread([r.events_per_s for r in good]),
            "events_per_cpu_s": _spread([r.events_per_cpu_s for r in good]),
            "peak_rss_mib": max((r.peak_rss_mib for r in good), default=0.0),
        }
    base = out.get(BASELINE)
    for summary in out.values():
        for figure in ("events_per_s", "events_per_cpu_s"):
            ok = base is not None and base["verified"] and summary["verified"]
            ratio = summary[figure]["median"] / base[figure]["median"] if ok and base else None
            summary[f"{figure}_vs_{BASELINE}"] = ratio
    return out


def _cell(spread: dict[str, float]) -> str:
    return f"{spread['min']:,.0f} / {spread['median']:,.0f} / {spread['max']:,.0f}"


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    """The human-readable comparison."""
    head = ("system", "verified", "events/s min/med/max", "events/CPU-s min/med/max",
            "peak RSS", f"x {BASELINE} ev/s", f"x {BASELINE} ev/CPU-s")  # fmt: skip
    rows: list[tuple[str, ...]] = [head]
    for system, s in summary.items():
        failed = s["verified"] < s["runs"]
        ratios = [s[f"{f}_vs_{BASELINE}"] for f in ("events_per_s", "events_per_cpu_s")]
        rows.append((
            system,
            f"{'FAILED ' if failed else 'ok '}{s['verified']}/{s['runs']}",
            _cell(s["events_per_s"]) if s["verified"] else "FAILED",
            _cell(s["events_per_cpu_s"]) if s["verified"] else "FAILED",
            f"{s['peak_rss_mib']:,.0f} MiB" if s["verified"] else "-",
            *("-" if r is None else f"{r:.2f}" for r in ratios),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for system, s in summary.items():
        for failure in s["failures"]:
            print(f"{system}: {failure}")


def write_json(path: Path, meta: dict[str, Any], results: Sequence[RunResult]) -> None:
    """Every figure: the options and input, each run, the per-system summary."""
    body = {
        **meta,
        "runs": [r.figures() for r in results],
        "summary": summarise(results),
    }
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
