"""Advocacy metrics: NPS, the referral funnel, k-factor and recovery after a complaint (pure).

What a customer's account remembers for them (survey answers and invitations of the longest
window, each complaint's follow-up) and the facts it contributes to the windowed metrics: the
streams layer keeps the facts of the accounts a worker owns, exports counts per window as gauges,
and Prometheus sums them over workers. The formulas below are what the recording rules compute.

NPS: promoters score 9-10, passives 7-8, detractors 0-6; NPS = % promoters - % detractors.
Funnel: invitations sent, referees signed up (attributed), conversions (first qualifying purchase);
conversion rate = conversions / sign-ups; k-factor = invitations per referring customer x
conversions per invitation. Recovery, by arm (gift_card, discount, none = a limit blocked it): of
the complaints decided, the share whose next survey is a promoter, passive or better (>= 7), and
whose customer purchased again within the repurchase window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from msgspec import Struct
from msgspec.structs import replace

from processors.account import Account
from processors.advocacy_state import AdvocacyState, InviteFact, SurveyFact
from processors.compensation_state import ComplaintRecord
from processors.referrals import shop_orders
from schemas.models import Complaint, Purchase, Referral, SurveyResponse

Category = Literal["promoter", "passive", "detractor"]
WINDOWS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("30d", timedelta(days=30)),
)
RECOVERY_ARMS = ("gift_card", "discount", "none")
RECOVERY_STAGES = ("decided", "surveyed", "promoter", "passive_or_better", "repurchased")
FUNNEL_STAGES = ("invites", "signups", "conversions")


@dataclass(frozen=True, slots=True)
class AdvocacyPolicy:
    """Configuration of the advocacy metrics (built from settings by the streams layer)."""

    channels: frozenset[str] = frozenset({"email", "app", "web", "sms", "phone", "chat"})
    windows: tuple[tuple[str, timedelta], ...] = WINDOWS
    repurchase_window: timedelta = timedelta(days=30)
    max_invites: int = 1000
    """Invitations kept per customer; beyond it the oldest are forgotten (and not counted)."""
    event_clock: bool = False
    """Windows end at the newest event time seen, not the wall clock (backfills, replays)."""

    @property
    def retention(self) -> timedelta:
        """How long answers and invitations are kept: the longest window."""
        return max(w for _, w in self.windows)


class Fact(Struct, frozen=True, gc=False):
    """One contribution of one account to a windowed metric: its key and its time."""

    key: tuple[str, ...]
    at: datetime


def category(score: int) -> Category:
    """The NPS category of a 0..10 answer."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def nps(promoters: float, passives: float, detractors: float) -> float | None:
    """% promoters - % detractors, from -100 to 100; None without answers."""
    total = promoters + passives + detractors
    return None if total == 0 else 100.0 * (promoters - detractors) / total


def ratio(part: float, whole: float) -> float | None:
    """part / whole, None when whole is 0 (a share that is not defined yet)."""
    return None if whole == 0 else part / whole


def k_factor(invites: float, referrers: float, conversions: float) -> float | None:
    """Invitations per referring customer x conversions per invitation."""
    per_referrer, conversion = ratio(invites, referrers), ratio(conversions, invites)
    return None if per_referrer is None or conversion is None else per_referrer * conversion


def segment_of(channel: str | None, policy: AdvocacyPolicy) -> str:
    """A bounded label value for a free-text channel: a known one, `other` or `unknown`."""
    if not channel:
        return "unknown"
    name = channel.strip().lower()
    return name if name in policy.channels else "other"


def record_survey(account: Account, survey: SurveyResponse, policy: AdvocacyPolicy) -> Account:
    """Remember an answer (once per event id)."""
    if any(s.event_id == survey.event_id for s in account.advocacy.surveys):
        return account
    fact = SurveyFact(
        survey.event_id, survey.occurred_at, survey.score, segment_of(survey.channel, policy),
        survey.ces,
    )  # fmt: skip
    return replace(
        account, advocacy=replace(account.advocacy, surveys=(*account.advocacy.surveys, fact))
    )


def record_invite(account: Account, invite: Referral, policy: AdvocacyPolicy) -> Account:
    """Remember an invitation this customer sent (once per event id; the newest kept)."""
    if any(i.event_id == invite.event_id for i in account.advocacy.invites):
        return account
    kept = (*account.advocacy.invites, InviteFact(invite.event_id, invite.occurred_at))
    invites = tuple(sorted(kept, key=lambda i: i.at))[-policy.max_invites :]
    return replace(account, advocacy=replace(account.advocacy, invites=invites))


def follow_up(account: Account, policy: AdvocacyPolicy) -> Account:
    """Fill in each decided complaint's next survey score and repurchase, from what the account
    holds now (so the order in which complaints, surveys and purchases arrive does not matter);
    once found they stay."""
    changed = {}
    for complaint_id, record in account.complaints.items():
        if record.outcome == "none":
            continue
        after = record.complained_at
        score = record.next_score
        if score is None:
            later = [s for s in account.advocacy.surveys if s.at >= after]
            score = min(later, key=lambda s: (s.at, s.event_id)).score if later else None
        bought = record.repurchased_at or _first_purchase(account, after, policy)
        if (score, bought) != (record.next_score, record.repurchased_at):
            changed[complaint_id] = replace(record, next_score=score, repurchased_at=bought)
    if not changed:
        return account
    return replace(account, complaints={**account.complaints, **changed})


