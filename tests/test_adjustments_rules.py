"""Pure tests of manual adjustments and erasure: `processors.adjustments` through `settle`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from processors.account import Account, is_blank
from processors.adjustments import ADJUSTMENT_MEMORY, adjust, forget
from processors.expiry import ExpiryPolicy
from processors.ids import stable_id
from processors.points import EarnRate, PointsPolicy
from processors.points_state import PointsState
from processors.settlement import Policies, settle
from processors.tiers import Tier, TierPolicy
from schemas.models import AccountCommand, Purchase
from schemas.outputs import Erasure, PointsLedgerEntry
from streams.points_records import ledger_json

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = PointsPolicy(rates={"EUR": EarnRate(1, 100)}, hold=14 * DAY)


def adjustment(points: int, adj: str = "adj-1", *, event: str | None = None) -> AccountCommand:
    return AccountCommand(event_id=event or f"ac-{adj}", occurred_at=T0, command="adjust",
                          customer_id="c-1", operator="ops-ana", reason="goodwill",
                          points=points, adjustment_id=adj)  # fmt: skip


def forgetting(event: str = "ac-f1") -> AccountCommand:
    return AccountCommand(event_id=event, occurred_at=T0, command="forget", customer_id="c-1",
                          operator="dpo-carla")  # fmt: skip


def buy(order: str, cents: int, *, day: float = 0) -> Purchase:
    return Purchase(event_id=f"p-{order}", occurred_at=T0 + day * DAY, customer_id="c-1",
                    type="purchase", order_id=order, amount_cents=cents,
                    currency="EUR")  # fmt: skip


def with_available(points: int) -> Account:
    return Account("c-1", PointsState(available=points, sequence=3))


def test_credit_adds_available_points_with_who_and_why_on_the_entry() -> None:
    outcome = adjust(with_available(10), adjustment(250))
    assert (outcome.account.points.pending, outcome.account.points.available) == (0, 260)
    (entry,) = outcome.entries
    assert entry.kind == "adjustment"
    assert (entry.available_delta, entry.available_after, entry.sequence) == (250, 260, 4)
    assert (entry.operator, entry.reason) == ("ops-ana", "goodwill")
    assert entry.order_id == "adjustment:adj-1"
    assert entry.source_event_id == "ac-adj-1"
    assert not outcome.anomalies


def test_debit_within_the_balance_removes_it() -> None:
    outcome = adjust(with_available(100), adjustment(-40))
    assert outcome.account.points.available == 60
    assert outcome.entries[0].available_delta == -40
    assert not outcome.anomalies


def test_debit_beyond_the_balance_stops_at_zero_and_reports_the_shortfall() -> None:
    outcome = adjust(with_available(50), adjustment(-120))
    assert outcome.account.points.available == 0
    assert outcome.entries[0].available_delta == -50
    (anomaly,) = outcome.anomalies
    assert (anomaly.kind, anomaly.points, anomaly.order_id) == (
        "adjustment_shortfall", 70, "adjustment:adj-1"
    )  # fmt: skip
    assert anomaly.anomaly_id == stable_id(
        "pa", "adjustment_shortfall", "c-1", "adjustment:adj-1", "ac-adj-1"
    )


def test_debit_of_an_empty_balance_is_only_an_anomaly() -> None:
    outcome = adjust(with_available(0), adjustment(-5))
    assert not outcome.entries
    assert outcome.anomalies[0].points == 5
    assert outcome.account.points.adjustments == ("adj-1",)


def test_the_same_adjustment_id_is_applied_once_even_from_another_event() -> None:
    once = adjust(with_available(0), adjustment(30))
    again = adjust(once.account, adjustment(30, event="ac-retry"))
    assert again.account is once.account
    assert not again.entries
    assert not again.anomalies


def test_remembered_adjustment_ids_are_bounded_oldest_forgotten_first() -> None:
    account = with_available(0)
    for n in range(ADJUSTMENT_MEMORY + 5):
        account = adjust(account, adjustment(1, f"adj-{n}")).account
    assert len(account.points.adjustments) == ADJUSTMENT_MEMORY
    assert account.points.adjustments[0] == "adj-5"
    assert account.points.available == ADJUSTMENT_MEMORY + 5


def test_settle_applies_adjustments_in_order_with_purchases() -> None:
    done = settle(Account("c-1"), [buy("o-1", 1000), adjustment(-3), adjustment(7, "adj-2")],
                  T0, POLICY)  # fmt: skip
    assert [e.kind for e in done.entries] == ["earn", "adjustment"]
    assert (done.account.points.pending, done.account.points.available) == (10, 7)
    assert [a.kind for a in done.anomalies] == ["adjustment_shortfall"]
    assert not done.credits  # an adjustment is no `rewards-issued` points reward


def test_ledger_record_of_an_adjustment_matches_the_public_model() -> None:
    (entry,) = adjust(with_available(0), adjustment(5)).entries
    record = msgspec.json.decode(ledger_json(entry), type=PointsLedgerEntry)
    assert (record.operator, record.reason, record.kind) == ("ops-ana", "goodwill", "adjustment")
    (earned,) = settle(Account("c-1"), [buy("o-1", 500)], T0, POLICY).entries
    assert b"operator" not in ledger_json(earned)  # other kinds unchanged on the wire


def test_forget_leaves_an_empty_account_and_an_erasure_without_the_customer_id() -> None:
    full = settle(Account("c-1"), [buy("o-1", 1000), adjustment(5)], T0, POLICY).account
    erased = forget(full, forgetting(), T0 + DAY)
    assert erased.account == Account("c-1")
    request = erased.erasure
    assert request.erasure_id == stable_id("er", "ac-f1")
    assert (request.operator, request.requested_at, request.erased_at) == (
        "dpo-carla", T0, T0 + DAY
    )  # fmt: skip
    assert "c-1" not in request.erasure_id
    assert "customer_id" not in {f.name for f in msgspec.structs.fields(Erasure)}


def test_events_after_a_forget_start_a_fresh_account() -> None:
    start = settle(Account("c-1"), [buy("o-1", 1000), adjustment(5)], T0, POLICY).account
    done = settle(start, [forgetting(), buy("o-2", 300, day=1), adjustment(5)], T0 + DAY, POLICY)
    assert [e.erasure_id for e in done.erasures] == [stable_id("er", "ac-f1")]
    assert done.account.points.orders.keys() == {"o-2"}
    assert (
        done.account.points.pending,
        done.account.points.available,
        done.account.points.sequence,
    ) == (3, 5, 2)
    assert done.account.points.adjustments == ("adj-1",)  # the erased ids are gone: applied again


def test_forget_alone_settles_to_the_empty_account_and_nothing_is_released_after_it() -> None:
    start = settle(Account("c-1"), [buy("o-1", 1000)], T0, POLICY).account
    done = settle(start, [forgetting()], T0 + 20 * DAY, POLICY, times=[T0 + DAY])
    assert done.account == Account("c-1")
    assert not done.entries  # the hold ended after the erasure: the order is gone with it
    assert len(done.erasures) == 1


def test_forget_also_drops_the_tier_and_leaves_nothing_for_the_tier_clock() -> None:
    policies = Policies(POLICY, tiers=TierPolicy((Tier("gold", 1, 150),)))
    start = settle(Account("c-1"), [buy("o-1", 1000)], T0, policies).account
    assert start.tier.name == "gold"
    done = settle(start, [forgetting()], T0 + 400 * DAY, policies, times=[T0 + DAY])
    assert done.account == Account("c-1")  # staged as a tombstone


def test_forget_with_tiers_and_expiry_on_leaves_a_blank_account_stored_as_a_tombstone() -> None:
    expiry = ExpiryPolicy(lifetime=365 * DAY, inactivity=365 * DAY, warning=30 * DAY)
    policies = Policies(POLICY, tiers=TierPolicy((Tier("gold", 1, 150),)), expiry=expiry)
    start = settle(Account("c-1"), [buy("o-1", 1000), adjustment(40)], T0, policies).account
    assert start.expiry.lots and start.tier.name == "gold"
    done = settle(start, [forgetting()], T0 + 2 * DAY, policies, times=[T0 + DAY])
    assert done.account != Account("c-1")  # the expiry clock started again at the tick
    assert is_blank(done.account)  # but nothing of the customer is left: a tombstone
    assert not is_blank(start)
    assert not is_blank(
        settle(done.account, [adjustment(5, "adj-2")], T0 + 3 * DAY, policies).account
    )
