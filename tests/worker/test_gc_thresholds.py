"""The worker's garbage collector: young collections far apart, full ones rarer still."""

from __future__ import annotations

import gc

from streams.runtime import GC_THRESHOLDS, tune_gc


def test_the_worker_collects_every_fifty_thousand_allocations_not_seven_hundred() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        survivors = [[i] for i in range(10_000)]  # fewer allocations than one young collection
        counts = gc.get_count()
        assert counts[0] >= len(survivors) // 2  # not collected after 700 as by default
    finally:
        gc.set_threshold(*before)
