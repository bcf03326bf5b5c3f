"""The chaos soak's oracle: what the worker must have done, from the published records alone.

It reads nothing the worker wrote and runs none of `streams/`: the input topics as published (each
record with its partition, offset and LogAppendTime), the contract (`schemas.Codec`, the key
rule) and the pure rules in `processors/`, with the policy values of the soak's settings. The
workload (`workload.py`) is shaped so that the outcome does not depend on how the worker cut,
ordered or repeated its batches, and the oracle raises `WorkloadError` if the records break that:

- purchases are made either now (their points stay pending: the 14-day hold outlasts the run)
  or 15-60 days ago (the hold is over: available as soon as settled), never near a hold's end,
  so the stream time an event is settled at (its partition's clock, at least its own timestamp)
  changes nothing; each customer's purchases, refunds and redemptions are folded in offset order
  (one partition per customer) through `processors.settlement.settle` at their timestamps;
- a referral's sign-up names a new customer, who shares no e-mail, device, card, address or IP
  with anyone, so the fraud rules approve both the sign-up and the conversion; the referee buys
  nothing before signing up, and the qualifying purchase (the referee's first purchase over the
  minimum, `processors.referrals.converts`) is never refunded and made now: whichever order the
  sign-up command and the purchase arrive in, both sides get `referrer_points` /
  `referee_points` pending (their 14-day hold outlasts the run), one ledger entry each
  (`processors.referrals.credit_points`); no referrer has more than two referrals (caps);
- every complaint is its customer's only one, by a customer outside referrals, so no limit
  applies and the budget (uncapped) grants it: the decision is `processors.compensation.assess`
  with a granted reservation, and a paying tier is one gift card (its reward id and idempotency
  key are the processors' own);
- a retried event is the same bytes again: only the first record of an event id counts; records
  that break the contract (unknown currency, a key naming someone else) and purchases in a
  currency without a points rate must be dead-lettered with that reason.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from processors.account import Account
from processors.compensation import GRANTED, CompensationPolicy, assess
from processors.ids import stable_id
from processors.referral_state import Referee, ReferralState
from processors.referrals import ReferralPolicy, converts, credit_points, referral_key, with_referee
from processors.referrals import referral_order_id as reward_order
from processors.routing import key_mismatch
from processors.settlement import Policies, settle
from schemas.codec import Codec, DecodeError
from schemas.models import Complaint, GiftCardOrder, InputEvent, Purchase, Referral
from streams.chaos.read import Rec
from streams.chaos.rules import policies
from streams.settings import Settings


class WorkloadError(ValueError):
    """The published records break an assumption that keeps the oracle exact."""


@dataclass(frozen=True, slots=True)
class Balance:
    """A customer's points as every view must show them."""

    pending: int = 0
    available: int = 0
    sequence: int = 0


@dataclass
class Published:
    """What one input topic holds."""

    records: int = 0
    unique: int = 0
    retries: int = 0


@dataclass
class Expected:
    """The oracle's answer."""

    balances: dict[str, Balance] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)
    """Every ledger entry id, with its customer."""
    effects: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    """Per input topic, each unique event id's expected effect: `ledger` (an entry or anomaly
    names it), `signup` (a signup command), `decision` (a compensation decision),
    `dead_letter:<reason>` or `silent` (nothing visible: not produced by the workload)."""
    points_rewards: set[str] = field(default_factory=set)
    gift_cards: dict[str, GiftCardOrder] = field(default_factory=dict)
    """By reward id."""
    decisions: dict[str, str] = field(default_factory=dict)
    """Complaint event id -> outcome."""
    published: dict[str, Published] = field(default_factory=lambda: defaultdict(Published))
    timestamps: dict[str, int] = field(default_factory=dict)
    """Event id -> its record's timestamp (ms), for latencies."""
    customers: set[str] = field(default_factory=set)
    """Everyone a valid event names (their balance is zero unless `balances` says otherwise)."""


