"""The soak's processes: the 3-broker stack and Redis (`deploy/stack.sh`), and the workers."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from redis.cluster import RedisCluster

from streams.adapters.redis_client import connect_sync
from streams.bench.checkout import MARKER, checkout
from streams.bench.worker_process import WorkerProcess, free_port
from streams.settings import Settings
from streams.settings_env import settings_env

READY_TIMEOUT_S = 180.0
STARTED_S = 2.0
"""How long a restart waits before returning (readiness is watched separately)."""


def free_port_range(count: int) -> int:
    """A base port below the ephemeral range with `count` bindable ports from it on (broker i
    of a stack listens on base + 2i and its controller on the next port)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20_000, 30_000 - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + count):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


@dataclass(frozen=True)
class Stack:
    """A `deploy/stack.sh up --brokers 3` stack: where it keeps its pid files, its ports."""

    directory: Path
    kafka_port: int
    redis_port: int
    redis_cluster_port: int | None = None
    """The first node of a Redis Cluster (`stack.sh up --redis-cluster`) instead of redis-server."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Stack:
        """The stack named by REWARDS_STACK_DIR, REWARDS_KAFKA_PORT and REWARDS_REDIS_PORT."""
        missing = [
            name
            for name in ("REWARDS_STACK_DIR", "REWARDS_KAFKA_PORT", "REWARDS_REDIS_PORT")
            if not env.get(name)
        ]
        if missing:
            raise ValueError(
                f"{', '.join(missing)} must name the 3-broker stack to break (deploy/chaos.sh "
                "starts one and sets them)"
            )
        cluster = env.get("REWARDS_REDIS_CLUSTER_PORT") if env.get("REWARDS_CHAOS_REDIS") else None
        return cls(
            Path(env["REWARDS_STACK_DIR"]),
            int(env["REWARDS_KAFKA_PORT"]),
            int(env["REWARDS_REDIS_PORT"]),
            int(cluster) if cluster else None,
        )

    def env(self) -> dict[str, str]:
        """The variables `deploy/stack.sh` reads."""
        found = {
            "REWARDS_STACK_DIR": str(self.directory),
            "REWARDS_KAFKA_PORT": str(self.kafka_port),
            "REWARDS_REDIS_PORT": str(self.redis_port),
        }
        if self.redis_cluster_port:
            found["REWARDS_REDIS_CLUSTER_PORT"] = str(self.redis_cluster_port)
        return found

    @property
    def bootstrap(self) -> str:
        """All three brokers (broker i listens on the first port + 2i)."""
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(3))

    @property
    def redis_url(self) -> str:
        """The stack's Redis (or Redis Cluster)."""
        if self.redis_cluster_port:
            ports = range(self.redis_cluster_port, self.redis_cluster_port + 6)
            return f"redis+cluster://{','.join(f'127.0.0.1:{p}' for p in ports)}/0"
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def run(self, *args: str) -> str:
        """Run the checkout's `deploy/stack.sh` with this stack's environment; its stdout."""
        done = subprocess.run(  # noqa: S603 - our own script
            ["bash", str(checkout() / MARKER), *args],  # noqa: S607
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def up(self) -> None:
        """Start whatever of the stack is not running (and wait for every broker)."""
        self.run("up", "--brokers", "3", *(["--redis-cluster"] if self.redis_cluster_port else []))

    def _pid(self, name: str) -> int | None:
        path = self.directory / name / "pid"
        with contextlib.suppress(OSError, ValueError):
            return int(path.read_text().strip())
        return None

    def kill_broker(self, node: int) -> None:
        """SIGKILL broker `node` (1..3)."""
        pid = self._pid(f"kafka-{node}")
        if pid is None:
            raise RuntimeError(f"no pid file for kafka node {node} in {self.directory}")
        os.kill(pid, signal.SIGKILL)

    def kill_redis_primary(self) -> int:
        """SIGKILL the Redis Cluster primary with the lowest port (its replica must take over);
        its port. `up` starts it again, and it rejoins as a replica."""
        with connect_sync(self.redis_url, socket_timeout=2) as client:
            assert isinstance(client, RedisCluster)
            primary = min(int(node.port) for node in client.get_primaries())  # type: ignore[no-untyped-call]
        pid = self._pid(f"redis-cluster/{primary}")
        if pid is None:
            raise RuntimeError(f"no pid file for redis node {primary} in {self.directory}")
        os.kill(pid, signal.SIGKILL)
        return primary

    def stop_redis(self, timeout_s: float = 30.0) -> None:
        """Stop redis-server (SIGTERM: it writes its append-only file and exits)."""
        pid = self._pid("redis")
        if pid is None:
            raise RuntimeError(f"no redis pid file in {self.directory}")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our worker
            return str(response.read().decode())
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace')}"
    except OSError as exc:
        return f"unreachable: {exc}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class Crash:
    """A worker that exited without being killed, or could not be started again."""

    worker: str
    at: float
    what: str
    log_tail: str


@dataclass
class _Slot:
    name: str
    process: WorkerProcess
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """The soak's workers (one consumer group), each with its own data dir, web port and log;
    a supervisor restarts one that exits by itself and records it as a crash."""

    def __init__(self, settings: Settings, work_dir: Path, count: int = 2) -> None:
        self.slots: list[_Slot] = []
        self.work_dir = work_dir
        for i in range(count):
            worker = settings.model_copy(
                update={"data_dir": work_dir / f"worker-{i}", "web_port": free_port()}
            )
            process = WorkerProcess(
                settings_env(worker), worker.web_port, work_dir / f"worker-{i}.log"
            )
            self.slots.append(_Slot(f"worker-{i}", process))
        self.crashes: list[Crash] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="supervisor", daemon=True)

    @property
    def ports(self) -> list[int]:
        """The workers' web ports."""
        return [slot.process.web_port for slot in self.slots]

    def start(self) -> None:
        """Start every worker (waiting until each is ready), then supervise them."""
        for slot in self.slots:
            slot.process.start(READY_TIMEOUT_S)
        self._thread.start()

    def kill_and_restart(self, index: int) -> float:
        """SIGKILL a worker and start it again (not waiting until it is ready): when."""
        slot = self.slots[index]
        with slot.lock:
            slot.process.kill()
            restarted = time.time()
            self._start(slot)
            return restarted

    def wait_ready(self, index: int, timeout_s: float = READY_TIMEOUT_S) -> float | None:
        """When the worker is ready again (its state recovered after an assignment), or None
        if it is not within `timeout_s`; a worker that is not is recorded as such."""
        slot, deadline = self.slots[index], time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if slot.process.ready():
                return time.time()
            time.sleep(0.25)
        if not self._stop.is_set():
            self._record(slot, f"not ready {timeout_s:.0f}s after its restart")
        return None

    def _start(self, slot: _Slot) -> None:
        """Start a worker process (a few attempts if it exits at once; each one recorded)."""
        for _ in range(5):
            try:
                slot.process.start(STARTED_S)
                return
            except TimeoutError:
                return  # running; readiness is watched by `wait_ready`
            except RuntimeError as exc:
                self._record(slot, f"exited while starting: {exc}")
                time.sleep(2.0)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for slot in self.slots:
                if not slot.lock.acquire(blocking=False):
                    continue
                try:
                    proc = slot.process.proc
                    if proc is not None and proc.poll() is not None and not self._stop.is_set():
                        self._record(slot, f"exited by itself with code {proc.returncode}")
                        self._start(slot)
                finally:
                    slot.lock.release()

    def _record(self, slot: _Slot, what: str) -> None:
        tail = slot.process.log_path.read_text(errors="replace")[-3000:]
        self.crashes.append(Crash(slot.name, time.time(), what, tail))

    def capture(self) -> Path:
        """Evidence of a stall: each worker's /metrics, /live, /ready and (with py-spy) its
        threads' stacks, in `<work dir>/evidence`."""
        directory = self.work_dir / "evidence"
        directory.mkdir(parents=True, exist_ok=True)
        spy = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        for slot in self.slots:
            base = f"http://127.0.0.1:{slot.process.web_port}"
            for page in ("metrics", "live", "ready"):
                (directory / f"{slot.name}.{page}.txt").write_text(_fetch(f"{base}/{page}"))
            proc = slot.process.proc
            if spy and proc is not None and proc.poll() is None:
                dump = subprocess.run(  # noqa: S603 - py-spy on our own child
                    [spy, "dump", "--pid", str(proc.pid)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                (directory / f"{slot.name}.py-spy.txt").write_text(dump.stdout + dump.stderr)
        return directory

    def stop(self) -> None:
        """Stop supervising, then stop every worker (SIGTERM, SIGKILL if it hangs)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for slot in self.slots:
            with slot.lock:
                slot.process.stop()
