"""`rewards worker` with a fault planted in the rules, for the tests of poison-record handling.

`python -m tests.poisoned_worker worker` runs the real CLI after wrapping `settle` as the hot path
calls it: settling an event whose id starts with `REWARDS_TEST_POISON` (default `poison-`) raises,
as a bug in the rules would for that record alone; with `REWARDS_TEST_POISON_ALL=1` every
settlement raises, as a broken dependency would.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import processors.settlement
import streams.account_settler
import streams.release_sweep
from streams.cli.main import main

PREFIX = os.environ.get("REWARDS_TEST_POISON", "poison-")
EVERYTHING = os.environ.get("REWARDS_TEST_POISON_ALL") == "1"
_settle, _start = processors.settlement.settle, processors.settlement.start


def planted(events: Any) -> None:
    """Raise for planted events, as a bug in the rules would."""
    if EVERYTHING or any(event.event_id.startswith(PREFIX) for event in events):
        raise ZeroDivisionError("planted fault in the rules")


def poisoned_settle(account: Any, events: Any, *args: Any, **kwargs: Any) -> Any:
    """`settle`, raising for planted events."""
    planted(events)
    return _settle(account, events, *args, **kwargs)


def poisoned_start(account: Any, events: Any, *args: Any, **kwargs: Any) -> Any:
    """`start`, raising for planted events."""
    planted(events)
    return _start(account, events, *args, **kwargs)


# The modules call the name they imported from processors.settlement: replace it there.
streams.account_settler.start = poisoned_start  # type: ignore[attr-defined]  # not re-exported
streams.release_sweep.settle = poisoned_settle  # type: ignore[attr-defined]  # not re-exported

if __name__ == "__main__":
    sys.exit(main())
