"""The fulfilment agent's work: order granted gift cards from the provider, exactly once.

Idempotent end to end without relying on Kafka transactions, per order:
1. our own record in Redis says what was requested and what came back
   (`<app>:giftcard:<idempotency key>`, a hash: state requested | issued | failed, the provider's
   order id, claim URL and code reference, issued_at); an order already `issued` is announced
   again from the record and the provider is not called;
2. otherwise the record is marked `requested` and the provider is asked with the order's
   idempotency key (derived from the complaint id): a retry, a redelivery after a crash between
   the provider's answer and the commit, or a restart asks again with the same key, and the
   provider answers with the order it already made;
3. the answer is recorded (`issued`), then announced on `rewards-issued` (kind gift_card, the
   order's deterministic reward_id) in the transaction that commits the order's offset.

A permanent provider error (4xx) is recorded as `failed` and dead-lettered with the reason;
transient errors (5xx, timeouts) are retried with backoff by the client, and if they last beyond
its bounded attempts the order is dead-lettered as `provider_unavailable`. Either way the event id
is forgotten, so re-publishing the dead letter's original bytes to `gift-card-orders` orders again
with the same key. The budget reserved for a failed order stays reserved (never over-spent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.models import GiftCardOrder
from schemas.outputs import GiftCard, RewardIssued
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.adapters.giftcard_client import (
    GiftCardProvider,
    GiftCardRequest,
    ProviderRejected,
    ProviderUnavailable,
)
from streams.adapters.redis_client import RedisClient
from streams.adapters.redis_retry import RedisRetry
from streams.compensation import COMPENSATION_REASON
from streams.ingest import Admitted, Rejected
from streams.transaction import Transaction

RECORD_TTL_S = 400 * 86_400


@dataclass(frozen=True, slots=True)
class Answer:
    """What to record of the provider's answer, and the dead-letter reason if it failed."""

    record: dict[str, str]
    failure: str | None = None


class OrderRecords:
    """What was requested from the provider and what came back, per idempotency key (Redis).

    One round trip per batch for the reads and one per batch for each round of writes."""

    def __init__(self, redis: RedisClient, *, namespace: str, retry: RedisRetry) -> None:
        self._redis = redis
        self._ns = namespace
        self._retry = retry

    def _key(self, idempotency_key: str) -> str:
        return f"{self._ns}:giftcard:{idempotency_key}"

    async def get(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """Each key's record fields (empty if that order was never requested)."""

        async def read() -> list[dict[bytes, bytes]]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(self._key(key))
            found: list[dict[bytes, bytes]] = await pipe.execute()
            return found

        raw = await self._retry.call(read) if keys else []
        return [{k.decode(): v.decode() for k, v in fields.items()} for fields in raw]

    async def put(self, records: Mapping[str, Mapping[str, str]]) -> None:
        """Update each key's record (and keep it for RECORD_TTL_S)."""

        async def write() -> None:
            pipe = self._redis.pipeline(transaction=False)
            for key, fields in records.items():
                pipe.hset(self._key(key), mapping=dict(fields))  # type: ignore[arg-type]  # redis-py's key type is invariant
                pipe.expire(self._key(key), RECORD_TTL_S)
            await pipe.execute()

        if records:
            await self._retry.call(write)


class GiftCardFulfilment:
    """Orders each granted gift card once and announces it on `rewards-issued`."""

    def __init__(
        self,
        *,
        provider: GiftCardProvider,
        provider_name: str,
        records: OrderRecords,
        emitter: Transaction,
        metrics: CompensationMetrics,
    ) -> None:
        self._provider = provider
        self._provider_name = provider_name
        self._records = records
        self._emitter = emitter
        self._metrics = metrics

    async def fulfil_orders(self, admitted: Sequence[Admitted]) -> Sequence[Rejected]:
        """Order the batch's gift cards not yet issued (concurrently; the client bounds the
        requests in flight), record the answers, announce every issued card, and wait until the
        broker has the announcements."""
        orders = [_order(item) for item in admitted]
        known = await self._records.get([o.idempotency_key for o in orders])
        todo = [i for i, record in enumerate(known) if record.get("state") != "issued"]
        await self._records.put(
            {
                orders[i].idempotency_key: {"state": "requested", "requested_at": _now()}
                for i in todo
            }
        )
        answers = await asyncio.gather(*(self._place(orders[i]) for i in todo))
        await self._records.put(
            {orders[i].idempotency_key: a.record for i, a in zip(todo, answers, strict=True)}
        )
        rejected: list[Rejected] = []
        for i, answer in zip(todo, answers, strict=True):
            known[i] = answer.record
            if answer.failure is not None:
                self._metrics.failures.labels(answer.failure).inc()
                rejected.append(Rejected(admitted[i], answer.failure, answer.record["detail"]))
            else:
                self._metrics.issued.labels(orders[i].tier, orders[i].currency).inc()
                self._metrics.issued_cents.labels(orders[i].tier, orders[i].currency).inc(
                    orders[i].amount_cents
                )
        for order, record in zip(orders, known, strict=True):
            if record.get("state") == "issued":
                self._emitter.emit("rewards-issued", order.customer_id, self._reward(order, record))
        return rejected

    async def _place(self, order: GiftCardOrder) -> Answer:
        """Ask the provider, with the order's idempotency key; what to record of its answer."""
        request = GiftCardRequest(
            idempotency_key=order.idempotency_key,
            external_id=order.reward_id,
            customer_ref=order.customer_id,
            amount_cents=order.amount_cents,
            currency=order.currency,
            message="We are sorry: a gift card to make up for it.",
        )
        try:
            placed = await self._provider.order(request)
        except ProviderRejected as err:
            detail = f"provider answered {err.status} {err.code}: {err.message}"[:500]
            return Answer({"state": "failed", "detail": detail}, "provider_rejected")
        except ProviderUnavailable as err:
            detail = f"retries exhausted: {err.reason}"[:500]
            return Answer({"state": "requested", "detail": detail}, "provider_unavailable")
        record = {
            "state": "issued",
            "provider_order_id": placed.provider_order_id,
            "claim_url": placed.claim_url or "",
            "code_ref": placed.code_ref or "",
            "issued_at": _now(),
        }
        return Answer(record)

    def _reward(self, order: GiftCardOrder, record: dict[str, str]) -> RewardIssued:
        """The announcement, built from our record so that every repeat is the same."""
        return RewardIssued(
            reward_id=order.reward_id,
            customer_id=order.customer_id,
            kind="gift_card",
            reason=COMPENSATION_REASON,
            source_event_id=order.source_event_id,
            issued_at=datetime.fromisoformat(record["issued_at"]),
            amount_cents=order.amount_cents,
            currency=order.currency,
            complaint_id=order.complaint_id,
            gift_card=GiftCard(
                provider=self._provider_name,
                provider_order_id=record["provider_order_id"],
                claim_url=record.get("claim_url") or None,
                code_ref=record.get("code_ref") or None,
            ),
        )


def _order(item: Admitted) -> GiftCardOrder:
    assert isinstance(item.event, GiftCardOrder)
    return item.event


def _now() -> str:
    return datetime.now(UTC).isoformat()
