"""Event-time advocacy windows (`REWARDS_ADVOCACY_CLOCK=event`): where they end, what is pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.account import Account
from processors.advocacy import AdvocacyPolicy, prune_advocacy
from processors.advocacy_state import AdvocacyState, InviteFact, SurveyFact
from streams.advocacy import AdvocacyCollector, AdvocacyWindows

WALL = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EVENT = AdvocacyPolicy(event_clock=True)


def answered(customer: str, *days_ago: float) -> Account:
    """An account with promoter answers `days_ago` before the wall clock."""
    surveys = tuple(
        SurveyFact(f"{customer}-{n}", WALL - timedelta(days=d), 10, "email")
        for n, d in enumerate(days_ago)
    )
    return Account(customer, advocacy=AdvocacyState(surveys=surveys))


def promoters(windows: AdvocacyWindows, end: datetime, window: str) -> int:
    return windows.counts(end).get((("nps", "email", "promoter"), window), 0)


def test_event_windows_end_at_the_newest_fact_and_count_backfilled_history():
    windows = AdvocacyWindows(EVENT)
    windows.track(0, Account("a"), answered("a", 60, 70, 100))
    windows.track(1, Account("b"), answered("b", 62))
    end = windows.window_end(WALL)
    assert end == WALL - timedelta(days=60)
    assert promoters(windows, end, "30d") == 3  # 60, 62 and 70 days ago; 100 is outside
    assert promoters(windows, end, "7d") == 2
    wall = AdvocacyWindows(AdvocacyPolicy())
    wall.track(0, Account("a"), answered("a", 60, 70, 100))
    assert wall.window_end(WALL) == WALL
    assert promoters(wall, WALL, "30d") == 0


def test_event_window_end_falls_back_to_and_never_passes_the_wall_clock():
    windows = AdvocacyWindows(EVENT)
    assert windows.window_end(WALL) == WALL
    windows.track(0, Account("a"), answered("a", -3))  # dated in the future
    assert windows.window_end(WALL) == WALL


def test_event_clock_prunes_relative_to_the_accounts_newest_fact_not_the_stream_time():
    account = answered("a", 60, 70, 100)
    account = Account(
        "a", advocacy=AdvocacyState(account.advocacy.surveys, (InviteFact("i", WALL),))
    )
    kept = prune_advocacy(account, WALL, EVENT)
    assert (
        kept.advocacy.surveys == () and len(kept.advocacy.invites) == 1
    )  # the invitation is today
    old = answered("b", 60, 70, 100)
    assert [s.event_id for s in prune_advocacy(old, WALL, EVENT).advocacy.surveys] == ["b-0", "b-1"]
    assert prune_advocacy(old, WALL, AdvocacyPolicy()).advocacy.surveys == ()
    future = answered("c", 10, -100)  # one answer dated 100 days ahead
    assert len(prune_advocacy(future, WALL, EVENT).advocacy.surveys) == 2


def test_the_collector_exports_where_the_windows_end():
    windows = AdvocacyWindows(EVENT)
    windows.track(0, Account("a"), answered("a", 45))
    families = {f.name: f for f in AdvocacyCollector(windows, lambda: WALL).collect()}
    (sample,) = families["rewards_advocacy_window_end_seconds"].samples
    assert sample.value == (WALL - timedelta(days=45)).timestamp()
    nps = families["rewards_nps_responses"].samples
    labels = {"window": "30d", "channel": "email", "category": "promoter"}
    assert [s.value for s in nps if s.labels == labels] == [1]