@dataclass(frozen=True, slots=True)
class _Event:
    topic: str
    event: InputEvent
    at: datetime


def expect(records: Mapping[str, Sequence[Rec]], settings: Settings) -> Expected:
    """The expected outcome of the published input records (base topic -> records)."""
    expected, rules = Expected(), policies(settings)
    events = _admit(records, expected, Codec(max_event_bytes=settings.max_event_bytes))
    accounts = _fold_purchases(expected, [e for e in events if e.topic == "purchases"], rules)
    _referrals(expected, events, accounts, rules.referrals)
    _complaints(expected, [e for e in events if e.topic == "complaints"], rules.compensation)
    for customer, account in accounts.items():
        expected.balances[customer] = Balance(
            account.points.pending, account.points.available, account.points.sequence
        )
    return expected


def _admit(records: Mapping[str, Sequence[Rec]], out: Expected, codec: Codec) -> list[_Event]:
    """Decode every record as the contract says; the first record of each event id counts."""
    events: list[_Event] = []
    for topic, recs in records.items():
        seen: set[str] = set()
        for rec in sorted(recs, key=lambda r: (r.partition, r.offset)):
            out.published[topic].records += 1
            event_id = str(rec.json().get("event_id", ""))
            if event_id in seen:
                out.published[topic].retries += 1
                continue
            seen.add(event_id)
            out.published[topic].unique += 1
            out.timestamps[event_id] = rec.timestamp_ms
            try:
                event = codec.decode(topic, rec.value or b"")
                mismatch = key_mismatch(topic, event, rec.key)
            except DecodeError as err:
                out.effects[topic][event_id] = f"dead_letter:{err.reason}"
                continue
            if mismatch is not None:
                out.effects[topic][event_id] = "dead_letter:key_mismatch"
                continue
            at = datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC)
            events.append(_Event(topic, event, at))
            out.customers.update(_named(event))
    return events


def _named(event: InputEvent) -> list[str]:
    """The customers an event names."""
    names = [getattr(event, name, None) for name in ("customer_id", "referrer_id", "referee_id")]
    return [name for name in names if isinstance(name, str)]


def _fold_purchases(out: Expected, events: list[_Event], rules: Policies) -> dict[str, Account]:
    """Each customer's purchases and refunds, in order, through the settlement rules."""
    accounts: dict[str, Account] = {}
    named: set[str] = set()
    for item in events:
        assert isinstance(item.event, Purchase)
        customer = item.event.customer_id
        done = settle(
            accounts.get(customer, Account(customer)), [item.event], item.at, rules, times=[item.at]
        )
        accounts[customer] = done.account
        out.entries.update((e.entry_id, customer) for e in done.entries)
        named.update(e.source_event_id for e in done.entries)
        named.update(a.source_event_id for a in done.anomalies)
        out.points_rewards.update(c.reward_id for c in done.credits)
        for rejection in done.rejections:
            out.effects["purchases"][rejection.event_id] = f"dead_letter:{rejection.reason}"
    for item in events:
        event_id = item.event.event_id
        if event_id not in out.effects["purchases"]:
            out.effects["purchases"][event_id] = "ledger" if event_id in named else "silent"
    return accounts


def _referrals(
    out: Expected, events: list[_Event], accounts: dict[str, Account], policy: ReferralPolicy
) -> None:
    """Sign-ups: a signup command each; a referee's qualifying purchase credits both sides."""
    purchases: defaultdict[str, list[Purchase]] = defaultdict(list)
    for item in events:
        if isinstance(item.event, Purchase):
            purchases[item.event.customer_id].append(item.event)
    credited: defaultdict[str, int] = defaultdict(int)
    for item in events:
        signup = item.event
        if not isinstance(signup, Referral):
            continue
        out.effects["referrals"][signup.event_id] = "signup" if signup.referee_id else "silent"
        if signup.type != "signed_up" or signup.referee_id is None:
            continue
        qualifying = _attribute(out, accounts, signup, purchases[signup.referee_id], policy)
        if qualifying is not None:
            credited[signup.referrer_id] += 1
            _check_caps(signup.referrer_id, credited[signup.referrer_id], policy)
            _credit(out, accounts, signup, qualifying, policy)


