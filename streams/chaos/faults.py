"""The soak's faults while it publishes: worker kills, a broker outage or two, a Redis outage."""

from __future__ import annotations

import logging
import random
import subprocess
import threading
import time
from dataclasses import dataclass

from streams.chaos.read import group_coordinator
from streams.chaos.stack import Fleet, Stack

log = logging.getLogger(__name__)
Range = tuple[float, float]


@dataclass(frozen=True)
class FaultPlan:
    """What to break and for how long (seconds; a range is drawn from uniformly; None: never).

    Worker kills run on their own clock; the outages run one after the other (Redis first, then
    the broker(s)), the first after `first_outage_share` of the publishing time, so that no two
    outages overlap and `deploy/stack.sh up` can bring each one back."""

    kill_every: Range | None = (15.0, 20.0)
    broker_outage: Range | None = (30.0, 45.0)
    broker_kills: int = 1
    redis_outage: Range | None = (20.0, 30.0)
    first_outage_share: float = 0.15
    gap_s: float = 5.0


@dataclass
class Fault:
    """One fault: what, which, when it began, when the target was restarted and ready again."""

    kind: str
    target: str
    started: float
    restarted: float | None = None
    ready: float | None = None
    note: str = ""


class FaultDriver:
    """Runs the plan in two threads until `finish` (no new fault starts after it)."""

    def __init__(  # noqa: PLR0917 - what the faults act on
        self, plan: FaultPlan, stack: Stack, fleet: Fleet, group: str, seed: int, duration_s: float
    ) -> None:
        self._plan, self._stack, self._fleet, self._group = plan, stack, fleet, group
        self._rng = random.Random(seed)
        self._duration_s = duration_s
        self._done = threading.Event()
        self.faults: list[Fault] = []
        self._threads = [
            threading.Thread(target=self._kills, name="chaos-kills", daemon=True),
            threading.Thread(target=self._outages, name="chaos-outages", daemon=True),
        ]

    def start(self) -> None:
        """Begin the plan (its clock starts now)."""
        for thread in self._threads:
            thread.start()

    def finish(self, timeout_s: float = 300.0) -> None:
        """Start no new fault; wait until those under way are over (targets restarted; a
        restarted worker's readiness goes on being watched)."""
        self._done.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def _draw(self, span: Range) -> float:
        return self._rng.uniform(*span)

    def _kills(self) -> None:
        span = self._plan.kill_every
        if span is None:
            return
        next_at = time.monotonic() + self._draw(span)
        while not self._done.wait(max(0.0, next_at - time.monotonic())):
            index = self._rng.randrange(len(self._fleet.slots))
            fault = Fault("worker_kill", self._fleet.slots[index].name, time.time())
            self.faults.append(fault)
            log.info("chaos: SIGKILL %s", fault.target)
            fault.restarted = self._fleet.kill_and_restart(index)
            threading.Thread(target=self._ready, args=(index, fault), daemon=True).start()
            next_at = max(time.monotonic() + 3.0, next_at + self._draw(span))

    def _ready(self, index: int, fault: Fault) -> None:
        fault.ready = self._fleet.wait_ready(index)
        if fault.ready is None:
            fault.note = "not ready again in time"

    def _outages(self) -> None:
        plan = self._plan
        kinds = ["redis"] if plan.redis_outage else []
        kinds += ["broker"] * (plan.broker_kills if plan.broker_outage else 0)
        if not kinds or self._done.wait(plan.first_outage_share * self._duration_s):
            return
        for kind in kinds:
            if kind == "redis":
                self._redis_outage()
            else:
                self._broker_outage()
            if self._done.wait(plan.gap_s):
                return

    def _broker_outage(self) -> None:
        assert self._plan.broker_outage is not None
        node = self._coordinator()
        fault = Fault("broker_outage", f"kafka-{node}", time.time(), note="group coordinator")
        self.faults.append(fault)
        log.info("chaos: SIGKILL kafka node %d (coordinator of %s)", node, self._group)
        self._stack.kill_broker(node)
        time.sleep(self._draw(self._plan.broker_outage))
        self._restart(fault)

    def _coordinator(self) -> int:
        for _ in range(10):
            try:
                return group_coordinator(self._stack.bootstrap, self._group)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                log.warning("chaos: no coordinator yet (%s)", exc)
                time.sleep(1.0)
        return 1

    def _redis_outage(self) -> None:
        assert self._plan.redis_outage is not None
        if self._stack.redis_cluster_port:
            port = self._stack.kill_redis_primary()
            fault = Fault("redis_outage", f"redis-{port}", time.time(), note="primary killed")
            log.info("chaos: SIGKILL the Redis Cluster primary on port %d", port)
        else:
            fault = Fault("redis_outage", "redis", time.time())
            log.info("chaos: stopping redis-server")
            self._stack.stop_redis()
        self.faults.append(fault)
        time.sleep(self._draw(self._plan.redis_outage))
        self._restart(fault)

    def _restart(self, fault: Fault) -> None:
        fault.restarted = time.time()
        try:
            self._stack.up()
            fault.ready = time.time()
        except RuntimeError as exc:
            fault.note = f"restart failed: {exc}"
        log.info("chaos: %s back after %.1fs", fault.target, time.time() - fault.started)
