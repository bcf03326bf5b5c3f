"""`rewards bench --peers`: peer stream processors and this worker side by side on one input.

The purchases workload is published once to a fresh input topic (4 partitions, LogAppendTime,
murmur2 by customer id); the expected ledger is computed offline from that topic with the shared
unit of work (deploy/bench/ledger_work.py). Every system then runs `repeat` times, interleaved,
each run with its own consumer group, output topic and state dir; a run is timed by the rule in
`streams.bench.peer_monitor` and its output verified against the reference before it counts.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from streams.adapters.kafka_io import admin_client, ensure_topics
from streams.bench import peer_data as data
from streams.bench.checkout import NoCheckout
from streams.bench.complaints import with_provider
from streams.bench.housekeeping import purge
from streams.bench.peer_monitor import Progress, Watch, bytewax_progress, group_progress, watch
from streams.bench.peer_procs import PEERS, Peer, PeerProcess, checkout_peers, python_for
from streams.bench.peer_report import RunResult, print_table, summarise, write_json
from streams.bench.run import isolated, purchase_stream
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import WorkerProcess, free_port
from streams.settings import Settings
from streams.settings_env import settings_env

MIN_ROUNDS = 5
"""Fewer interleaved rounds than this give a median too noisy to quote (measured: +-10-40% per run
on a 2-core machine)."""

PARTITIONS = 4
WORKER = "worker"


SYSTEMS = (*PEERS, WORKER)


@dataclass(frozen=True)
class PeerBenchOptions:
    """What to run."""

    systems: tuple[str, ...] = SYSTEMS
    events: int = 50_000
    customers: int = 10_000
    """At least the worker's batch size (1,000) for the worker's ledger to equal the reference:
    it settles a batch's events of one customer together, the reference one record at a time."""
    repeat: int = 5
    json_path: Path | None = None
    venv: Literal["peers", "main"] = "peers"
    """`main`: run the peers with this interpreter (lean and faust need nothing more)."""
    commit_interval_s: float = 1.0
    """Every system's commit / checkpoint / snapshot interval."""
    seed: int = 11
    startup_s: float = 180.0
    stall_s: float = 60.0


@dataclass
class Context:
    """One benchmark run's shared facts."""

    settings: Settings
    options: PeerBenchOptions
    tag: str
    workdir: Path
    input_topic: str = ""
    records: Sequence[data.Record] = ()
    expected: Mapping[str, bytes] | None = None
    sources: frozenset[str] = frozenset()
    worker_base: Settings | None = None
    round: int = 0


def run_peer_bench(
    base: Settings, options: PeerBenchOptions, peers: Mapping[str, Peer] | None = None
) -> list[RunResult]:
    """Build the venvs, publish, compute the reference, run every system `repeat` times
    (order rotated per round), print the table and optionally write the JSON; clean up."""
    known = {**checkout_peers(), **(peers or {})}
    unknown = [s for s in options.systems if s != WORKER and s not in known]
    if unknown or not options.systems:
        raise ValueError(f"unknown systems: {', '.join(unknown)} (known: {', '.join(known)})")
    if WORKER in options.systems and options.customers < base.batch_max:
        print(f"[peers] warning: with fewer customers than the worker's batch ({base.batch_max})"
              " its ledger may differ from the per-record reference", flush=True)  # fmt: skip
    if options.repeat < MIN_ROUNDS:
        print(f"[peers] warning: {options.repeat} round(s): a median of fewer than {MIN_ROUNDS} "
              "interleaved rounds is not a measurement to quote", flush=True)  # fmt: skip
    pythons = {s: python_for(known[s], options.venv) for s in options.systems if s != WORKER}
    tag = f"peers-{uuid.uuid4().hex[:8]}"
    ctx = Context(base, options, tag, Path(tempfile.mkdtemp(prefix=f"rewards-{tag}-")))
    results: list[RunResult] = []
    try:
        with contextlib.ExitStack() as stack:
            if WORKER in options.systems:
                sandbox = stack.enter_context(SandboxProcess(log_path=ctx.workdir / "sandbox.log"))
                ctx.worker_base = with_provider(base, sandbox)
            prepare_input(ctx)
            for rnd in range(options.repeat):
                turn = rnd % len(options.systems)
                for system in (*options.systems[turn:], *options.systems[:turn]):
                    print(f"[peers] round {rnd + 1}/{options.repeat}: {system}", flush=True)
                    ctx.round = rnd
                    run = run_worker if system == WORKER else _peer_runner(known[system], pythons)
                    results.append(run(ctx))
                    print(f"[peers]   {results[-1].line()}", flush=True)
    finally:
        data.cleanup(base, tag)
    report(ctx, results)
    return results


