"""The soak's rules: the processors' policies built from the soak's settings, for the oracle."""

from __future__ import annotations

from processors.compensation import CompensationPolicy, Tier
from processors.points import EarnRate, Multiplier, PointsPolicy
from processors.referrals import Cap, ReferralPolicy
from processors.settlement import Policies
from streams.settings import Settings


def policies(settings: Settings) -> Policies:
    """The rules' configuration from the soak's settings (built here, not by the worker's code)."""
    points = PointsPolicy(
        rates={c: EarnRate(p, per) for c, (p, per) in settings.points_rates.items()},
        hold=settings.points_hold,
        multipliers=tuple(
            Multiplier(m.name, m.percent, m.starts_at, m.ends_at)
            for m in settings.points_multipliers
        ),
        order_retention=settings.points_order_retention,
    )
    referrals = ReferralPolicy(
        referrer_points=settings.referral_referrer_points,
        referee_points=settings.referral_referee_points,
        min_amount_cents=dict(settings.referral_min_amounts),
        window=settings.referral_window,
        hold=settings.referral_hold or settings.points_hold,
        caps=tuple(Cap(c.period, c.max_count, c.max_points) for c in settings.referral_caps),
    )
    tiers = tuple(
        Tier(
            t.name,
            frozenset(t.severities),
            t.amount_cents,
            t.currency,
            frozenset(t.categories),
            t.min_spend_cents,
        )
        for t in settings.compensation_tiers
    )
    care = CompensationPolicy(
        tiers,
        settings.compensation_customer_period,
        settings.compensation_discount_share,
        settings.compensation_experiment,
    )
    return Policies(points, referrals, care)