def _attribute(
    out: Expected,
    accounts: dict[str, Account],
    signup: Referral,
    bought: list[Purchase],
    policy: ReferralPolicy,
) -> Purchase | None:
    """Attribute the referee (a new customer, referred once); the qualifying purchase, if any."""
    assert signup.referee_id is not None
    account = accounts.get(signup.referee_id, Account(signup.referee_id))
    if account.referral.referee is not None:
        raise WorkloadError(f"referee {signup.referee_id} signed up twice")
    _check_new_customer(signup, bought, out)
    key = referral_key(signup.referrer_id, signup.referee_id)
    referee = Referee(
        key, signup.referrer_id, signup.event_id, signup.occurred_at, "approve", "attributed", ""
    )
    accounts[signup.referee_id] = with_referee(account, referee)
    with_referral = Account(signup.referee_id, referral=ReferralState(referee))
    qualifying = next((p for p in bought if converts(with_referral, p, policy)), None)
    if qualifying is not None:
        _check_kept(qualifying, bought)
    return qualifying


def _check_new_customer(signup: Referral, bought: list[Purchase], out: Expected) -> None:
    for purchase in bought:
        rejected = out.effects["purchases"].get(purchase.event_id, "").startswith("dead_letter")
        if (
            purchase.type == "purchase"
            and not rejected
            and purchase.occurred_at < signup.occurred_at
        ):
            raise WorkloadError(f"referee {signup.referee_id} bought before signing up")


def _check_caps(referrer: str, count: int, policy: ReferralPolicy) -> None:
    for cap in policy.caps:
        if count > cap.max_count or count * policy.referrer_points > cap.max_points:
            raise WorkloadError(f"referrer {referrer} would reach a referral cap")


def _check_kept(qualifying: Purchase, bought: list[Purchase]) -> None:
    if any(p.type == "refund" and p.order_id == qualifying.order_id for p in bought):
        raise WorkloadError(f"qualifying order {qualifying.order_id} is refunded")


def _credit(
    out: Expected,
    accounts: dict[str, Account],
    signup: Referral,
    purchase: Purchase,
    policy: ReferralPolicy,
) -> None:
    """Both sides' pending referral points, as the ledger records them."""
    assert signup.referee_id is not None
    key = referral_key(signup.referrer_id, signup.referee_id)
    release_at = purchase.occurred_at + policy.hold
    command_id = stable_id("rc", "credit_referrer", key)
    sides = (
        (signup.referee_id, reward_order(key, "referee"), purchase.event_id, policy.referee_points),
        (signup.referrer_id, reward_order(key, "referrer"), command_id, policy.referrer_points),
    )
    for customer, order_id, event_id, points in sides:
        account = accounts.get(customer, Account(customer))
        account, entries = credit_points(
            account, order_id, event_id, points, purchase.occurred_at, release_at
        )
        accounts[customer] = account
        out.entries.update((e.entry_id, customer) for e in entries)


def _complaints(out: Expected, events: list[_Event], policy: CompensationPolicy) -> None:
    """One decision per complaint; a paying tier is one gift card."""
    customers: set[str] = set()
    complaints: set[str] = set()
    for item in events:
        complaint = item.event
        assert isinstance(complaint, Complaint)
        if complaint.customer_id in customers or complaint.complaint_id in complaints:
            raise WorkloadError(f"customer {complaint.customer_id} complains more than once")
        customers.add(complaint.customer_id)
        complaints.add(complaint.complaint_id)
        care = assess(Account(complaint.customer_id), complaint, policy, item.at, GRANTED)
        assert care.decision is not None
        out.effects["complaints"][complaint.event_id] = "decision"
        out.decisions[complaint.event_id] = care.decision.outcome
        if care.order is not None:
            out.gift_cards[care.order.reward_id] = care.order
