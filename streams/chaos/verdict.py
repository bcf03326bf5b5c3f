"""The soak's verdict: the oracle against every view of what the worker did, check by check."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.chaos.observe import Observed, dead_letter_ids, ledger_balances
from streams.chaos.oracle import Balance, Expected

EVIDENCE = 10
"""Offending ids listed per check."""
LAG_LIMIT_S = 60.0


@dataclass
class Check:
    """One figure: what the oracle expects, what was observed, and whether that passes.
    `gating` checks decide the verdict; the others are reported beside it."""

    name: str
    expected: Any
    observed: Any
    ok: bool
    gating: bool = True
    evidence: list[str] = field(default_factory=list)


@dataclass
class Lag:
    """When both groups' committed lag reached 0, against the last event and the last fault."""

    zero_at: float | None
    last_event_at: float
    last_fault_at: float | None
    """When the last fault ended (its target restarted)."""
    raw: dict[str, int] = field(default_factory=dict)

    def after_fault_s(self) -> float | None:
        """Seconds from the end of the last fault (or the last event, if later) to lag 0."""
        if self.zero_at is None:
            return None
        return self.zero_at - max(self.last_fault_at or 0.0, self.last_event_at)

    def after_s(self, since: float | None) -> float | None:
        """Seconds from `since` to lag 0."""
        return None if self.zero_at is None or since is None else self.zero_at - since


def processed(
    expected: Expected, found: Observed, prefix: str
) -> tuple[Check, list[dict[str, Any]]]:
    """Every unique input event had its effect, or is in `dead-letter` with a reason."""
    effects = _effects(found)
    letters = dead_letter_ids(found.values("dead-letter"), prefix)
    rows, missing, odd = [], [], []
    for topic, events in sorted(expected.effects.items()):
        tally: Counter[str] = Counter()
        for event_id, effect in events.items():
            outcome = _outcome(topic, event_id, effect, effects, letters)
            tally[outcome] += 1
            if outcome == "unprocessed":
                missing.append(f"{topic}:{event_id} (expected {effect})")
            elif outcome != "as expected":
                odd.append(f"{topic}:{event_id} {outcome} (expected {effect})")
        published = expected.published[topic]
        rows.append(
            {
                "topic": topic,
                "records": published.records,
                "unique": published.unique,
                "retries": published.retries,
                **tally,
            }
        )
    check = Check(
        "input events unprocessed",
        0,
        len(missing),
        not missing,
        evidence=(missing + odd)[:EVIDENCE],
    )
    return check, rows


def _effects(found: Observed) -> dict[str, set[str]]:
    """Event ids each kind of effect names."""
    commands = found.values("referral-commands")
    return {
        "ledger": {str(r.get("source_event_id")) for r in found.values("points-ledger")}
        | {str(r.get("source_event_id")) for r in found.values("points-anomalies")},
        "signup": {str(r.get("source_event_id")) for r in commands if r.get("command") == "signup"},
        "decision": {str(r.get("source_event_id")) for r in found.values("compensation-decisions")},
    }


def _outcome(
    topic: str,
    event_id: str,
    effect: str,
    effects: dict[str, set[str]],
    letters: dict[tuple[str, str], str],
) -> str:
    letter = letters.get((topic, event_id))
    if effect.startswith("dead_letter:"):
        if letter is None:
            return "unprocessed"
        return "as expected" if letter == effect.split(":", 1)[1] else f"dead-lettered ({letter})"
    if event_id in effects.get(effect, set()):
        return "as expected" if letter is None else f"had its effect and dead-lettered ({letter})"
    if letter is not None:
        return f"dead-lettered ({letter})"
    return "silent" if effect == "silent" else "unprocessed"


def balances(expected: Expected, found: Observed) -> Check:
    """HTTP = Redis mirror = ledger rebuild = oracle, for every customer."""
    ledger = ledger_balances(found.topics.get("points-ledger", []))
    customers = expected.customers | set(ledger) | set(expected.balances)
    off = []
    for customer in sorted(customers):
        views = {
            "oracle": expected.balances.get(customer, Balance()),
            "http": found.http.get(customer, "not asked"),
            "redis": found.mirror.get(customer) or Balance(),
            "ledger": ledger.get(customer, Balance()),
        }
        if views["http"] is None:
            views["http"] = Balance()
        if len({repr(v) for v in views.values()}) > 1:
            off.append(f"{customer}: " + ", ".join(f"{k}={_show(v)}" for k, v in views.items()))
    return Check(
        "balances off (HTTP, Redis, ledger, oracle)", 0, len(off), not off, evidence=off[:EVIDENCE]
    )


def _show(view: object) -> str:
    if isinstance(view, Balance):
        return f"{view.pending}/{view.available}#{view.sequence}"
    return str(view)


def ledger_entries(expected: Expected, found: Observed) -> Check:
    """The ledger holds exactly the oracle's entry ids (reported; balances decide)."""
    seen = Counter(str(r.get("entry_id")) for r in found.values("points-ledger"))
    missing = sorted(set(expected.entries) - set(seen))
    unexpected = sorted(set(seen) - set(expected.entries))
    repeated = sorted(e for e, n in seen.items() if n > 1)
    evidence = [f"missing {e} ({expected.entries[e]})" for e in missing[:EVIDENCE]]
    evidence += [f"unexpected {e}" for e in unexpected[:EVIDENCE]]
    evidence += [f"published {seen[e]} times: {e}" for e in repeated[:EVIDENCE]]
    observed = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(repeated)} repeated"
    return Check(
        "ledger entries (missing, unexpected, repeated)",
        "0, 0, 0",
        observed,
        not (missing or unexpected or repeated),
        gating=False,
        evidence=evidence,
    )


