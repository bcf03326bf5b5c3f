"""`rewards bench` and `rewards chaos`: their options here, their harnesses in a checkout only.

The harnesses (`streams.bench`, `streams.chaos`) are not in the wheel: they drive `deploy/` and
build peer virtualenvs. From an installed package these commands say so in one line (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.settings import Settings


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Benchmark the worker against a raw-consumer baseline in one run."""
    try:
        if args.peers:  # peer systems and this worker side by side (deploy/bench/README.md)
            from streams.bench.peers import main as peer_bench

            return peer_bench(settings, args)
        from streams.bench.run import BenchOptions, run_bench
    except ModuleNotFoundError as exc:
        return _not_installed("bench", exc)
    options = BenchOptions(
        events=args.events,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        json_path=Path(args.json) if args.json else None,
        workload=args.workload,
        customers=args.customers,
    )
    return run_bench(settings, options)


def cmd_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """Soak two workers under kills and broker and Redis outages; PASS/FAIL by an oracle."""
    try:
        from streams.chaos.soak import main as chaos_main
    except ModuleNotFoundError as exc:
        return _not_installed("chaos", exc)
    return chaos_main(settings, args)


def _not_installed(command: str, exc: ModuleNotFoundError) -> int:
    """One line on stderr when a harness is not importable (an installed wheel); exit 2."""
    if not (exc.name or "").startswith(("streams.bench", "streams.chaos")):
        raise exc
    print(
        f"rewards {command}: a development harness, not in the installed package; run it from "
        "a checkout (pip install -e .)",
        file=sys.stderr,
    )
    return 2


def add_harness_commands(sub: Any) -> None:
    """Register `bench` and `chaos`."""
    bench_arguments(sub.add_parser("bench", help=cmd_bench.__doc__)).set_defaults(run=cmd_bench)
    chaos_arguments(sub.add_parser("chaos", help=cmd_chaos.__doc__)).set_defaults(run=cmd_chaos)


def bench_arguments(bench: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the benchmark's options to its sub-parser."""
    bench.add_argument("--events", type=int, default=200_000)
    bench.add_argument("--latency-rate", type=float, default=5000.0)
    bench.add_argument("--latency-seconds", type=float, default=20.0)
    bench.add_argument("--json", help="also write the results as JSON here")
    bench.add_argument(
        "--workload", choices=("shop", "purchases", "referrals", "complaints", "advocacy"),
        default="shop",
        help="shop: the simulator's mix of all topics; purchases: the points ledger only; "
        "referrals: sign-ups, conversions and referrers' purchases; complaints: each one a "
        "gift card through the provider sandbox (latency: complaint to rewards-issued); "
        "advocacy: purchases, survey answers and invitations of --customers customers",
    )  # fmt: skip
    bench.add_argument("--customers", type=int, default=10_000, help="not for the shop workload")
    bench.add_argument("--peers", action="store_true", help="compare with peer systems instead")
    bench.add_argument("--systems", default="quix,bytewax,faust,lean,worker", help="with --peers")
    bench.add_argument(
        "--repeat", type=int, default=5, help="with --peers: interleaved rounds (5 or more)"
    )
    bench.add_argument(
        "--venv", choices=("peers", "main"), default="peers",
        help="with --peers: each peer's pinned venv, or this interpreter where it has the peer's "
        "packages (a peer it lacks still runs from its pinned venv)",
    )  # fmt: skip
    return bench


def chaos_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the soak's options to its sub-parser."""
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s")
    parser.add_argument("--kill-every", default="15-20", help="s between worker kills; 0: none")
    parser.add_argument("--broker-outage", default="30-45", help="s the coordinator is down")
    parser.add_argument("--broker-kills", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--redis-outage", default="20-30", help="s Redis is down; 0: none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the verdict as JSON here")
    parser.add_argument("--work-dir", help="workers' data and logs (default: a new temp dir)")
    return parser
