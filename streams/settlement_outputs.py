"""What settlements publish (ledger entries, rewards, commands, anomalies, compensation
decisions) into the open transaction, and their counters once it commits."""

from __future__ import annotations

from collections import Counter

from processors.settlement import Settlement
from schemas.outputs import ReferralReward
from streams.adapters.metrics import PointsMetrics
from streams.adapters.referral_metrics import ReferralMetrics
from streams.compensation import CompensationDesk
from streams.points_records import anomaly_record, ledger_json, points_moved, reward_record
from streams.transaction import Transaction


class SettlementOutputs:
    """Publishes settlements, and counts them once their transaction commits."""

    def __init__(
        self,
        *,
        transaction: Transaction,
        care: CompensationDesk,
        metrics: PointsMetrics,
        referral_metrics: ReferralMetrics,
        ledger_topic: str,
    ) -> None:
        self._txn = transaction
        self._care = care
        self._metrics = metrics
        self._referral_metrics = referral_metrics
        self._ledger_topic = ledger_topic
        self._staged: list[Settlement] = []

    def publish(self, settlement: Settlement) -> None:
        """Produce a settlement's ledger entries, rewards, commands, anomalies and decisions."""
        customer_id = settlement.account.customer_id
        key = customer_id.encode()
        for entry in settlement.entries:
            self._txn.emit_raw(self._ledger_topic, key, ledger_json(entry))
        for credit in settlement.credits:
            self._txn.emit("rewards-issued", customer_id, reward_record(credit))
        for command in settlement.commands:
            self._txn.emit("referral-commands", command.customer_id, command)
        for reward in settlement.referral_rewards:
            self._txn.emit("referral-rewards", reward.customer_id, reward)
        for anomaly in settlement.anomalies:
            self._txn.emit("points-anomalies", customer_id, anomaly_record(customer_id, anomaly))
        for change in settlement.tier_changes:
            self._txn.emit("tier-changes", customer_id, change)
        for warning in settlement.expiry_warnings:
            self._txn.emit("points-expiry-warnings", customer_id, warning)
        self._care.publish(settlement)
        self._staged.append(settlement)

    def committed(self) -> None:
        """The transaction committed: count what its settlements published."""
        tally = _Tally()
        for settlement in self._staged:
            tally.add(settlement)
            self._care.count(settlement)
        tally.count(self._metrics, self._referral_metrics)
        self._staged.clear()

    def discarded(self) -> None:
        """The transaction was aborted: nothing of it was published."""
        self._staged.clear()


class _Tally:
    """What committed settlements published, counted once per transaction and label."""

    def __init__(self) -> None:
        self.entries: Counter[str] = Counter()
        self.moved: Counter[str] = Counter()
        self.rewards: Counter[str] = Counter()
        self.anomalies: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.referral_rewards: list[ReferralReward] = []

    def add(self, settlement: Settlement) -> None:
        """One settlement's outputs."""
        for entry in settlement.entries:
            self.entries[entry.kind] += 1
            self.moved[entry.kind] += points_moved(entry)
        self.rewards["points"] += len(settlement.credits)
        self.rewards["discount"] += sum(d.outcome == "discount" for d in settlement.decisions)
        self.anomalies.update(a.kind for a in settlement.anomalies)
        self.commands.update(c.command for c in settlement.commands)
        self.referral_rewards += settlement.referral_rewards

    def count(self, metrics: PointsMetrics, referral_metrics: ReferralMetrics) -> None:
        """Into the counters."""
        for kind, count in self.entries.items():
            metrics.entries.labels(kind).inc(count)
            metrics.points.labels(kind).inc(self.moved[kind])
        for kind, count in self.rewards.items():
            if count:
                metrics.rewards.labels(kind).inc(count)
        for kind, count in self.anomalies.items():
            metrics.anomalies.labels(kind).inc(count)
        for command, count in self.commands.items():
            referral_metrics.commands.labels(command).inc(count)
        referral_metrics.count_rewards(self.referral_rewards)
