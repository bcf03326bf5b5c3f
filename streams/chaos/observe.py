"""What the worker did, as its consumers see it: output topics, balances over HTTP and in Redis."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.adapters.redis_client import SyncClient, connect_sync
from streams.bench.sandbox_process import SandboxProcess
from streams.chaos.oracle import Balance
from streams.chaos.read import Rec, read_topic
from streams.settings import Settings

OUTPUTS = (
    "points-ledger",
    "points-anomalies",
    "referral-commands",
    "compensation-decisions",
    "gift-card-orders",
    "rewards-issued",
    "dead-letter",
    "fraud-alerts",
)
HTTP_ATTEMPTS = 20
HTTP_BUDGET_S = 180.0
"""All balances are asked within this (a stuck partition answers 503 for ever)."""


@dataclass
class Observed:
    """Everything the verdict compares with the oracle."""

    topics: dict[str, list[Rec]] = field(default_factory=dict)
    http: dict[str, Balance | str | None] = field(default_factory=dict)
    """Customer -> balance, None (404: no account) or the error that remained."""
    mirror: dict[str, Balance | None] = field(default_factory=dict)
    mirror_keys: int = 0
    sandbox: dict[str, Any] = field(default_factory=dict)
    budget_cents: int = 0

    def values(self, topic: str) -> list[dict[str, Any]]:
        """A topic's records as JSON objects."""
        return [rec.json() for rec in self.topics.get(topic, [])]


def observe(
    settings: Settings,
    customers: Iterable[str],
    ports: Sequence[int],
    sandbox: SandboxProcess,
    http_budget_s: float = HTTP_BUDGET_S,
) -> Observed:
    """Read every output topic (read_committed), every customer's balance from the workers and
    from the Redis mirror, the provider sandbox's orders and the budget reserved."""
    found = Observed()
    for name in OUTPUTS:
        found.topics[name] = read_topic(settings.kafka_bootstrap_servers, settings.topic(name))
    wanted = sorted(customers)
    found.http = http_balances(wanted, ports, http_budget_s)
    client = connect_sync(settings.redis_url, cluster=settings.redis_cluster_mode)
    found.mirror = mirror_balances(client, settings.app_id, wanted)
    found.mirror_keys = sum(1 for _ in client.scan_iter(f"{settings.app_id}:points:*", 1000))
    budget = client.scan_iter(f"{{{settings.app_id}:comp}}:budget:*:month:*", 1000)
    found.budget_cents = sum(int(client.get(key) or 0) for key in budget)
    found.sandbox = sandbox.orders()
    return found


def http_balances(
    customers: Sequence[str], ports: Sequence[int], budget_s: float = HTTP_BUDGET_S
) -> dict[str, Balance | str | None]:
    """`GET /points/<id>` for every customer, asking the workers in turn (so both the local and
    the forwarded path answer); what is not answered within `budget_s` stays an error."""
    deadline = time.monotonic() + budget_s
    jobs = [(c, ports[i % len(ports)]) for i, c in enumerate(customers)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: _balance(job[0], job[1], deadline), jobs))
    return dict(zip(customers, answers, strict=True))


def _balance(customer: str, port: int, deadline: float) -> Balance | str | None:
    """One balance; a 503 (a partition moving) or a refused connection is asked again."""
    url = f"http://127.0.0.1:{port}/points/{customer}"
    problem = "not asked: out of time"
    for _ in range(HTTP_ATTEMPTS):
        if time.monotonic() > deadline:
            break
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
            return Balance(int(body["pending"]), int(body["available"]), int(body["sequence"]))
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            problem = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    return problem


def mirror_balances(
    client: SyncClient, app_id: str, customers: Sequence[str]
) -> dict[str, Balance | None]:
    """The `<app_id>:points:<customer>` hashes (None where there is none)."""
    out: dict[str, Balance | None] = {}
    for start in range(0, len(customers), 1000):
        chunk = customers[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for customer in chunk:
            pipe.hgetall(f"{app_id}:points:{customer}")
        for customer, fields in zip(chunk, pipe.execute(), strict=True):
            out[customer] = _hash_balance(fields)
    return out


def _hash_balance(fields: dict[bytes, bytes]) -> Balance | None:
    if not fields:
        return None
    return Balance(int(fields[b"pending"]), int(fields[b"available"]), int(fields[b"sequence"]))


def ledger_balances(ledger: Sequence[Rec]) -> dict[str, Balance]:
    """The README's rebuild: per (customer, sequence) the record at the highest offset wins, and
    the highest sequence carries the balances (a customer's records share one partition)."""
    latest: dict[tuple[str, int], tuple[int, dict[str, Any]]] = {}
    for rec in ledger:
        entry = rec.json()
        key = (str(entry["customer_id"]), int(entry["sequence"]))
        if key not in latest or latest[key][0] < rec.offset:
            latest[key] = (rec.offset, entry)
    top: dict[str, dict[str, Any]] = {}
    for (customer, sequence), (_, entry) in latest.items():
        if customer not in top or int(top[customer]["sequence"]) < sequence:
            top[customer] = entry
    return {
        c: Balance(int(e["pending_after"]), int(e["available_after"]), int(e["sequence"]))
        for c, e in top.items()
    }


def dead_letter_ids(records: Iterable[dict[str, Any]], prefix: str) -> dict[tuple[str, str], str]:
    """(base topic, event id) -> reason of each dead letter whose original value names one."""
    out: dict[tuple[str, str], str] = {}
    for letter in records:
        topic = str(letter.get("source", {}).get("topic", "")).removeprefix(prefix)
        try:
            original = orjson.loads(base64.b64decode(letter.get("original_value_b64", "")))
        except (ValueError, orjson.JSONDecodeError):
            continue
        if isinstance(original, dict) and "event_id" in original:
            out[(topic, str(original["event_id"]))] = str(letter.get("reason"))
    return out
