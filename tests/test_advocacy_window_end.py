"""Event-time windows: every worker's windows end at one agreed time (real Redis), so the sums
over workers add windows with the same end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from processors.account import Account
from processors.advocacy import AdvocacyPolicy
from streams.adapters.redis_client import connect
from streams.adapters.window_end import SharedWindowEnd
from streams.advocacy import AdvocacyWindows
from tests.test_advocacy_event_clock import WALL, answered

EVENT = AdvocacyPolicy(event_clock=True)


def promoters(windows: AdvocacyWindows, window: str) -> int:
    end = windows.window_end(WALL)
    return windows.counts(end).get((("nps", "email", "promoter"), window), 0)


async def agree(url: str, app_id: str, workers: list[AdvocacyWindows]) -> None:
    redis = connect(url, cluster=False)
    try:
        for windows in workers:  # each worker's timer, in turn, twice (as rounds go by)
            windows.shared_end = await SharedWindowEnd(redis, app_id).agree(windows.newest_fact())
        for windows in workers:
            windows.shared_end = await SharedWindowEnd(redis, app_id).agree(windows.newest_fact())
    finally:
        await redis.aclose()


@pytest.mark.integration
@pytest.mark.redis
def test_workers_agree_on_one_window_end_and_their_sums_are_exact(services):
    behind, ahead, alone = (AdvocacyWindows(EVENT) for _ in range(3))
    behind.track(0, Account("a"), answered("a", 95, 100, 124))  # a backfill still 95 days back
    ahead.track(1, Account("b"), answered("b", 90, 91))  # another worker at 90 days back
    for customer, days in (("a", (95, 100, 124)), ("b", (90, 91))):
        alone.track(0, Account(customer), answered(customer, *days))
    before = promoters(behind, "30d") + promoters(ahead, "30d")
    assert before == 5  # each worker's own end: 124 counts in `behind`'s window, not in one
    asyncio.run(agree(services.redis_url, f"test-{uuid.uuid4().hex[:8]}", [behind, ahead]))
    assert behind.window_end(WALL) == ahead.window_end(WALL) == WALL - timedelta(days=90)
    for window in ("1d", "7d", "30d"):
        summed = promoters(behind, window) + promoters(ahead, window)
        assert summed == promoters(alone, window), window  # as if one worker held everything
    assert promoters(behind, "30d") + promoters(ahead, "30d") == 4  # 124 days back is outside


@pytest.mark.integration
@pytest.mark.redis
def test_the_agreed_end_only_moves_forward(services):
    app_id = f"test-{uuid.uuid4().hex[:8]}"
    newer, older = AdvocacyWindows(EVENT), AdvocacyWindows(EVENT)
    newer.track(0, Account("a"), answered("a", 10))
    older.track(1, Account("b"), answered("b", 40))
    asyncio.run(agree(services.redis_url, app_id, [newer]))
    asyncio.run(agree(services.redis_url, app_id, [older]))
    assert older.window_end(WALL) == WALL - timedelta(days=10)
    empty = AdvocacyWindows(EVENT)
    asyncio.run(agree(services.redis_url, app_id, [empty]))
    assert empty.window_end(WALL) == WALL - timedelta(days=10)


@pytest.mark.integration
@pytest.mark.redis
def test_the_agreed_end_is_the_offered_time_to_the_microsecond(services):
    """Not Lua's 14-digit `tostring` of it (1791408447.533985 came back as ...447.534)."""

    async def offer() -> tuple[float | None, float | None, float | None]:
        redis = connect(services.redis_url, cluster=False)
        try:
            shared = SharedWindowEnd(redis, f"test-{uuid.uuid4().hex[:8]}")
            none = await shared.agree(None)
            first = await shared.agree(1791408447.533985)
            again = await shared.agree(1791408447.1)
            return none, first, again
        finally:
            await redis.aclose()

    assert asyncio.run(offer()) == (None, 1791408447.533985, 1791408447.533985)
