"""Bytewax peer: Kafka in and out (bytewax.connectors.kafka), a keyed stateful_map, recovery on.

State is durable through Bytewax's own recovery: SQLite partitions in `<state-dir>/recovery`
(`bytewax.recovery.init_db_dir`, one partition), snapshotted at the end of every epoch
(`epoch_interval` = the harness's commit interval). That works in 0.21.1 with nothing but a
local directory, so it is on: without it the state would live only in memory and the comparison
with the other systems (RocksDB plus a changelog) would flatter Bytewax. The Kafka source does not
commit consumer-group offsets (its offsets are snapshotted with the state), so the harness reads
the durable input position from the recovery store instead of a consumer group.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from ledger_work import apply
from peer_common import peer_args

Message: TypeAlias = KafkaSourceMessage[bytes | None, bytes | None]
Outputs: TypeAlias = list[tuple[bytes, bytes]]


def keyed(msg: Message) -> tuple[str, Message]:
    """Bytewax keys are strings: the customer id."""
    return (msg.key or b"").decode(), msg


def settle(state: bytes | None, msg: Message) -> tuple[bytes, Outputs]:
    """The shared unit of work, with the record's Kafka timestamp."""
    return apply(state, msg.value or b"", msg.timestamp[1])


def sink_messages(item: tuple[str, Outputs]) -> list[KafkaSinkMessage[bytes, bytes]]:
    """One Kafka record per ledger entry."""
    return [KafkaSinkMessage(key, value) for key, value in item[1]]


def fail(_step: str, err: KafkaError[bytes | None, bytes | None]) -> None:
    """A consumer error stops the flow (KafkaSource would, with raise_on_errors)."""
    raise RuntimeError(f"kafka error: {err.err}")


def build(brokers: list[str], source: str, sink: str) -> Dataflow:
    """input -> key -> stateful_map -> flat_map -> output."""
    flow = Dataflow("ledger")
    messages = kop.input("in", flow, brokers=brokers, topics=[source])
    op.inspect("errors", messages.errs, fail)
    accounts = op.stateful_map("accounts", op.map("key", messages.oks, keyed), settle)
    kop.output("out", op.flat_map("records", accounts, sink_messages), brokers=brokers, topic=sink)
    return flow


def main() -> None:
    """Run until killed, one worker, snapshots every commit interval."""
    args = peer_args(__doc__ or "")
    recovery = Path(args.state_dir) / "recovery"
    if not recovery.exists():
        recovery.mkdir(parents=True)
        init_db_dir(recovery, 1)
    cli_main(
        build(args.brokers.split(","), args.input, args.output),
        workers_per_process=1,
        epoch_interval=timedelta(seconds=args.commit_interval),
        recovery_config=RecoveryConfig(recovery),
    )


if __name__ == "__main__":
    main()
