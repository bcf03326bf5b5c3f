"""The checkout the harnesses run from: `REWARDS_CHECKOUT`, else the current directory upwards.

The chaos soak drives `deploy/stack.sh` and the peer benchmark runs `deploy/bench/`; neither is
in the installed package (nor is this package: the wheel has the worker and `streams.cli` only).
"""

from __future__ import annotations

import os
from pathlib import Path

MARKER = Path("deploy") / "stack.sh"
"""What makes a directory a checkout of this repository."""


class NoCheckout(RuntimeError):
    """Neither `REWARDS_CHECKOUT` nor the current directory or a parent is a checkout."""


def checkout(env: dict[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The checkout's root: `REWARDS_CHECKOUT` if set (it must be one), else the nearest of the
    current directory and its parents that holds `deploy/stack.sh`."""
    named = (os.environ if env is None else env).get("REWARDS_CHECKOUT")
    if named:
        root = Path(named).expanduser().resolve()
        if not (root / MARKER).is_file():
            raise NoCheckout(f"REWARDS_CHECKOUT={named} is not a checkout: no {MARKER} in it")
        return root
    here = (cwd or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / MARKER).is_file():
            return candidate
    raise NoCheckout(
        f"no checkout of rewards-streams at or above {here} (no {MARKER}): run from inside one "
        "or set REWARDS_CHECKOUT"
    )
