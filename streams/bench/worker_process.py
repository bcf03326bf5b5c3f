"""Run a worker as a child process and read its Prometheus metrics (tests, bench, chaos soak)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from streams.cli.worker_metrics import MetricsEndpoint


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess(MetricsEndpoint):
    """`rewards worker` in a subprocess with the given environment."""

    def __init__(
        self,
        env: Mapping[str, str],
        web_port: int,
        log_path: Path,
        module: str = "streams.cli",
    ) -> None:
        super().__init__(web_port)
        self.env = {**os.environ, **env, "REWARDS_WEB_PORT": str(web_port)}
        self.web_port = web_port
        self.log_path = log_path
        self.module = module
        """The module run as `python -m <module> worker` (tests may wrap the CLI)."""
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout_s: float = 90.0) -> WorkerProcess:
        """Start the worker and wait until its metrics endpoint answers and agents are assigned."""
        with self.log_path.open("ab") as log:  # the worker keeps its own copy of the descriptor
            self.proc = subprocess.Popen(  # noqa: S603 - our own module, our own arguments
                [sys.executable, "-m", self.module, "worker"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited with {self.proc.returncode}; see {self.log_path}; it ends:\n"
                    + self.log_tail()
                )
            if self.ready():
                return self
            time.sleep(0.25)
        raise TimeoutError(
            f"worker not ready after {ready_timeout_s}s; see {self.log_path}; it ends:\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the worker's log, librdkafka's own lines left out."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join([line for line in text if not line.startswith("%")][-lines:])

    def ready(self) -> bool:
        """True once the worker serves metrics and has recovered its tables after an assignment."""
        try:
            return self.total("rewards_points_recoveries_total") >= 1
        except OSError:
            return False

    def peak_rss_bytes(self) -> int:
        """Peak resident set size (VmHWM) of the worker process, Linux only."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """Crash the worker (SIGKILL): no commit, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