def rewards(expected: Expected, found: Observed) -> list[Check]:
    """No reward id with two contents; every expected reward announced, nothing else."""
    contents: defaultdict[str, set[bytes]] = defaultdict(set)
    for reward in found.values("rewards-issued"):
        contents[str(reward.get("reward_id"))].add(
            orjson.dumps(reward, option=orjson.OPT_SORT_KEYS)
        )
    conflicts = sorted(r for r, c in contents.items() if len(c) > 1)
    wanted = expected.points_rewards | set(expected.gift_cards)
    missing, unexpected = sorted(wanted - set(contents)), sorted(set(contents) - wanted)
    return [
        Check(
            "reward_ids with two contents",
            0,
            len(conflicts),
            not conflicts,
            evidence=[f"{r}: {sorted(contents[r])[:2]}" for r in conflicts[:EVIDENCE]],
        ),
        Check(
            "rewards announced (missing, unexpected)",
            f"{len(wanted)}: 0, 0",
            f"{len(set(contents) & wanted)}: {len(missing)}, {len(unexpected)}",
            not (missing or unexpected),
            gating=False,
            evidence=[f"missing {r}" for r in missing[:EVIDENCE]]
            + [f"unexpected {r}" for r in unexpected[:EVIDENCE]],
        ),
    ]


def gift_cards(expected: Expected, found: Observed) -> list[Check]:
    """Ordered at the provider once per eligible complaint, announced with that order."""
    orders = found.sandbox.get("orders", [])
    by_reward = Counter(str(order.get("external_id")) for order in orders)
    wanted = set(expected.gift_cards)
    doubled = sorted(r for r, n in by_reward.items() if n > 1)
    unexpected = sorted(set(by_reward) - wanted)
    keys = found.sandbox.get("idempotency_keys", {})
    wrong_keys = sorted(r for r, o in expected.gift_cards.items() if o.idempotency_key not in keys)
    return [
        Check(
            "gift cards ordered at the provider",
            len(wanted),
            len(set(by_reward) & wanted),
            set(by_reward) >= wanted and not unexpected,
            evidence=[f"not ordered: {r}" for r in sorted(wanted - set(by_reward))[:EVIDENCE]]
            + [f"unexpected order: {r}" for r in unexpected[:EVIDENCE]]
            + [f"ordered without its key: {r}" for r in wrong_keys[:EVIDENCE]],
        ),
        Check(
            "gift cards doubled (by complaint)",
            0,
            len(doubled),
            not doubled,
            evidence=[f"{r}: {by_reward[r]} orders" for r in doubled[:EVIDENCE]],
        ),
        _announced(expected, found, keys),
        _decisions(expected, found),
    ]


def _announced(expected: Expected, found: Observed, keys: dict[str, str]) -> Check:
    """Each gift card announced on `rewards-issued` is the order the provider made (reported)."""
    wrong = []
    for reward in found.values("rewards-issued"):
        order = expected.gift_cards.get(str(reward.get("reward_id")))
        if order is None:
            continue
        made = keys.get(order.idempotency_key)
        announced = (reward.get("gift_card") or {}).get("provider_order_id")
        if made != announced:
            wrong.append(f"{order.reward_id}: announced {announced}, provider made {made}")
    return Check(
        "gift cards announced with the provider's order",
        0,
        len(wrong),
        not wrong,
        gating=False,
        evidence=wrong[:EVIDENCE],
    )


def _decisions(expected: Expected, found: Observed) -> Check:
    """Each complaint decided once, as the oracle decides it (reported)."""
    decided: defaultdict[str, set[str]] = defaultdict(set)
    for decision in found.values("compensation-decisions"):
        decided[str(decision.get("source_event_id"))].add(str(decision.get("outcome")))
    wrong = [
        f"{event}: expected {outcome}, decided {sorted(decided.get(event, set()))}"
        for event, outcome in sorted(expected.decisions.items())
        if decided.get(event) != {outcome}
    ]
    outcomes = Counter(expected.decisions.values())
    return Check(
        "complaints decided as expected",
        dict(outcomes),
        f"{len(wrong)} differ",
        not wrong,
        gating=False,
        evidence=wrong[:EVIDENCE],
    )


def lag_check(lag: Lag) -> Check:
    """Committed lag of both groups back to 0 within a minute of the last fault."""
    after = lag.after_fault_s()
    observed = "never" if after is None else f"{after:.1f}s"
    return Check(
        "committed lag 0 after the last fault/event",
        f"<= {LAG_LIMIT_S:.0f}s",
        observed,
        after is not None and after <= LAG_LIMIT_S,
    )


def budget(expected: Expected, found: Observed) -> Check:
    """The compensation budget reserved exactly the granted gift cards (reported)."""
    wanted = sum(order.amount_cents for order in expected.gift_cards.values())
    return Check(
        "budget reserved (cents)",
        wanted,
        found.budget_cents,
        wanted == found.budget_cents,
        gating=False,
    )


def fraud_alerts(found: Observed) -> Check:
    """Honest referrals raise no review or reject alert (reported)."""
    alerts = found.values("fraud-alerts")
    evidence = [f"{a.get('referee_id')}: {a.get('decision')} {a.get('score')}" for a in alerts]
    return Check(
        "fraud alerts (honest referrals)",
        0,
        len(alerts),
        not alerts,
        gating=False,
        evidence=evidence[:EVIDENCE],
    )
