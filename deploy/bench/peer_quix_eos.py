"""Quix Streams peer in its exactly-once mode: `peer_quix`, `processing_guarantee="exactly-once"`.

A Kafka transaction per commit interval, as this worker commits its outputs, state and offsets.
"""

from __future__ import annotations

from peer_quix import main

if __name__ == "__main__":
    main("exactly-once")
