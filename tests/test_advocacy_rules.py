"""NPS, funnel, k-factor and recovery against hand-worked tables (pure, no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from processors.account import Account
from processors.advocacy import (
    AdvocacyPolicy,
    Fact,
    category,
    facts,
    follow_up,
    k_factor,
    nps,
    prune_advocacy,
    ratio,
    record_invite,
    record_survey,
    segment_of,
    window_counts,
)
from processors.compensation_state import ComplaintRecord
from processors.points_state import Order, PointsState
from processors.referral_state import Referee, ReferralState
from schemas.models import Referral, SurveyResponse

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
POLICY = AdvocacyPolicy()


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (0, "detractor"),
        (5, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_categories_at_the_boundaries(score, expected):
    assert category(score) == expected


@pytest.mark.parametrize(
    ("promoters", "passives", "detractors", "expected"),
    [
        (4, 3, 3, 10.0),  # 40% - 30%
        (3, 1, 0, 75.0),
        (2, 5, 3, -10.0),
        (10, 0, 0, 100.0),
        (0, 0, 5, -100.0),
        (1, 1, 1, 0.0),
        (0, 7, 0, 0.0),  # passives only: neither side
        (0, 0, 0, None),  # no answers: undefined, not 0
    ],
)
def test_nps_is_promoters_minus_detractors_in_percent(promoters, passives, detractors, expected):
    assert nps(promoters, passives, detractors) == expected


@pytest.mark.parametrize(
    ("invites", "referrers", "conversions", "expected"),
    [
        (10, 4, 2, 0.5),  # 2.5 invitations each x 20% converted
        (4, 2, 1, 0.5),
        (30, 10, 6, 0.6),
        (8, 8, 0, 0.0),
        (0, 0, 0, None),
        (5, 0, 1, None),
    ],
)
def test_k_factor_is_invites_per_referrer_times_conversion(
    invites, referrers, conversions, expected
):
    assert k_factor(invites, referrers, conversions) == (
        expected if expected is None else pytest.approx(expected)
    )


def test_ratios_are_undefined_without_a_denominator():
    assert ratio(1, 4) == 0.25
    assert ratio(0, 4) == 0.0
    assert ratio(3, 0) is None


@pytest.mark.parametrize(
    ("channel", "segment"),
    [
        ("email", "email"),
        (" Email ", "email"),
        ("APP", "app"),
        ("kiosk", "other"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_channels_become_a_bounded_segment(channel, segment):
    assert segment_of(channel, POLICY) == segment


def survey(score: int, at: datetime, **kw: Any) -> SurveyResponse:
    return SurveyResponse(
        event_id=kw.pop("event_id", f"s-{score}-{at.isoformat()}"), occurred_at=at,
        customer_id="ann", survey_id="nps-1", score=score, **kw,
    )  # fmt: skip


def invite(at: datetime, event_id: str | None = None) -> Referral:
    return Referral(event_id=event_id or f"i-{at.isoformat()}", occurred_at=at, type="invited",
                    referrer_id="ann", referral_code="ANN")  # fmt: skip


def test_a_scripted_survey_table_gives_the_hand_worked_nps_per_window():
    answers = [  # (score, hours ago, channel): worked by hand below
        (10, 0.1, "email"), (9, 0.2, "email"), (9, 0.5, "app"), (8, 0.7, None), (7, 0.9, "app"),
        (6, 2, "web"), (3, 5, "email"), (0, 30, "Kiosk"), (10, 24 * 6, "app"), (7, 24 * 20, "sms"),
        (2, 24 * 40, "email"),  # older than every window
    ]  # fmt: skip
    account = Account("ann")
    for score, hours, channel in answers:
        account = record_survey(account, survey(score, NOW - timedelta(hours=hours),
                                                channel=channel), POLICY)  # fmt: skip
    counts = window_counts(facts(account), NOW)

    def split(window: str) -> tuple[int, int, int]:
        promoters, passives, detractors = (
            sum(n for (key, w), n in counts.items() if w == window and key[:1] == ("nps",)
                and key[2] == cat)
            for cat in ("promoter", "passive", "detractor")
        )  # fmt: skip
        return promoters, passives, detractors

    assert split("1h") == (3, 2, 0)  # 10, 9, 9 | 8, 7
    assert split("24h") == (3, 2, 2)  # + 6, 3
    assert split("7d") == (4, 2, 3)  # + 0 (30 h), 10 (6 d)
    assert split("30d") == (4, 3, 3)  # + 7 (20 d); the 40-day 2 counts nowhere
    assert nps(*split("1h")) == 60.0
    assert nps(*split("24h")) == pytest.approx(100 * 1 / 7)
    assert nps(*split("30d")) == 10.0
    assert counts[(("nps", "other", "detractor"), "7d")] == 1  # "Kiosk"
    assert counts[(("nps", "unknown", "passive"), "1h")] == 1


def test_ces_is_counted_by_value_for_the_average():
    account = Account("ann")
    for i, (ces, hours) in enumerate([(7, 1), (5, 2), (2, 3), (None, 4)]):
        answer = survey(9, NOW - timedelta(hours=hours), ces=ces, event_id=f"s{i}", channel="app")
        account = record_survey(account, answer, POLICY)
    counts = window_counts(facts(account), NOW)
    scored = {int(k[2]): n for (k, w), n in counts.items() if k[0] == "ces" and w == "24h"}
    assert scored == {7: 1, 5: 1, 2: 1}
    assert sum(v * n for v, n in scored.items()) / sum(scored.values()) == pytest.approx(14 / 3)


def test_answers_and_invitations_are_remembered_once_and_pruned_after_the_longest_window():
    first = survey(9, NOW, event_id="s-1")
    account = record_survey(record_survey(Account("ann"), first, POLICY), first, POLICY)
    assert len(account.advocacy.surveys) == 1
    account = record_invite(account, invite(NOW, "i-1"), POLICY)
    assert record_invite(account, invite(NOW, "i-1"), POLICY) is account
    later = prune_advocacy(account, NOW + timedelta(days=30), POLICY)
    assert (len(later.advocacy.surveys), len(later.advocacy.invites)) == (1, 1)
    gone = prune_advocacy(account, NOW + timedelta(days=30, seconds=1), POLICY)
    assert (gone.advocacy.surveys, gone.advocacy.invites) == ((), ())


def test_only_the_newest_invitations_are_kept_beyond_the_cap():
    policy = AdvocacyPolicy(max_invites=3)
    account = Account("ann")
    for minutes in (5, 1, 4, 2, 3):
        account = record_invite(account, invite(NOW - timedelta(minutes=minutes)), policy)
    assert [i.at for i in account.advocacy.invites] == [
        NOW - timedelta(minutes=m) for m in (3, 2, 1)
    ]


def test_the_funnel_counts_invites_signups_conversions_and_referrers():
    referrer = Account("ann")
    for minutes in (10, 20, 30):
        referrer = record_invite(referrer, invite(NOW - timedelta(minutes=minutes)), POLICY)
    converted = Referee("rk-1", "ann", "su-1", NOW - timedelta(minutes=15), "approve", "converted",
                        "fa-1", converted_at=NOW - timedelta(minutes=5))  # fmt: skip
    attributed = replace(converted, referral_key="rk-2", status="attributed", converted_at=None)
    old = replace(converted, referral_key="rk-3", signed_up_at=NOW - timedelta(days=3),
                  converted_at=NOW - timedelta(days=2))  # fmt: skip
    accounts = [referrer, *(Account(f"r{i}", referral=ReferralState(r)) for i, r in
                            enumerate((converted, attributed, old)))]  # fmt: skip
    counts = window_counts([f for a in accounts for f in facts(a)], NOW)
    stage = {s: (counts.get((("funnel", s), "1h"), 0), counts.get((("funnel", s), "7d"), 0))
             for s in ("invites", "signups", "conversions")}  # fmt: skip
    assert stage == {"invites": (3, 3), "signups": (2, 3), "conversions": (1, 2)}
    assert counts[(("referrer",), "1h")] == 1
    assert k_factor(3, 1, 1) == pytest.approx(1.0)
    assert ratio(1, 2) == 0.5  # conversion rate over the hour


def record(outcome: str, at: datetime, **kw: Any) -> ComplaintRecord:
    return ComplaintRecord(kw.pop("complaint_id", f"cmp-{outcome}-{at.isoformat()}"), at, outcome,
                           "x", ("e",), **kw)  # fmt: skip


def test_follow_up_finds_the_next_answer_and_a_repurchase_in_any_arrival_order():
    complained = NOW - timedelta(days=10)
    account = Account("ann", complaints={"c1": record("gift_card", complained, complaint_id="c1")})
    account = record_survey(account, survey(3, complained - timedelta(days=1)), POLICY)  # before
    account = record_survey(account, survey(9, complained + timedelta(days=2)), POLICY)
    account = record_survey(account, survey(4, complained + timedelta(days=5)), POLICY)  # not next
    orders = {
        "referral:k:referee": Order("referral:k:referee", "e", complained + timedelta(days=1),
                                    500, 500, 500, NOW),
        "o-late": Order("o-late", "e", complained + timedelta(days=31), 100, 1, 0, NOW),
        "o-1": Order("o-1", "e", complained + timedelta(days=3), 100, 1, 0, NOW),
    }  # fmt: skip
    done = follow_up(replace(account, points=PointsState(orders=orders)), POLICY).complaints["c1"]
    assert (done.next_score, done.repurchased_at) == (9, complained + timedelta(days=3))
    pruned = prune_advocacy(replace(account, complaints={"c1": done}), NOW + timedelta(days=60),
                            POLICY)  # fmt: skip
    assert follow_up(pruned, POLICY).complaints["c1"].next_score == 9  # kept once found


def test_recovery_by_arm_matches_the_hand_worked_table():
    at = NOW - timedelta(days=3)
    table = [  # (outcome, next score, repurchased)
        ("gift_card", 10, True), ("gift_card", 9, False), ("gift_card", 7, True),
        ("gift_card", None, False), ("discount", 8, False), ("discount", 3, True),
        ("blocked", 6, False), ("blocked", None, True), ("none", 10, True),
    ]  # fmt: skip
    accounts = [
        Account(f"c{i}", complaints={"k": record(o, at, complaint_id="k", next_score=s,
                                                 repurchased_at=at if r else None)})
        for i, (o, s, r) in enumerate(table)
    ]  # fmt: skip
    counts = window_counts([f for a in accounts for f in facts(a)], NOW)

    def stages(arm: str) -> dict[str, int]:
        return {k[2]: n for (k, w), n in counts.items() if k[:2] == ("recovery", arm) and w == "7d"}

    assert stages("gift_card") == {"decided": 4, "surveyed": 3, "promoter": 2,
                                   "passive_or_better": 3, "repurchased": 2}  # fmt: skip
    assert stages("discount") == {"decided": 2, "surveyed": 2, "passive_or_better": 1,
                                  "repurchased": 1}  # fmt: skip
    assert stages("none") == {"decided": 2, "surveyed": 1, "repurchased": 1}  # "none" tier: out
    assert ratio(2, 3) == pytest.approx(0.667, abs=1e-3)  # gift card: promoter share


def test_a_fact_counts_in_a_window_from_its_start_inclusive():
    found = [
        Fact(("x",), NOW - timedelta(hours=1)),
        Fact(("x",), NOW - timedelta(hours=1, seconds=1)),
    ]
    counts = window_counts(found, NOW)
    assert (counts[(("x",), "1h")], counts[(("x",), "24h")]) == (1, 2)
