"""The gift-card provider sandbox in a subprocess (tests, bench), driven with the stdlib only."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from streams.bench.worker_process import free_port


class SandboxProcess:
    """`python -m streams.cli.giftcard_sandbox` on 127.0.0.1 with its own API key.

    Use as a context manager or call `start()` / `stop()`; `faults()`, `reset()` and `orders()`
    drive the sandbox's control endpoints synchronously.
    """

    def __init__(
        self, api_key: str | None = None, port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.api_key = api_key or f"sk_test_{secrets.token_hex(16)}"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix="giftcard-sandbox-", suffix=".log")[1]
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"SandboxProcess(url={self.url!r}, api_key='***')"

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, ready_timeout_s: float = 30.0) -> SandboxProcess:
        """Start the sandbox and wait until `/healthz` answers."""
        env = {**os.environ, "REWARDS_GIFT_CARD_API_KEY": self.api_key}
        argv = [sys.executable, "-m", "streams.cli.giftcard_sandbox", "--host", "127.0.0.1",
                "--port", str(self.port)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own module, no shell
                argv, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError):  # not listening yet
                if self._call("GET", "/healthz", timeout_s=1.0).get("ok"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"sandbox not ready after {ready_timeout_s}s: {self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the sandbox (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Replace the fault settings (fail_next, delay_s, hold_after_create_s, pending_polls)."""
        return self._call("POST", "/sandbox/faults", settings)

    def reset(self) -> None:
        """Forget orders, idempotency keys, request counters and faults."""
        self._call("POST", "/sandbox/reset", {})

    def orders(self) -> dict[str, Any]:
        """The `/sandbox/orders` body: orders, created, requests, idempotency_keys."""
        return self._call("GET", "/sandbox/orders")

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the sandbox's log."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """One JSON request to the sandbox; an HTTP error raises with the sandbox's answer."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - ours
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from exc
