"""Domain decisions of the points ledger as public v1 records (`schemas.outputs`)."""

from __future__ import annotations

import msgspec

from processors.ledger import Anomaly, LedgerEntry
from processors.settlement import PointsCredit
from schemas.outputs import PointsAnomaly, PointsLedgerEntry, RewardIssued


def ledger_record(entry: LedgerEntry) -> PointsLedgerEntry:
    """A `points-ledger` record."""
    return PointsLedgerEntry(
        entry_id=entry.entry_id,
        customer_id=entry.customer_id,
        sequence=entry.sequence,
        kind=entry.kind,
        pending_delta=entry.pending_delta,
        available_delta=entry.available_delta,
        pending_after=entry.pending_after,
        available_after=entry.available_after,
        source_event_id=entry.source_event_id,
        order_id=entry.order_id,
        occurred_at=entry.occurred_at,
    )


_json = msgspec.json.Encoder()


def ledger_json(entry: LedgerEntry) -> bytes:
    """A `points-ledger` record as JSON: the entry itself, whose fields are the record's, in the
    record's order (tested), so no copy is made."""
    return _json.encode(entry)


def reward_record(credit: PointsCredit) -> RewardIssued:
    """A `rewards-issued` record of kind `points`."""
    return RewardIssued(
        reward_id=credit.reward_id,
        customer_id=credit.customer_id,
        kind="points",
        reason=credit.reason,
        source_event_id=credit.source_event_id,
        issued_at=credit.issued_at,
        points=credit.points,
        order_id=credit.order_id,
    )


def anomaly_record(customer_id: str, anomaly: Anomaly) -> PointsAnomaly:
    """A `points-anomalies` record."""
    return PointsAnomaly(
        anomaly_id=anomaly.anomaly_id,
        customer_id=customer_id,
        kind=anomaly.kind,
        order_id=anomaly.order_id,
        points=anomaly.points,
        source_event_id=anomaly.source_event_id,
        detected_at=anomaly.occurred_at,
        amount_cents=anomaly.amount_cents,
        currency=anomaly.currency,
    )


def points_moved(entry: LedgerEntry) -> int:
    """How many points an entry moved (a release moves them once, from pending to available)."""
    if entry.kind == "release":
        return entry.available_delta
    return abs(entry.pending_delta) + abs(entry.available_delta)
