"""`rewards adjust` and `rewards forget`: operators' commands on one customer's account."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.account_commands import publish_adjustment, publish_forget
from streams.settings import Settings


def cmd_adjust(settings: Settings, args: argparse.Namespace) -> int:
    """Add or remove a customer's available points by hand (publishes to account-commands)."""
    record = publish_adjustment(
        settings, args.customer, args.points, args.reason, args.operator, args.adjustment_id
    )
    print(
        f"adjustment {record.adjustment_id} of {record.points} points for customer "
        f"{record.customer_id} published as {record.event_id}"
    )
    return 0


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    """Erase a customer's account and identity entries (GDPR Art. 17; account-commands)."""
    record = publish_forget(settings, args.customer, args.operator, args.reason)
    print(f"erasure of customer {record.customer_id} published as {record.event_id}")
    return 0


def add_account_commands(sub: Any) -> None:
    """Register `adjust` and `forget` on the CLI's subparsers."""
    adjust = sub.add_parser("adjust", help=cmd_adjust.__doc__)
    adjust.add_argument("--customer", required=True, help="the customer's id")
    adjust.add_argument(
        "--points", required=True, type=int, help="points to add (negative: to remove)"
    )
    adjust.add_argument("--reason", required=True, help="why (recorded, up to 500 characters)")
    adjust.add_argument("--operator", required=True, help="who adjusts (recorded)")
    adjust.add_argument(
        "--adjustment-id", help="retry-safe key: the same id is applied once (default: new)"
    )
    adjust.set_defaults(run=cmd_adjust)
    forget = sub.add_parser("forget", help=cmd_forget.__doc__)
    forget.add_argument("--customer", required=True, help="the customer's id")
    forget.add_argument("--operator", required=True, help="who requests the erasure (recorded)")
    forget.add_argument("--reason", help="why, e.g. the ticket (not copied to the erasure record)")
    forget.set_defaults(run=cmd_forget)
