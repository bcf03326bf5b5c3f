"""The review queue: referrals held for an operator's decision, derived from durable state only.

Who waits: every account in the accounts changelog (the worker's state) whose referral has the
fraud decision `review` and the status `attributed` or `held`, which is exactly what
`processors.referrals.decide` acts on. Why: the `fraud-alerts` record the referral names
(`alert_id`, the latest record of that id), else the referee's latest alert. A decision already
on `fraud-decisions` that the account has not applied yet shows the entry as decided, pending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import orjson

from processors.account import Account
from processors.referral_state import Referee
from schemas.outputs import FraudAlert
from streams.adapters.topic_reader import read_to_end
from streams.cli.account_table import account_table
from streams.settings import Settings

EVIDENCE_PREFIX = 12
"""Characters of each (hashed) evidence value that are shown."""


@dataclass(frozen=True)
class Waiting:
    """One referral waiting for a decision, with its explanation and any unapplied decision."""

    referee_id: str
    referral: Referee
    since: datetime
    alert: FraudAlert | None
    pending: tuple[dict[str, str], ...] = field(default=())

    @property
    def state(self) -> str:
        """`waiting`, or `decided, pending` once a decision is published but not applied."""
        return "decided, pending" if self.pending else "waiting"


def waiting(accounts: dict[str, Account]) -> dict[str, Referee]:
    """The referees whose referral waits for an operator."""
    return {
        customer_id: a.referral.referee
        for customer_id, a in accounts.items()
        if a.referral.referee is not None
        and a.referral.referee.decision == "review"
        and a.referral.referee.status in {"attributed", "held"}
    }


def latest_alerts(settings: Settings, timeout_s: float) -> dict[str, FraudAlert]:
    """`fraud-alerts` by alert_id, the record at the highest offset of each (deduplicated)."""
    alerts: dict[str, FraudAlert] = {}
    for msg in read_to_end(
        settings.kafka_bootstrap_servers, settings.topic("fraud-alerts"), timeout_s
    ):
        try:
            alert = msgspec.json.decode(msg.value() or b"", type=FraudAlert)
        except msgspec.DecodeError:
            continue  # not ours to judge here; the schema tests guard the producer
        alerts[alert.alert_id] = alert
    return alerts


def published_decisions(settings: Settings, timeout_s: float) -> dict[str, list[dict[str, str]]]:
    """`fraud-decisions` records by referee, in topic order."""
    found: dict[str, list[dict[str, str]]] = {}
    for msg in read_to_end(
        settings.kafka_bootstrap_servers, settings.topic("fraud-decisions"), timeout_s
    ):
        try:
            record = orjson.loads(msg.value() or b"")
            found.setdefault(str(record["referee_id"]), []).append(record)
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return found


def explain(referee_id: str, referral: Referee, alerts: dict[str, FraudAlert]) -> FraudAlert | None:
    """The alert that put the referral up for review, else the referee's latest review alert."""
    if referral.alert_id in alerts:
        return alerts[referral.alert_id]
    mine = [a for a in alerts.values() if a.referee_id == referee_id and a.decision == "review"]
    return max(mine, key=lambda a: a.decided_at, default=None)


def review_queue(settings: Settings, timeout_s: float = 60.0) -> list[Waiting]:
    """Every referral waiting for a decision, oldest first (by when it was put up for review)."""
    held = waiting(account_table(settings, timeout_s))
    alerts = latest_alerts(settings, timeout_s) if held else {}
    decisions = published_decisions(settings, timeout_s) if held else {}
    queue = []
    for referee_id, referral in held.items():
        alert = explain(referee_id, referral, alerts)
        since = alert.decided_at if alert else referral.converted_at or referral.signed_up_at
        unapplied = tuple(
            d for d in decisions.get(referee_id, ()) if d.get("event_id") not in
            referral.decision_event_ids
        )  # fmt: skip
        queue.append(Waiting(referee_id, referral, since, alert, unapplied))
    return sorted(queue, key=lambda w: (w.since, w.referee_id))


def summary_line(entry: Waiting) -> str:
    """One line of `rewards review list`."""
    r, a = entry.referral, entry.alert
    why = "no alert found"
    if a is not None:
        rules = ", ".join(f"{h.rule}({h.weight:g})" for h in a.rules)
        why = f"score {a.score:g}: {rules}"
    return (
        f"{entry.since.isoformat()}  {entry.referee_id}  referrer {r.referrer_id}  {r.status}  "
        f"[{entry.state}]  {why}"
    )


def detail_lines(entry: Waiting) -> list[str]:
    """Everything `rewards review show` prints about one waiting referral."""
    r, a = entry.referral, entry.alert
    lines = [
        f"referee      {entry.referee_id}",
        f"referrer     {r.referrer_id}",
        f"state        {entry.state} (referral {r.status}, decision {r.decision})",
        f"waiting since {entry.since.isoformat()}",
        f"signed up    {r.signed_up_at.isoformat()} ({r.signup_event_id})",
        f"converted    {r.converted_at.isoformat() if r.converted_at else '-'}",
        f"order        {r.order_id or '-'}",
        f"code / id    {r.referral_code or '-'} / {r.referral_id or '-'}",
    ]  # fmt: skip
    lines += _alert_lines(a) if a is not None else [f"alert        {r.alert_id} (not found)"]
    for d in entry.pending:
        lines.append(
            f"pending      {d.get('decision')} by {d.get('operator')} ({d.get('event_id')})"
        )
    return lines


def _alert_lines(alert: FraudAlert) -> list[str]:
    """An alert's explanation: subject, score, thresholds, every rule with evidence prefixes."""
    lines = [
        f"alert        {alert.alert_id} ({alert.subject}, {alert.decided_at.isoformat()})",
        f"score        {alert.score:g} (review >= {alert.thresholds.review:g}, "
        f"reject >= {alert.thresholds.reject:g})",
    ]
    for hit in alert.rules:
        evidence = ", ".join(f"{k}={v[:EVIDENCE_PREFIX]}" for k, v in sorted(hit.evidence.items()))
        lines.append(f"  rule {hit.rule:<24} weight {hit.weight:>6g}  {evidence}")
    return lines