def prepare_input(ctx: Context) -> None:
    """Publish the workload once; read it back with the broker's timestamps; the reference."""
    o = ctx.options
    ctx.input_topic = f"{ctx.tag}-purchases"
    data.create_topic(ctx.settings, ctx.input_topic, PARTITIONS,
                      **{"message.timestamp.type": "LogAppendTime"})  # fmt: skip
    print(f"[peers] publishing {o.events:,} purchases ({o.customers:,} customers) to "
          f"{ctx.input_topic}", flush=True)  # fmt: skip
    data.publish(ctx.settings, ctx.input_topic, purchase_stream(o.events, o.customers, o.seed))
    ctx.records = data.read_all(ctx.settings, ctx.input_topic)
    ctx.expected = data.reference(ctx.records, data.ledger_work().apply)
    ctx.sources = frozenset(data.source_events(ctx.expected.values()))
    print(f"[peers] reference: {len(ctx.expected):,} ledger records", flush=True)


def _peer_runner(peer: Peer, pythons: Mapping[str, Path]) -> Callable[[Context], RunResult]:
    return lambda ctx: run_peer(ctx, peer, pythons[peer.name])


def run_peer(ctx: Context, peer: Peer, python: Path) -> RunResult:
    """One run of a peer program on the shared input topic."""
    name = f"{ctx.tag}-{peer.name}-{ctx.round}"
    output, state = f"{name}-ledger", ctx.workdir / name
    data.create_topic(ctx.settings, output, PARTITIONS)
    argv = [str(python), str(peer.script), "--brokers", ctx.settings.kafka_bootstrap_servers,
            "--input", ctx.input_topic, "--output", output, "--group", name,
            "--state-dir", str(state), "--commit-interval", str(ctx.options.commit_interval_s),
    ]  # fmt: skip
    progress: Progress
    if peer.durable == "bytewax":
        progress = bytewax_progress(state / "recovery", ctx.input_topic)
    else:
        admin = admin_client(ctx.settings.kafka_bootstrap_servers)
        progress = group_progress(admin, name, ctx.input_topic, PARTITIONS)
    proc = PeerProcess(argv, ctx.workdir / f"{name}.log")
    ends = data.end_offsets(ctx.settings, ctx.input_topic)
    alive = lambda: proc.proc is None or proc.proc.poll() is None  # noqa: E731
    w = _watch(ctx, output, ends, progress, proc.pid)
    result = measure(ctx, f"{peer.name}", w, Launch(proc.start, alive, proc.stop))
    shutil.rmtree(state, ignore_errors=True)
    return result


def run_worker(ctx: Context) -> RunResult:
    """One run of this worker (`rewards worker`) on a copy of the input in its own topics."""
    assert ctx.worker_base is not None
    name = f"{ctx.tag}-{WORKER}-{ctx.round}"
    settings = isolated(ctx.worker_base, name, ctx.workdir).model_copy(
        update={"partitions": PARTITIONS, "commit_interval_s": ctx.options.commit_interval_s}
    )
    try:
        ensure_topics(settings)
        source = settings.topic("purchases")
        data.copy(settings, ctx.records, source)
        admin = admin_client(settings.kafka_bootstrap_servers)
        progress = group_progress(admin, settings.app_id, source, PARTITIONS)
        worker = WorkerProcess(settings_env(settings), free_port(), ctx.workdir / f"{name}.log")
        ends = data.end_offsets(settings, source)
        w = _watch(ctx, settings.topic("points-ledger"), ends, progress,
                   lambda: None if worker.proc is None else worker.proc.pid)  # fmt: skip
        alive = lambda: worker.proc is None or worker.proc.poll() is None  # noqa: E731
        return measure(ctx, WORKER, w, Launch(worker.start, alive, worker.stop))
    finally:
        purge(settings)
        shutil.rmtree(settings.data_dir, ignore_errors=True)


