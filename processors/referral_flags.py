"""A referral found suspicious after it was scored: a ring through it, or late evidence (pure).

The fraud scorer looks at a referral twice, at sign-up and at conversion, with what the identity
index knows then. What it learns later (a referral cycle closed through another edge, a signal
the other party shows days later) arrives as a command on the referee's partition, where the
referral lives, and is applied by `flag_referral`:

| the referral is | review | reject |
|---|---|---|
| attributed (not converted) | its conversion waits for an operator | rejected |
| held for an operator | stays held | rejected |
| converted, rewards on hold | both sides taken back (`cancelled`) | the same, and remembered |
| converted, rewards released | `kept`, reason `after_release`, for operators | the same |

Each row happens once: a flag no stricter than the referral's decision changes nothing, so a
redelivered or repeated command repeats no output.
"""

from __future__ import annotations

from msgspec.structs import replace

from processors.account import Account
from processors.fraud import strictest
from processors.referral_cancels import cancel_referrer_command, reverse_all
from processors.referral_records import both_outcomes, side_outcome
from processors.referrals import Step, referral_order_id, with_referee
from schemas.models import ReferralCommand


def flag_referral(account: Account, cmd: ReferralCommand, decision: str, reason: str) -> Step:
    """Apply a later `review` or `reject` to the account's referral named by `cmd`."""
    referral = account.referral.referee
    if referral is None or referral.referral_key != cmd.referral_key:
        return Step(account)
    stricter = strictest(referral.decision, decision)  # type: ignore[arg-type]  # Decision values kept as str
    if stricter == referral.decision or referral.status in {"cancelled", "rejected"}:
        return Step(account)
    flagged = with_referee(account, replace(referral, decision=stricter))
    if referral.status in {"attributed", "held"}:
        if stricter != "reject":
            return Step(flagged)
        return _rejected(flagged, cmd, reason)
    order_id = referral_order_id(referral.referral_key, "referee")
    order = account.points.orders.get(order_id)
    if order is None or order.pending <= 0:  # released: they stay paid; operators are told
        kept = side_outcome(account.customer_id, referral, "referee", "kept", 0, cmd,
                            "after_release")  # fmt: skip
        return Step(flagged, rewards=(kept,))
    return _taken_back(flagged, cmd, reason, order_id)


def _rejected(account: Account, cmd: ReferralCommand, reason: str) -> Step:
    referral = account.referral.referee
    assert referral is not None
    account = with_referee(account, replace(referral, status="rejected"))
    rewards = both_outcomes(account.customer_id, referral, "rejected", 0, cmd, reason)
    return Step(account, rewards=rewards, rejected=(referral.referrer_id, account.customer_id))


def _taken_back(account: Account, cmd: ReferralCommand, reason: str, order_id: str) -> Step:
    """Reverse the referee's held points; the referrer's go back by command."""
    referral = account.referral.referee
    assert referral is not None
    referral = replace(referral, status="cancelled")
    outcome = reverse_all(with_referee(account, referral), order_id, cmd)
    command = cancel_referrer_command(
        account.customer_id, referral, cmd.event_id, cmd.occurred_at,
        referral.order_id or order_id, cmd.alert_id, reason,
    )  # fmt: skip
    reward = side_outcome(account.customer_id, referral, "referee", "cancelled", 0, cmd, reason)
    rejected = (referral.referrer_id, account.customer_id) if referral.decision == "reject" else ()
    return replace(outcome, commands=(command,), rewards=(reward,), rejected=rejected)
