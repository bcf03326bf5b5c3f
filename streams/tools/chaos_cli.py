"""The `rewards chaos` command line (argparse only: the CLI loads it without the soak's code)."""

from __future__ import annotations

import argparse


def chaos_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the soak's options to its sub-parser."""
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rate", type=float, default=400.0, help="events/s")
    parser.add_argument("--kill-every", default="15-20", help="s between worker kills; 0: none")
    parser.add_argument("--broker-outage", default="30-45", help="s the coordinator is down")
    parser.add_argument("--broker-kills", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--redis-outage", default="20-30", help="s Redis is down; 0: none")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the verdict as JSON here")
    parser.add_argument("--work-dir", help="workers' data and logs (default: a new temp dir)")
    return parser
