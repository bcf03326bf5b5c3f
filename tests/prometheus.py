"""A real Prometheus server for tests: scrapes given targets every second, evaluates rule files."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from streams.bench.worker_process import free_port
from tests.support import unavailable


class PrometheusProcess:
    """A real `prometheus` server on 127.0.0.1 for tests, scraping the given targets every second.

    Usage::

        with PrometheusProcess(["127.0.0.1:6066"], tmp_path, rule_files=[rules]) as prom:
            prom.wait_for("rewards:nps:score")

    or `prom = PrometheusProcess(...).start()` ... `prom.stop()`. The config, the TSDB and the
    log (prometheus.log) live in `tmp_path`. Without the binary: a failure in CI, else a skip.
    """

    def __init__(
        self, targets: list[str], tmp_path: Path, rule_files: list[Path] | None = None
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            unavailable("prometheus is not installed (apt-get install prometheus)")
        self.binary = str(binary)
        self.targets = list(targets)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files or []]
        self.dir = tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp_path / "prometheus.yml"
        self.log_path = tmp_path / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> Path:
        """Write the config file (JSON is YAML) and return its path."""
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {
                    "job_name": "rewards-worker",
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        self.config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return self.config_path

    def start(self, ready_timeout_s: float = 30.0) -> PrometheusProcess:
        """Start the server and wait until /-/ready answers 200."""
        command = [
            self.binary,
            f"--config.file={self.write_config()}",
            f"--storage.tsdb.path={self.dir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log()}")
            if self.ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {ready_timeout_s}s: {self.log()}")

    def ready(self) -> bool:
        """True once /-/ready answers 200."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def log(self, tail: int = 4000) -> str:
        """The end of the server's log."""
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10s); safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The `result` of /api/v1/query (a vector); raises RuntimeError on an error answer."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422/503 carry a JSON error
            try:
                body = json.loads(exc.read())
            except ValueError:
                raise RuntimeError(f"query {expr!r} failed: HTTP {exc.code}") from exc
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body.get('error', body)}")
        data = body["data"]
        if data["resultType"] != "vector":
            raise RuntimeError(f"query {expr!r} returned a {data['resultType']}, not a vector")
        return list(data["result"])

    def recorded(self) -> list[str]:
        """The series the rule files record (`record:` names), in file order."""
        return [
            rule["record"]
            for path in self.rule_files
            for group in yaml.safe_load(Path(path).read_text(encoding="utf-8"))["groups"]
            for rule in group["rules"]
            if "record" in rule
        ]

    def wait_for(self, expr: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Query until the result is non-empty and return it; TimeoutError after `timeout_s`.

        Non-empty is not final: a series is there from its first scrape or rule evaluation on,
        and one recorded series says nothing of the others (each rule's samples are committed
        on their own). Wait for the value an assertion reads, or for every series it reads with
        inputs that no longer change."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr!r} still empty after {timeout_s}s: {self.log()}")
            time.sleep(0.25)

    def __enter__(self) -> PrometheusProcess:
        """Start the server unless already running."""
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()
