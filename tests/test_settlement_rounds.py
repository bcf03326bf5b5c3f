"""Settling in rounds (`start`/`resume`) gives what settling again with the answers gives."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import processors.settlement
import processors.settlement_rules
from processors.account import Account
from processors.compensation import GRANTED, BudgetRequest
from processors.expiry import ExpiryPolicy
from processors.points import EarnRate, PointsPolicy
from processors.referrals import ConversionCheck, referral_key
from processors.settlement import Event, Pending, Policies, Settlement, resume, settle, start
from processors.tiers import Tier, TierPolicy
from schemas.models import (
    AccountCommand,
    Complaint,
    FraudDecision,
    Purchase,
    ReferralCommand,
    SurveyResponse,
)

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
POINTS = PointsPolicy(rates={"EUR": EarnRate(1, 100), "USD": EarnRate(2, 100)}, hold=14 * DAY)
PLAIN = Policies(POINTS)
LOYAL = Policies(
    POINTS,
    tiers=TierPolicy((Tier("silver", 5_000, 150), Tier("gold", 20_000, 200)), "spend",
                     period_days=30, grace_days=5),
    expiry=ExpiryPolicy(lifetime=40 * DAY, inactivity=20 * DAY, warning=5 * DAY),
)  # fmt: skip
VERDICTS = ("approve", "review", "reject")
GRANTS = (GRANTED, GRANTED, "budget_day", "budget_month")

purchase = st.tuples(st.just("purchase"), st.integers(0, 3),
                     st.sampled_from([0, 1500, 2500, 30_000]),
                     st.sampled_from(["EUR", "EUR", "USD", "JPY"]), st.sampled_from([0, 0, 2, 40]),
                     st.sampled_from([0, 0, 30]))  # fmt: skip
op = st.one_of(
    purchase, purchase, purchase,
    st.tuples(st.just("refund"), st.integers(0, 3), st.sampled_from([500, 1000, 30_000])),
    st.tuples(st.just("signup"), st.sampled_from(["alice", "carol"]),
              st.sampled_from(VERDICTS), st.sampled_from([0, 0, 30, 24 * 40])),
    st.tuples(st.just("decision"), st.sampled_from(["approve", "reject"])),
    st.tuples(st.just("flag"), st.sampled_from(["ring_review", "rescore"]),
              st.sampled_from(["review", "reject"])),
    st.tuples(st.just("complaint"), st.sampled_from(["low", "medium", "high", "critical"]),
              st.integers(0, 3), st.sampled_from([0, 0, 35, 70])),
    st.tuples(st.just("survey"), st.integers(0, 10)),
    st.tuples(st.just("account"), st.sampled_from([-20, 50, -20, 50, 0])),  # 0: forget
)  # fmt: skip
# Each step: hours the stream's clock moves on (never back), then the operation; half the runs
# start with a sign-up (a referral converts only if it comes before any purchase).
lead = st.tuples(st.just("signup"), st.sampled_from(["alice", "carol"]),
                 st.sampled_from(["approve", "approve", "review"]), st.just(0))  # fmt: skip
steps_st = st.builds(
    lambda first, rest: first + rest,
    st.lists(st.tuples(st.just(0), lead), max_size=1),
    st.lists(st.tuples(st.integers(0, 24 * 8), op), min_size=1, max_size=24),
)


def event(n: int, now: datetime, kind: Any, *args: Any, customer: str = "bob") -> Event:
    """One concrete event of `customer` (the referee of alice's or carol's referral)."""
    common: dict[str, Any] = {"event_id": f"{customer}-ev-{n}", "occurred_at": now}
    if kind in {"purchase", "refund"}:
        order, cents, *rest = args
        currency, back, redeem = rest if rest else ("EUR", 0, 0)
        return Purchase(**common | {"occurred_at": now - back * DAY}, customer_id=customer,
                        type=kind, order_id=f"o-{order}", amount_cents=cents, currency=currency,
                        points_redeemed=redeem)  # fmt: skip
    if kind in {"signup", "flag"}:
        return _referral_command(common, customer, kind, *args)
    if kind == "decision":
        return FraudDecision(**common, referee_id=customer, decision=args[0], operator="ops")
    if kind == "complaint":
        severity, complaint, back = args
        return Complaint(**common | {"occurred_at": now - back * DAY}, customer_id=customer,
                         complaint_id=f"k-{complaint}", severity=severity,
                         category="late")  # fmt: skip
    if kind == "survey":
        return SurveyResponse(**common, customer_id=customer, survey_id="nps", score=args[0])
    if args[0]:
        return AccountCommand(**common, command="adjust", customer_id=customer, operator="ops",
                              reason="goodwill", points=args[0],
                              adjustment_id=f"adj-{n}")  # fmt: skip
    return AccountCommand(**common, command="forget", customer_id=customer, operator="ops")


def _referral_command(common: dict[str, Any], customer: str, kind: str, *args: Any) -> Event:
    if kind == "signup":
        referrer, decision, back = args
        common = common | {"occurred_at": common["occurred_at"] - timedelta(hours=back)}
        command: Any = "signup"
        source = f"su-{referrer}-{back}"
    else:
        (command, decision), referrer, source = args, "alice", common["event_id"]
    return ReferralCommand(**common, command=command, customer_id=customer,
                           referral_key=referral_key(referrer, customer), referrer_id=referrer,
                           referee_id=customer, source_event_id=source, decision=decision,
                           score=0.5, alert_id="fa-1")  # fmt: skip


def events_of(steps: list[Any], customer: str = "bob") -> tuple[list[Event], list[datetime]]:
    """Concrete events and the stream time each is processed at."""
    events, times, now = [], [], T0
    for n, (hours, (kind, *args)) in enumerate(steps):
        now += timedelta(hours=hours)
        events.append(event(n, now, kind, *args, customer=customer))
        times.append(now)
    return events, times


Verdict = Callable[[ConversionCheck], str]
Grant = Callable[[BudgetRequest], str]


def oracle(seed: int) -> tuple[Verdict, Grant]:
    """Answers that depend on the question only (as a fraud scorer and a budget with room)."""

    def pick(options: Sequence[str], event_id: str) -> str:
        return options[zlib.crc32(f"{seed}:{event_id}".encode()) % len(options)]

    return (
        lambda check: pick(VERDICTS, check.purchase.event_id),
        lambda request: pick(GRANTS, request.event_id),
    )


def settle_twice(
    account: Account, events: Sequence[Event], times: Sequence[datetime], now: datetime,
    policies: Policies, answers: tuple[Verdict, Grant],
) -> Settlement:  # fmt: skip
    """The worker before rounds: settle, ask every check, settle again with the verdicts, then
    reserve the budget requests and settle again until none waits."""
    verdict_of, grant_of = answers
    done = settle(account, events, now, policies, times=times)
    verdicts = {c.purchase.event_id: verdict_of(c) for c in done.checks}
    if verdicts:
        done = settle(account, events, now, policies, verdicts, times=times)
    grants: dict[str, str] = {}
    while asked := [r for r in done.budget_requests if r.event_id not in grants]:
        grants |= {r.event_id: grant_of(r) for r in asked}
        done = settle(account, events, now, policies, verdicts, grants=grants, times=times)
    return done


def in_rounds(
    work: Mapping[str, tuple[Account, Sequence[Event], Sequence[datetime], datetime]],
    policies: Policies, answers: tuple[Verdict, Grant],
) -> tuple[dict[str, Settlement], int]:  # fmt: skip
    """The driving loop of `start`'s docstring over many customers: the settlements, and how
    many rounds of questions it took."""
    verdict_of, grant_of = answers
    progress = {
        key: start(account, events, now, policies, times=times)
        for key, (account, events, times, now) in work.items()
    }
    rounds = 0
    while paused := {k: p for k, p in progress.items() if isinstance(p, Pending)}:
        rounds += 1
        verdicts = {c.purchase.event_id: verdict_of(c) for p in paused.values() for c in p.checks}
        grants = {r.event_id: grant_of(r) for p in paused.values() for r in p.budget_requests}
        for key, pending in paused.items():
            progress[key] = resume(pending, verdicts, grants)
    done = {k: s for k, s in progress.items() if isinstance(s, Settlement)}
    assert len(done) == len(progress)
    return done, rounds


def one(
    account: Account, events: Sequence[Event], times: Sequence[datetime], now: datetime,
    policies: Policies, answers: tuple[Verdict, Grant],
) -> Settlement:  # fmt: skip
    return in_rounds({"bob": (account, events, times, now)}, policies, answers)[0]["bob"]


policies_st = st.sampled_from([PLAIN, LOYAL])
KINDS = ("entries", "credits", "anomalies", "rejections", "decisions", "orders", "commands",
         "referral_rewards", "fraud_rejected", "erasures", "tier_changes",
         "expiry_warnings")  # fmt: skip


@settings(max_examples=500, deadline=None, database=None)
@given(steps_st, policies_st, st.integers(0, 2**16), st.lists(st.integers(0, 24), max_size=4))
def test_rounds_settle_like_settling_again_with_the_answers(steps, policies, seed, cuts):
    """Batch by batch (any cut), the same settlement as today's settle-then-settle-again."""
    events, times = events_of(steps)
    bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(events)), len(events)]
    account = Account("bob")
    for lo, hi in itertools.pairwise(bounds):
        batch = (account, events[lo:hi], times[lo:hi], times[hi - 1])
        done = one(*batch, policies, oracle(seed))
        assert done == settle_twice(*batch, policies, oracle(seed))
        assert done.checks == () and done.budget_requests == ()  # every question was answered
        account = done.account


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st, policies_st, st.integers(0, 2**16), st.lists(st.integers(0, 24), max_size=6))
def test_rounds_do_not_depend_on_batch_cuts(steps, policies, seed, cuts):
    """Settling in rounds keeps batch independence: the final account and everything said."""

    def run(cuts: Sequence[int]) -> tuple[Account, list[Settlement]]:
        bounds = [0, *sorted(c for c in set(cuts) if 0 < c < len(events)), len(events)]
        account, said = Account("bob"), []
        for lo, hi in itertools.pairwise(bounds):
            done = one(account, events[lo:hi], times[lo:hi], times[hi - 1], policies,
                       oracle(seed))  # fmt: skip
            account = done.account
            said.append(done)
        return account, said

    events, times = events_of(steps)
    whole, parts = run([]), run(cuts)
    assert parts[0] == whole[0]
    for kind in KINDS:
        assert [x for s in parts[1] for x in getattr(s, kind)] == [
            x for s in whole[1] for x in getattr(s, kind)
        ], kind