def follow_up_after(
    account: Account, event: Complaint | SurveyResponse | Purchase, policy: AdvocacyPolicy
) -> Account:
    """`follow_up` after one event, looking only at what the event can have added: a survey
    answer is the next one of the complaints that have none yet, a new order their purchase
    again (nothing earlier can be missing: it would have been found when it arrived); a
    complaint is followed up from everything the account holds."""
    if isinstance(event, Complaint):
        return follow_up(account, policy)
    if isinstance(event, SurveyResponse):
        fact = next(
            (f for f in reversed(account.advocacy.surveys) if f.event_id == event.event_id), None
        )
        if fact is None:
            return account
        return _fill(account, lambda r: r.next_score is None and fact.at >= r.complained_at,
                     lambda r: replace(r, next_score=fact.score))  # fmt: skip
    order = account.points.orders.get(event.order_id)
    if event.type != "purchase" or order is None or order.event_id != event.event_id:
        return account
    window, at = policy.repurchase_window, order.purchased_at
    changed = {  # inline, not `_fill`: it runs for every purchase of a customer who complained
        complaint_id: replace(record, repurchased_at=at)
        for complaint_id, record in account.complaints.items()
        if record.repurchased_at is None
        and record.outcome != "none"
        and record.complained_at <= at <= record.complained_at + window
    }
    return replace(account, complaints={**account.complaints, **changed}) if changed else account


def _fill(
    account: Account,
    wants: Callable[[ComplaintRecord], bool],
    fill: Callable[[ComplaintRecord], ComplaintRecord],
) -> Account:
    """The account with `fill` applied to its decided complaints that `wants` it."""
    changed = {
        complaint_id: fill(record)
        for complaint_id, record in account.complaints.items()
        if record.outcome != "none" and wants(record)
    }
    if not changed:
        return account
    return replace(account, complaints={**account.complaints, **changed})


def _first_purchase(account: Account, after: datetime, policy: AdvocacyPolicy) -> datetime | None:
    until = after + policy.repurchase_window
    times = [o.purchased_at for o in shop_orders(account) if after <= o.purchased_at <= until]
    return min(times) if times else None


def prune_advocacy(account: Account, now: datetime, policy: AdvocacyPolicy) -> Account:
    """Forget answers and invitations older than the longest window; with the event clock,
    older than it before the account's own newest answer or invitation (if before `now`), so
    that backfilled history (older than the stream time) is kept for event-time windows."""
    if policy.event_clock:
        times = [s.at for s in account.advocacy.surveys] + [i.at for i in account.advocacy.invites]
        now = min(now, max(times, default=now))  # a future-dated answer prunes nothing early
    cutoff = now - policy.retention
    surveys = tuple(s for s in account.advocacy.surveys if s.at >= cutoff)
    invites = tuple(i for i in account.advocacy.invites if i.at >= cutoff)
    if len(surveys) == len(account.advocacy.surveys) and len(invites) == len(
        account.advocacy.invites
    ):
        return account
    return replace(account, advocacy=AdvocacyState(surveys, invites))


def facts(account: Account) -> Iterator[Fact]:
    """Everything this account contributes to the windowed metrics."""
    for survey in account.advocacy.surveys:
        yield Fact(("nps", survey.channel, category(survey.score)), survey.at)
        if survey.ces is not None:
            yield Fact(("ces", survey.channel, str(survey.ces)), survey.at)
    for invite in account.advocacy.invites:
        yield Fact(("funnel", "invites"), invite.at)
    if account.advocacy.invites:
        yield Fact(("referrer",), account.advocacy.invites[-1].at)
    referral = account.referral.referee
    if referral is not None:
        yield Fact(("funnel", "signups"), referral.signed_up_at)
        if referral.converted_at is not None:
            yield Fact(("funnel", "conversions"), referral.converted_at)
    for record in account.complaints.values():
        if record.outcome == "none":
            continue
        arm = record.outcome if record.outcome in ("gift_card", "discount") else "none"
        yield from (
            Fact(("recovery", arm, stage), record.complained_at) for stage in _stages(record)
        )


def _stages(record: ComplaintRecord) -> Iterable[str]:
    """The recovery stages a decided complaint reached."""
    score = record.next_score
    yield "decided"
    if score is not None:
        yield "surveyed"
        if score >= 9:
            yield "promoter"
        if score >= 7:
            yield "passive_or_better"
    if record.repurchased_at is not None:
        yield "repurchased"


def advocacy_changed(before: Account, after: Account) -> bool:
    """Whether the account's facts may differ (cheap: the fields they come from)."""
    return (
        before.advocacy != after.advocacy
        or before.referral.referee != after.referral.referee
        or before.complaints != after.complaints
    )


def window_counts(
    found: Iterable[Fact], now: datetime, windows: tuple[tuple[str, timedelta], ...] = WINDOWS
) -> dict[tuple[tuple[str, ...], str], int]:
    """Facts per (key, window) at `now`: a fact counts in a window if `now - span <= at`.

    The reference the workers' incremental windows (`streams.advocacy`) must agree with."""
    out: dict[tuple[tuple[str, ...], str], int] = {}
    for fact in found:
        for window, span in windows:
            if fact.at >= now - span:
                out[(fact.key, window)] = out.get((fact.key, window), 0) + 1
    return out
