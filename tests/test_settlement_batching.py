"""Settlement does not depend on batch boundaries, and a replayed prefix repeats its outputs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import processors.settlement
from processors.account import Account
from processors.advocacy import follow_up
from processors.compensation import GRANTED
from processors.points import EarnRate, PointsPolicy
from processors.settlement import Event, Policies, Settlement, settle
from schemas.models import Complaint, Purchase, SurveyResponse

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
POLICIES = Policies(
    PointsPolicy(rates={"EUR": EarnRate(1, 100), "USD": EarnRate(2, 100)}, hold=14 * DAY)
)

op = st.one_of(
    st.tuples(st.just("purchase"), st.integers(0, 3), st.integers(0, 30_000),
              st.sampled_from(["EUR", "EUR", "USD", "JPY"]), st.sampled_from([0, 1, 20]),
              st.sampled_from([0, 0, 30, 400])),
    st.tuples(st.just("refund"), st.integers(0, 3), st.integers(0, 30_000),
              st.sampled_from(["EUR", "EUR", "USD"])),
    st.tuples(st.just("complaint"), st.sampled_from(["low", "medium", "high", "critical"]),
              st.integers(0, 2)),
    st.tuples(st.just("survey"), st.integers(0, 10)),
)  # fmt: skip
# Each step: hours the stream's clock moves on (never back), then the operation.
steps_st = st.lists(st.tuples(st.integers(0, 24 * 8), op), min_size=1, max_size=24)


def events_of(steps: list[Any]) -> tuple[list[Event], list[datetime]]:
    """Concrete events and the stream time each is processed at."""
    events: list[Event] = []
    times: list[datetime] = []
    now = T0
    for n, (hours, (kind, *args)) in enumerate(steps):
        now += timedelta(hours=hours)
        common: dict[str, Any] = {"event_id": f"ev-{n}", "customer_id": "c-1"}
        if kind == "purchase":
            order, cents, currency, back, redeem = args
            events.append(Purchase(**common, occurred_at=now - back * DAY, type="purchase",
                                   order_id=f"o-{order}", amount_cents=cents, currency=currency,
                                   points_redeemed=redeem))  # fmt: skip
        elif kind == "refund":
            order, cents, currency = args
            events.append(Purchase(**common, occurred_at=now, type="refund", order_id=f"o-{order}",
                                   amount_cents=cents, currency=currency))  # fmt: skip
        elif kind == "complaint":
            severity, complaint = args
            events.append(Complaint(**common, occurred_at=now, complaint_id=f"k-{complaint}",
                                    severity=severity, category="late"))  # fmt: skip
        else:
            events.append(SurveyResponse(**common, occurred_at=now, survey_id="nps",
                                         score=args[0]))  # fmt: skip
        times.append(now)
    return events, times


def settle_batch(
    account: Account, events: Sequence[Event], times: Sequence[datetime], now: datetime
) -> Settlement:
    """What the worker does with one batch: settle, grant every budget request, settle again."""
    grants: dict[str, str] = {}
    done = settle(account, events, now, POLICIES, {}, grants=grants, times=times)
    while asked := [r for r in done.budget_requests if r.event_id not in grants]:
        grants |= {r.event_id: GRANTED for r in asked}
        done = settle(account, events, now, POLICIES, {}, grants=grants, times=times)
    return done


KINDS = ("entries", "credits", "anomalies", "rejections", "decisions", "orders", "commands",
         "referral_rewards")  # fmt: skip


def run(
    events: list[Event], times: list[datetime], cuts: Sequence[int], start: Account | None = None
) -> tuple[Account, dict[str, list[Any]]]:
    """Settle `events` in the batches `cuts` makes (each ending at its last event's time); the
    final account and everything published, by kind, in order."""
    account = start or Account("c-1")
    published: dict[str, list[Any]] = {kind: [] for kind in KINDS}
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(events)), len(events)]
    for lo, hi in itertools.pairwise(bounds if events else []):
        done = settle_batch(account, events[lo:hi], times[lo:hi], times[hi - 1])
        account = done.account
        for kind in KINDS:
            published[kind] += getattr(done, kind)
    return account, published


@settings(max_examples=400, deadline=None, database=None)
@given(steps_st, st.lists(st.integers(0, 24), max_size=8))
def test_any_cut_into_batches_settles_the_same(steps, cuts):
    events, times = events_of(steps)
    whole = run(events, times, [])
    assert run(events, times, cuts) == whole
    assert run(events, times, range(len(events))) == whole  # one event per batch


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st, st.lists(st.integers(0, 24), max_size=6), st.data())
def test_a_replayed_prefix_repeats_outputs_with_identical_content(steps, cuts, data):
    """A crash after some batches were stored but before their offsets were committed: the
    events from the committed offset are processed again against the stored state."""
    events, times = events_of(steps)
    final, published = run(events, times, cuts)
    stored_through = data.draw(st.integers(0, len(events)), label="stored through")
    committed = data.draw(st.integers(0, stored_through), label="committed")
    stored, _ = run(events[:stored_through], times[:stored_through], cuts)
    replayed_final, replayed = run(events[committed:], times[committed:], [], start=stored)
    assert replayed_final == final
    by_id = {_id(o): o for outputs in published.values() for o in outputs}
    assert all(by_id.get(_id(o)) == o for outputs in replayed.values() for o in outputs)


ID_FIELDS = {"LedgerEntry": "entry_id", "PointsCredit": "reward_id", "Anomaly": "anomaly_id",
             "Rejection": "event_id", "CompensationDecision": "decision_id",
             "GiftCardOrder": "event_id", "ReferralCommand": "event_id",
             "ReferralReward": "reward_id"}  # fmt: skip


def _id(output: Any) -> tuple[str, str]:
    """An output's deterministic id."""
    kind = type(output).__name__
    return kind, getattr(output, ID_FIELDS[kind])


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st)
def test_following_up_one_event_at_a_time_is_the_full_follow_up(steps):
    """The incremental follow-up after each event finds what a full one would (surveys,
    purchases and complaints in any order)."""
    events, times = events_of(steps)
    fast = run(events, times, [])
    with pytest.MonkeyPatch.context() as patch:  # not the fixture: hypothesis runs many examples
        slow_follow_up = lambda account, _, policy: follow_up(account, policy)  # noqa: E731
        patch.setattr(processors.settlement, "follow_up_after", slow_follow_up)
        slow = run(events, times, [])
    assert fast == slow
