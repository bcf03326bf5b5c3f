"""`rewards review` and `rewards ledger`: the review queue and the ledger's rebuild-and-verify."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from streams.settings import Settings


def cmd_review_list(settings: Settings, args: argparse.Namespace) -> int:
    """List the referrals waiting for a decision, oldest first, with their alerts' reasons."""
    from streams.cli.review_queue import review_queue, summary_line

    queue = review_queue(settings, timeout_s=args.timeout)
    for entry in queue:
        print(summary_line(entry))
    pending = sum(1 for e in queue if e.pending)
    print(f"{len(queue)} waiting for a decision ({pending} decided, pending)")
    return 0


def cmd_review_show(settings: Settings, args: argparse.Namespace) -> int:
    """Show one referral waiting for a decision in full: the referral, the alert, the rules."""
    from streams.cli.review_queue import detail_lines, review_queue

    found = [
        e for e in review_queue(settings, timeout_s=args.timeout) if e.referee_id == args.referee
    ]
    if not found:
        print(f"rewards: referee {args.referee} is not waiting for a decision", file=sys.stderr)
        return 1
    print("\n".join(detail_lines(found[0])))
    return 0


def cmd_ledger_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Rebuild every balance from points-ledger; compare with the account table and Redis."""
    from streams.cli.ledger_verify import verify

    progress = not args.quiet and sys.stderr.isatty()
    found = verify(settings, progress=progress, timeout_s=args.timeout)
    print(
        f"ledger: {found.records} records, {found.entries} distinct entries, "
        f"{found.customers} customers; table: {found.compared} accounts compared; "
        f"Redis: {found.mirrored} balances"
    )
    if found.unstored:
        shown = ", ".join(found.unstored[: args.limit])
        print(f"{len(found.unstored)} customers in the ledger, erased or not yet stored: {shown}")
    for line in found.differences[: args.limit]:
        print(f"DIFFERENCE {line}")
    if found.differences:
        print(f"FAIL: {len(found.differences)} differences (first {args.limit} listed)")
        return 1
    print("OK: every balance matches the ledger")
    return 0


def add_ops_commands(sub: Any) -> None:
    """Register `review list|show` and `ledger verify`."""
    review = sub.add_parser("review", help="the referrals waiting for an operator's decision")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    listing = review_sub.add_parser("list", help=cmd_review_list.__doc__)
    show = review_sub.add_parser("show", help=cmd_review_show.__doc__)
    show.add_argument("--referee", required=True, help="the referee's customer id")
    for p, run in ((listing, cmd_review_list), (show, cmd_review_show)):
        p.add_argument("--timeout", type=float, default=60.0, help="seconds to read the topics")
        p.set_defaults(run=run)
    ledger = sub.add_parser("ledger", help="the points ledger, checked against the balances")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    check = ledger_sub.add_parser("verify", help=cmd_ledger_verify.__doc__)
    check.add_argument("--limit", type=int, default=20, help="differences listed at most")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.add_argument("--timeout", type=float, default=120.0, help="seconds to read each topic")
    check.set_defaults(run=cmd_ledger_verify)
