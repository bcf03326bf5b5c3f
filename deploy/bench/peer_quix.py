"""Quix Streams peer: Application + StreamingDataFrame, a stateful apply per record."""

from __future__ import annotations

import logging

import orjson
from ledger_work import apply
from peer_common import peer_args
from quixstreams import Application, State
from quixstreams.app import ProcessingGuarantee
from quixstreams.state.rocksdb import RocksDBOptions

ACCOUNT = b"account"


def _dumps(value: object) -> bytes:
    """State values (and our state key) are bytes already: stored as they are, not as JSON
    (Quix's default orjson cannot hold bytes); anything else as Quix would (orjson)."""
    return value if isinstance(value, bytes) else orjson.dumps(value)


def _loads(value: bytes) -> bytes:
    return value


def settle(value: bytes, key: bytes, timestamp: int, _headers: object, state: State) -> list[bytes]:
    """The shared unit of work; the state is scoped to the message key (the customer id)."""
    new, outputs = apply(state.get(ACCOUNT), value, timestamp)
    state.set(ACCOUNT, new)
    if any(out_key != key for out_key, _ in outputs):
        raise ValueError("an output keyed by another customer")  # to_topic keeps the message key
    return [ledger for _, ledger in outputs]


def main(guarantee: ProcessingGuarantee = "at-least-once") -> None:
    """Run until SIGTERM (RocksDB state with its changelog topic; at-least-once: the defaults)."""
    args = peer_args(__doc__ or "")
    app = Application(
        processing_guarantee=guarantee,
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval,
        state_dir=args.state_dir,
        rocksdb_options=RocksDBOptions(dumps=_dumps, loads=_loads),
        loglevel=logging.WARNING,
    )
    source = app.topic(args.input, value_deserializer="bytes", key_deserializer="bytes")
    sink = app.topic(args.output, value_serializer="bytes", key_serializer="bytes")
    sdf = app.dataframe(source)
    sdf = sdf.apply(settle, stateful=True, metadata=True, expand=True)
    sdf.to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
