"""The unit of work every benchmarked system does per record: settle one purchase (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from processors.account import Account
from processors.points import EarnRate, PointsPolicy
from processors.settlement import Policies, settle
from schemas.codec import Codec
from schemas.models import Purchase
from streams.points_records import ledger_json

POLICIES = Policies(
    PointsPolicy(
        rates={"EUR": EarnRate(1, 100), "USD": EarnRate(1, 100), "GBP": EarnRate(1, 100)},
        hold=timedelta(days=14),
    )
)
_codec = Codec()
_decoder = msgspec.msgpack.Decoder(Account)
_encoder = msgspec.msgpack.Encoder()


def apply(
    state: bytes | None, value: bytes, timestamp_ms: int
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Settle the purchase or refund in `value` against the account in `state` (msgpack, None for
    a new customer) at the record's timestamp: the new state and one (customer id, ledger JSON)
    output per ledger entry."""
    event = _codec.decode("purchases", value)
    if not isinstance(event, Purchase):
        raise TypeError(f"not a purchase: {type(event).__name__}")
    account = Account(event.customer_id) if state is None else _decoder.decode(state)
    at = datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    done = settle(account, [event], at, POLICIES)
    key = event.customer_id.encode()
    return _encoder.encode(done.account), [(key, ledger_json(entry)) for entry in done.entries]
