"""Faust peer: a naive agent with a RocksDB Table, written the way the Faust docs show it."""

from __future__ import annotations

import sys
from typing import Any

import faust  # noqa: TID251 - a benchmark peer, not processors/
from ledger_work import apply
from peer_common import peer_args

args = peer_args(__doc__ or "")
app = faust.App(
    args.group,
    broker=[f"kafka://{b}" for b in args.brokers.split(",")],
    store="rocksdb://",  # rocksdict (python-rocksdb is not installed)
    datadir=args.state_dir,
    broker_commit_interval=args.commit_interval,
    consumer_auto_offset_reset="earliest",
    topic_partitions=4,
    web_enabled=False,
    autodiscover=False,
)
source = app.topic(args.input, key_type=bytes, value_type=bytes, key_serializer="raw",
                   value_serializer="raw")  # fmt: skip
sink = app.topic(args.output, key_type=bytes, value_type=bytes, key_serializer="raw",
                 value_serializer="raw")  # fmt: skip
accounts = app.Table("accounts", key_type=bytes, value_type=bytes, partitions=4)  # bytes: raw codec


@app.agent(source)
async def ledger(stream: Any) -> None:
    """Per record: table get, the shared unit of work, table set, send the outputs."""
    async for event in stream.events():
        timestamp_ms = round(event.message.timestamp * 1000)  # Faust keeps seconds as a float
        state, outputs = apply(accounts.get(event.key), event.value, timestamp_ms)
        accounts[event.key] = state
        for key, value in outputs:
            await sink.send(key=key, value=value)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()