@settings(max_examples=300, deadline=None, database=None)
@given(steps_st, policies_st, st.integers(0, 2**16))
def test_each_event_is_settled_once(steps, policies, seed):
    """The rules run once per event, and once more for each question (the event that asked is
    worked out again with its answer); events before a pause are never applied again."""
    events, times = events_of(steps)
    verdict_of, grant_of = oracle(seed)
    calls: list[int] = []
    rules = processors.settlement_rules.event_steps

    def counted(account, event, *args):
        calls.append(events.index(event))
        return rules(account, event, *args)

    with mock.patch.object(processors.settlement, "event_steps", counted):
        done = start(Account("bob"), events, times[-1], policies, times=times)
        asked = []
        while isinstance(done, Pending):
            asked.append(done.index)
            done = resume(done, {c.purchase.event_id: verdict_of(c) for c in done.checks},
                          {r.event_id: grant_of(r) for r in done.budget_requests})  # fmt: skip
    assert calls == sorted([*range(len(events)), *asked])  # in order, never going back


CUSTOMERS = ("bob", "dan", "eve")


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.tuples(st.integers(0, 24 * 8), op)),
                min_size=1, max_size=40), policies_st, st.integers(0, 2**16))  # fmt: skip
def test_many_customers_are_driven_in_rounds_of_questions(mixed, policies, seed):
    """The driving loop over a batch of several customers: each customer's settlement is the one
    they get alone, and the batch takes as many rounds as its most inquisitive customer."""
    work = {}
    for customer in CUSTOMERS:
        events, times = events_of([s for c, s in mixed if c == customer], customer)
        if events:
            work[customer] = (Account(customer), events, times, max(times))
    done, rounds = in_rounds(work, policies, oracle(seed))
    alone = {c: in_rounds({c: batch}, policies, oracle(seed)) for c, batch in work.items()}
    assert done == {c: settled[c] for c, (settled, _) in alone.items()}
    assert done == {c: settle_twice(*batch, policies, oracle(seed)) for c, batch in work.items()}
    assert rounds == max(n for _, n in alone.values())


