"""Peer processes: their virtualenvs, starting and stopping them, CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from streams.bench.checkout import checkout

_TICK = os.sysconf("SC_CLK_TCK")


def bench_dir() -> Path:
    """The checkout's deploy/bench: the peer programs, their requirements, the unit of work."""
    return checkout() / "deploy" / "bench"


def venv_root() -> Path:
    """`${REWARDS_CACHE_DIR:-~/.cache/rewards}/peers`."""
    return Path(os.environ.get("REWARDS_CACHE_DIR", "~/.cache/rewards")).expanduser() / "peers"


def venv_dir(name: str, requirements: Path) -> Path:
    """Where the venv for `requirements` lives: a new file content, a new venv."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    return venv_root() / f"{name}-{digest}"


def ensure_venv(name: str, requirements: Path) -> Path:
    """The venv's python, creating the venv first if needed (pip from PyPI; a lock so that
    two runs do not build it at once; a marker file once pip succeeded)."""
    target = venv_dir(name, requirements)
    python = target / "bin" / "python"
    ready = target / ".installed"
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return python
        shutil.rmtree(target, ignore_errors=True)  # a half-built one from an interrupted run
        base = getattr(sys, "_base_executable", sys.executable)
        print(f"[peers] creating {target} (pip install -r {requirements.name})", flush=True)
        subprocess.run([base, "-m", "venv", str(target)], check=True)  # noqa: S603 - ours
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "-r", str(requirements)], check=True)  # noqa: S603
        ready.write_text(requirements.read_text())
    return python


@dataclass(frozen=True)
class Peer:
    """A peer program in deploy/bench, its pinned requirements (None: the main venv) and where
    its durable input position is read (`group`: committed offsets; `bytewax`: recovery store)."""

    name: str
    script: Path
    requirements: Path | None
    durable: Literal["group", "bytewax"] = "group"
    pins: str = ""
    """The name its requirements file and venv go by (default: its own)."""


PEERS: dict[str, Literal["group", "bytewax"]] = {
    "quix": "group",
    "quix_eos": "group",
    "bytewax": "bytewax",
    "faust": "group",
    "lean": "group",
}
"""The peers in deploy/bench and where each keeps its durable input position."""
SHARED_PINS = {"quix_eos": "quix"}
"""Peers that run from another peer's requirements (and venv)."""


def checkout_peers() -> dict[str, Peer]:
    """The peers of deploy/bench: `peer_<name>.py` with `requirements-<name>.txt`."""
    here = bench_dir()
    out = {}
    for name, durable in PEERS.items():
        pins = SHARED_PINS.get(name, name)
        requirements = here / f"requirements-{pins}.txt"
        out[name] = Peer(name, here / f"peer_{name}.py", requirements, durable, pins)
    return out


IMPORTS = {
    "quix": "quixstreams",
    "bytewax": "bytewax",
    "faust": "faust",
    "lean": "confluent_kafka",
}
"""What a peer's program imports: `--venv main` uses this interpreter only where it has it."""


def python_for(peer: Peer, venv: str) -> Path:
    """The interpreter a peer runs with: its pinned venv, or with `venv == "main"` this one when
    it can import the peer's package (else the pinned venv, and a line says so)."""
    if peer.requirements is None:
        return Path(sys.executable)
    if venv == "main":
        if importlib.util.find_spec(IMPORTS.get(peer.pins or peer.name, peer.name)) is not None:
            return Path(sys.executable)
        print(f"[peers] {peer.name}: not installed in this interpreter, run from its pinned venv",
              flush=True)  # fmt: skip
    return ensure_venv(peer.pins or peer.name, peer.requirements)


def peer_env() -> dict[str, str]:
    """The environment of a peer: the checkout (processors, schemas, streams.points_records) and
    deploy/bench (ledger_work, peer programs) on PYTHONPATH, nothing of the main venv's."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONHOME"}}
    env["PYTHONPATH"] = os.pathsep.join((str(checkout()), str(bench_dir())))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class PeerProcess:
    """One peer program in a child process, its output in a log file."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PeerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own programs, no shell
                self.argv, env=peer_env(), cwd=checkout(), stdout=log, stderr=log
            )
        return self

    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL; children that outlive it are killed too."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = tree_pids(self.proc.pid)[1:]
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces): field 3 onwards."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def tree_pids(root: int) -> list[int]:
    """`root` and its live descendants (parent links from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(root: int | None) -> float:
    """User + system CPU of a process tree: every thread of every live process (utime, stime)
    and the children they reaped (cutime, cstime)."""
    if root is None:
        return 0.0
    ticks = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))  # stat fields 14-17
    return ticks / _TICK


def peak_rss_bytes(root: int | None) -> int:
    """Sum of VmHWM (peak resident set) over the live process tree."""
    if root is None:
        return 0
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total
