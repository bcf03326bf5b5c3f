"""Settle a customer's purchases and refunds against their points account (pure).

`settle` is what the streams layer calls once per customer per batch: release what the clock says
is due, apply the events in order, release again (a back-dated purchase may already be due), forget
orders past retention. It returns everything the world needs to hear about, and nothing else.
Some events need an answer from outside first (a fraud verdict for a converting purchase, a
budget grant for a compensation): `start` and `resume` settle in rounds, pausing at the event
that asks, so that a batch's questions are asked together and no event is settled twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.advocacy import follow_up_after
from processors.compensation import BudgetRequest, Care
from processors.ledger import Outcome
from processors.points import PointsPolicy
from processors.referrals import ConversionCheck, Step
from processors.settlement_results import (
    PointsCredit,
    Rejection,
    Settlement,
    SettleStep,
    collect,
    credits_for,
)
from processors.settlement_rules import Event, EventStep, Policies, event_steps, loyalty, tick
from schemas.models import Complaint, Purchase, SurveyResponse

__all__ = [
    "Batch",
    "Event",
    "Pending",
    "PointsCredit",
    "Policies",
    "Rejection",
    "Settlement",
    "credits_for",
    "resume",
    "settle",
    "start",
]


class Batch(Struct, frozen=True, gc=False):
    """What one settlement settles: the events, each processed at its time, up to `now`, under
    the policies, with the answers known so far (by purchase and complaint event id)."""

    events: Sequence[Event]
    times: Sequence[datetime]
    now: datetime
    policies: Policies
    verdicts: Mapping[str, str]
    grants: Mapping[str, str]


class Pending(Struct, frozen=True, gc=False):
    """A settlement paused at the event that asked a question: answer it and `resume`.

    Everything before `batch.events[index]` is settled (`account`, `steps`, `rejections`) and
    time has moved on to that event's; the event itself is applied when resumed, with its answer.
    """

    checks: tuple[ConversionCheck, ...]
    """A conversion waiting for its fraud verdict: answer by `check.purchase.event_id`."""
    budget_requests: tuple[BudgetRequest, ...]
    """A compensation waiting for its budget reservation: answer by `request.event_id`."""
    account: Account
    index: int
    steps: tuple[SettleStep, ...]
    rejections: tuple[Rejection, ...]
    batch: Batch


def settle(
    account: Account,
    events: Sequence[Event],
    now: datetime,
    policy: PointsPolicy | Policies,
    verdicts: Mapping[str, str] | None = None,
    *,
    grants: Mapping[str, str] | None = None,
    times: Sequence[datetime] | None = None,
) -> Settlement:
    """Apply a customer's events in order, each at its own time, and every release due by `now`.

    `times[i]` is when `events[i]` is processed (the stream's clock: never going back, and
    `now` >= the last of them); without `times` every event is processed at `now`. Before each
    event, the holds ended by its time are released and what is past retention is forgotten;
    after the last, the same happens at `now`. So the outcome depends only on the events, their
    times and `now`: never on how the events are cut into batches (tested).

    Each event is idempotent on its own (an order, refund, referral step or complaint already
    recorded changes nothing), so a replayed or redelivered event settles to the same account and
    the same ids. `verdicts` maps a converting purchase's event id to its fraud decision; a
    conversion without one stops the referral there and is listed in `checks`. `grants` maps a
    complaint's event id to its budget reservation's answer; a compensation without one is listed
    in `budget_requests` (and the customer's later complaints are limited as if it were granted).
    To ask instead, and settle each event once, use `start` and `resume`.
    """
    batch = _batch(account, events, now, policy, times, verdicts or {}, grants or {})
    done = _play(account, 0, [], [], batch, pause=False)
    assert isinstance(done, Settlement)  # never pauses
    return done


def start(
    account: Account,
    events: Sequence[Event],
    now: datetime,
    policy: PointsPolicy | Policies,
    *,
    times: Sequence[datetime] | None = None,
) -> Settlement | Pending:
    """Settle like `settle`, but pause at the first event that needs an answer from outside.

    The result is the `Settlement` if no event asked, or a `Pending` holding its question (a
    fraud verdict in `checks`, or a budget grant in `budget_requests`) and where to continue.
    Answer it and `resume`, until a `Settlement` comes back: each event is settled once (the one
    that asked is worked out again with its answer), and the result is the `Settlement` that
    `settle` gives with the same answers as mappings. A caller settling many customers drives
    them in rounds, each round asking every paused customer's questions at once:

        progress = {key: start(account, events, now, policies, times=times) for ...}
        while paused := {k: p for k, p in progress.items() if isinstance(p, Pending)}:
            checks = [c for p in paused.values() for c in p.checks]
            requests = [r for p in paused.values() for r in p.budget_requests]
            verdicts = score(checks) if checks else {}  # one round trip, by purchase event id
            grants = reserve(requests) if requests else {}  # one round trip, by complaint event id
            for key, pending in paused.items():
                progress[key] = resume(pending, verdicts, grants)

    A customer asks one question per round, at the first event that needs one: nothing after it
    is assumed (unlike `settle`, which goes on as if a missing grant were granted), so a
    customer's next question, e.g. a second compensation, is asked in a later round, once the
    first is answered. Each event asks at most once, so the loop ends.
    """
    batch = _batch(account, events, now, policy, times, {}, {})
    return _play(account, 0, [], [], batch, pause=True)


def resume(
    pending: Pending,
    verdicts: Mapping[str, str] | None = None,
    grants: Mapping[str, str] | None = None,
) -> Settlement | Pending:
    """Continue a paused settlement at the event that asked, with the answer to its question
    (`verdicts` by purchase event id, `grants` by complaint event id; answers to other customers'
    questions are ignored): the `Settlement`, or a `Pending` at the next event that asks.

    Raises `ValueError` if the question is not answered (it would only be asked again).
    """
    batch = pending.batch
    asked_verdicts = _answers([c.purchase.event_id for c in pending.checks], verdicts)
    asked_grants = _answers([r.event_id for r in pending.budget_requests], grants)
    batch = replace(
        batch,
        verdicts={**batch.verdicts, **asked_verdicts},
        grants={**batch.grants, **asked_grants},
    )
    steps, rejections = list(pending.steps), list(pending.rejections)
    return _play(pending.account, pending.index, steps, rejections, batch, pause=True, resumed=True)


def _answers(asked: Sequence[str], given: Mapping[str, str] | None) -> dict[str, str]:
    """The answers to the questions `asked` (event ids), all of them."""
    missing = [event_id for event_id in asked if given is None or event_id not in given]
    if missing:
        raise ValueError(f"resume needs the answer to every question asked: none for {missing}")
    return {event_id: given[event_id] for event_id in asked} if given else {}


def _batch(  # noqa: PLR0917 - `settle`'s arguments, all of them needed
    account: Account,
    events: Sequence[Event],
    now: datetime,
    policy: PointsPolicy | Policies,
    times: Sequence[datetime] | None,
    verdicts: Mapping[str, str],
    grants: Mapping[str, str],
) -> Batch:
    """The batch `settle` and `start` are given (every event at `now` without `times`)."""
    policies = policy if isinstance(policy, Policies) else Policies(policy)
    at = times if times is not None else [now] * len(events)
    if len(at) != len(events):
        raise ValueError(f"{len(events)} events of {account.customer_id} but {len(at)} times")
    return Batch(events, at, now, policies, verdicts, grants)


def _play(
    account: Account,
    index: int,
    steps: list[SettleStep],
    rejections: list[Rejection],
    batch: Batch,
    *,
    pause: bool,
    resumed: bool = False,
) -> Settlement | Pending:
    """Apply `batch.events[index:]`, each after time moves on to its own (`resumed`: to the
    first one's already), then move time on to `now`; with `pause`, stop at an event that asks."""
    events, times, policies = batch.events, batch.times, batch.policies
    verdicts, grants = batch.verdicts, batch.grants
    loyal = bool(policies.tiers.tiers or policies.expiry.inactivity)
    for i in range(index, len(events)):
        event, at = events[i], times[i]
        if i > index or not resumed:
            account, ticked = tick(account, at, policies)
            if ticked:
                steps += ticked
        made = event_steps(account, event, policies, at, verdicts, grants)
        last, first = made[-1], made[0]  # only the last can ask; only the first (earning) refuse
        if pause and not isinstance(last, Outcome) and (asked := _asked(last)) is not None:
            return Pending(*asked, account, i, tuple(steps), tuple(rejections), batch)
        steps += made
        account = last.account
        if isinstance(first, Outcome) and first.rejection is not None:
            rejections.append(Rejection(event.event_id, "no_points_rate", first.rejection))
        if loyal:
            account, change = loyalty(account, event, at, policies, made)
            if change is not None:
                steps.append(change)
        if account.complaints and isinstance(event, _FOLLOWED):
            account = follow_up_after(account, event, policies.advocacy)
    account, ticked = tick(account, batch.now, policies)
    steps += ticked
    return collect(account, steps, rejections)


_FOLLOWED = (Purchase, Complaint, SurveyResponse)
"""The events that can change a complaint's follow-up (its record, the next answer, a purchase
again); after any other event, or time passing, it cannot have changed."""


def _asked(step: EventStep) -> tuple[tuple[ConversionCheck, ...], tuple[BudgetRequest, ...]] | None:
    """The question an event's last step asks, if any: (checks, budget requests)."""
    match step:
        case Step(check=ConversionCheck() as check):
            return (check,), ()
        case Care(request=BudgetRequest() as request):
            return (), (request,)
    return None