def _watch(
    ctx: Context, output: str, ends: Mapping[int, int], progress: Progress,
    pid: Callable[[], int | None],
) -> Watch:  # fmt: skip
    assert ctx.expected is not None
    return Watch(ctx.settings.kafka_bootstrap_servers, output, frozenset(ctx.expected.values()),
                 ends, progress, pid, ctx.options.startup_s, ctx.options.stall_s)  # fmt: skip


@dataclass(frozen=True)
class Launch:
    """How to start a system's process, tell whether it still runs, and stop it."""

    start: Callable[[], object]
    alive: Callable[[], bool]
    stop: Callable[[], None]


def measure(ctx: Context, system: str, w: Watch, launch: Launch) -> RunResult:
    """Watch while the system runs; stop it; verify its whole output topic."""
    thread = threading.Thread(target=watch, args=(w,), name=f"watch-{system}", daemon=True)
    thread.start()
    ended = ""
    try:
        launch.start()
        while thread.is_alive():
            thread.join(0.2)
            if not launch.alive():
                ended = "the process exited"
                break
    except (RuntimeError, TimeoutError, OSError) as exc:
        ended = f"start failed: {exc}"
    finally:
        w.stop.set()
        thread.join(30)
        launch.stop()
    assert ctx.expected is not None
    values = (r.value for r in data.read_all(ctx.settings, w.output))
    verdict = data.verify(dict(ctx.expected), values)
    return _result(ctx, system, w, w.status if w.status == "done" or not ended else ended, verdict)


def _result(ctx: Context, system: str, w: Watch, status: str, verdict: data.Verdict) -> RunResult:
    """The run's figures: only a run that ended by the rule and verified has any."""
    ok = status == "done" and verdict.ok
    counted = len(ctx.sources - data.source_events(w.burst))  # the burst's work was before t0
    return RunResult(
        system=system,
        repetition=ctx.round,
        status=status,
        verification=verdict.describe(),
        ok=ok,
        events=len(ctx.records) * counted / max(len(ctx.sources), 1),
        wall_s=w.t1 - w.t0 if ok else 0.0,
        outputs_s=w.complete - w.t0 if ok else 0.0,
        cpu_s=w.cpu1 - w.cpu0 if ok else 0.0,
        peak_rss_mib=w.rss_bytes / 2**20,
        output_records=verdict.records,
    )


def report(ctx: Context, results: Sequence[RunResult]) -> None:
    """The table, and the JSON when asked for; the logs are kept when a run failed."""
    print_table(summarise(results))
    if ctx.options.json_path:
        meta: dict[str, Any] = {
            "options": asdict(ctx.options) | {"json_path": str(ctx.options.json_path)},
            "input": {
                "topic": ctx.input_topic,
                "events": len(ctx.records),
                "partitions": PARTITIONS,
                "expected_ledger_records": len(ctx.expected or {}),
                "events_with_ledger_records": len(ctx.sources),
            },
        }
        write_json(ctx.options.json_path, meta, results)
    if all(r.ok for r in results):
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    else:
        print(f"[peers] logs kept in {ctx.workdir}")


def main(settings: Settings, args: Any) -> int:
    """`rewards bench --peers ...` (arguments parsed by streams.cli)."""
    options = PeerBenchOptions(
        systems=tuple(s.strip() for s in args.systems.split(",") if s.strip()),
        events=args.events,
        customers=args.customers,
        repeat=args.repeat,
        json_path=Path(args.json) if args.json else None,
        venv=args.venv,
    )
    try:
        results = run_peer_bench(settings, options)
    except NoCheckout as exc:
        print(f"rewards bench: {exc}")
        return 2
    return 0 if all(r.ok for r in results) else 1