def test_a_pause_holds_the_question_and_resuming_needs_its_answer():
    signup = event(0, T0, "signup", "alice", "approve", 0)
    buy = event(1, T0 + DAY, "purchase", 0, 30_000, "EUR", 0, 0)
    complaint = event(2, T0 + 2 * DAY, "complaint", "high", 0, 0)
    events, times = [signup, buy, complaint], [T0, T0 + DAY, T0 + 2 * DAY]
    first = start(Account("bob"), events, T0 + 3 * DAY, PLAIN, times=times)
    assert isinstance(first, Pending)
    assert (first.index, first.budget_requests) == (1, ())
    assert [c.purchase.event_id for c in first.checks] == [buy.event_id]
    assert (
        first.account.referral.referee is not None
        and first.account.referral.referee.status == "attributed"
    )
    with pytest.raises(ValueError, match="answer"):
        resume(first, {"someone-else": "approve"})
    second = resume(first, {buy.event_id: "approve"})
    assert isinstance(second, Pending)
    assert (second.index, second.checks) == (2, ())
    assert [r.event_id for r in second.budget_requests] == [complaint.event_id]
    done = resume(second, grants={complaint.event_id: GRANTED})
    assert done == settle(Account("bob"), events, T0 + 3 * DAY, PLAIN,
                          {buy.event_id: "approve"}, grants={complaint.event_id: GRANTED},
                          times=times)  # fmt: skip
    assert [d.outcome for d in done.decisions] == ["gift_card"]
    assert (
        done.account.referral.referee is not None
        and done.account.referral.referee.status == "converted"
    )


def test_nothing_to_ask_settles_at_once():
    events, times = events_of([(1, ("purchase", 0, 2500, "EUR", 0, 0)), (2, ("survey", 9))])
    assert start(Account("bob"), events, T0 + DAY, PLAIN, times=times) == settle(
        Account("bob"), events, T0 + DAY, PLAIN, times=times
    )
    assert start(Account("bob"), [], T0, PLAIN) == Settlement(Account("bob"))
