"""Complaint compensation in the stream: reserve the budget, publish decisions, orders, discounts.

Complaints settle with the customer's account (`processors.settlement`), on the customer's
partition; a compensation that passes every limit stops at a budget request, which this desk
reserves in Redis for the whole batch at once before the account settles again with the answers.
Decisions go to `compensation-decisions`; a gift card becomes a `gift-card-orders` record for the
fulfilment agent (`streams.fulfilment`); a discount is announced on `rewards-issued` at once. All
of it is emitted before the account is stored, like the points ledger's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from processors.compensation import BudgetRequest, discount_code
from processors.settlement import Settlement
from schemas.outputs import CompensationDecision, RewardIssued
from streams.adapters.compensation_budget import Reserved
from streams.adapters.compensation_metrics import CompensationMetrics
from streams.transaction import Transaction

COMPENSATION_REASON = "complaint_compensation"


class Budget(Protocol):
    """The compensation budget all workers share (`streams.adapters.compensation_budget`)."""

    async def reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> Reserved:
        """Reserve what fits for each request (one round trip)."""

    async def used(self, now: datetime) -> dict[str, tuple[int, int]]:
        """What each currency has used today and this month."""


class CompensationDesk:
    """Reserves budget for a batch's compensations and publishes what was decided."""

    def __init__(
        self,
        *,
        budget: Budget,
        emitter: Transaction,
        metrics: CompensationMetrics,
        code_key: bytes,
    ) -> None:
        self._budget = budget
        self._emitter = emitter
        self._metrics = metrics
        self._code_key = code_key

    async def refresh_budget(self, now: datetime) -> None:
        """Export what the budget has used today and this month (a new day starts at zero)."""
        self._metrics.set_budget_used(await self._budget.used(now))

    async def reserve(self, requests: Sequence[BudgetRequest], now: datetime) -> dict[str, str]:
        """The budget's answer for each request, by complaint event id (one Redis round trip)."""
        reserved = await self._budget.reserve(requests, now)
        self._metrics.set_budget_used(reserved.used)
        return reserved.answers

    def publish(self, settlement: Settlement) -> None:
        """Produce a settlement's decisions, gift-card orders and discounts."""
        for decision in settlement.decisions:
            self._emitter.emit("compensation-decisions", decision.customer_id, decision)
            if decision.outcome == "discount":
                self._emitter.emit("rewards-issued", decision.customer_id, self._discount(decision))
        for order in settlement.orders:
            self._emitter.emit("gift-card-orders", order.customer_id, order)

    def count(self, settlement: Settlement) -> None:
        """Count a committed settlement's decisions."""
        for decision in settlement.decisions:
            self._count(decision)

    def _count(self, decision: CompensationDecision) -> None:
        self._metrics.decisions.labels(decision.outcome, decision.reason, decision.arm).inc()
        if decision.amount_cents and decision.currency:
            self._metrics.granted_cents.labels(
                decision.arm, decision.tier or "", decision.currency
            ).inc(decision.amount_cents)

    def _discount(self, decision: CompensationDecision) -> RewardIssued:
        """The discount arm's reward: a code of the gift card's value, the same on every replay."""
        assert decision.reward_id is not None
        return RewardIssued(
            reward_id=decision.reward_id,
            customer_id=decision.customer_id,
            kind="discount",
            reason=COMPENSATION_REASON,
            source_event_id=decision.source_event_id,
            issued_at=decision.decided_at,
            amount_cents=decision.amount_cents,
            currency=decision.currency,
            complaint_id=decision.complaint_id,
            discount_code=discount_code(self._code_key, decision.complaint_id),
        )
