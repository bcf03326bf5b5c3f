"""The command line every peer program takes (one shape, so the harness starts them alike)."""

from __future__ import annotations

import argparse


def peer_args(description: str) -> argparse.Namespace:
    """Brokers, the input and output topics, the consumer group (or flow name), a state dir and
    the commit (snapshot) interval in seconds."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--brokers", required=True, help="bootstrap servers, comma-separated")
    p.add_argument("--input", required=True, help="input topic (purchases, keyed by customer)")
    p.add_argument("--output", required=True, help="ledger output topic")
    p.add_argument("--group", required=True, help="consumer group / application id")
    p.add_argument("--state-dir", required=True, help="local state directory (created)")
    p.add_argument("--commit-interval", type=float, default=1.0, help="seconds")
    return p.parse_args()
