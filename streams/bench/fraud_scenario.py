"""A seeded self-referral scenario with an oracle: how much fraud a worker stops, how many honest
referrals it holds by mistake.

    python -m streams.bench.fraud_scenario --customers 5000 [--seed 7] [--json out.json]
        [--worker-path DIR --worker-module streams.cli]   # another checkout's worker

Honest referrals (one in twenty between members of a household: the same address) beside six
kinds of self-referral, in phases so that what each kind depends on
has been processed first: the referrers' own purchases (their signals), the sign-ups, the
referees' first purchases (conversions), the sign-ups that close rings, the late referrers' first
purchases. A referral counts as paid when its referee side was credited and not taken back.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

from processors.referrals import referral_key
from streams.adapters.kafka_io import ensure_topics, fast_producer, produce
from streams.adapters.topic_reader import read_topic
from streams.bench.housekeeping import purge
from streams.bench.sandbox_process import SandboxProcess
from streams.bench.worker_process import WorkerProcess, free_port
from streams.settings import Settings
from streams.settings_env import settings_env

KINDS = ("alias_email", "same_device", "same_card", "same_address", "ring", "late_evidence")
REGIONAL = ("yahoo.fr", "yahoo.co.uk", "hotmail.fr", "outlook.de", "live.co.uk", "gmail.com")
Payload = dict[str, Any]
Record = tuple[str, str, Payload]
"""(topic, key, value) of one input record."""


@dataclass
class Scenario:
    """The phases' records (topic, key, value) and every referral with its kind."""

    phases: list[list[Record]] = field(default_factory=lambda: [[] for _ in range(5)])
    referrals: list[tuple[str, str, str]] = field(default_factory=list)
    """(referrer, referee, kind): `honest` or one of KINDS."""


class _Shop:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start = datetime.now(UTC) - timedelta(hours=2)
        self.n = 0

    def at(self) -> str:
        self.n += 1
        return (self.start + timedelta(milliseconds=self.n)).isoformat().replace("+00:00", "Z")

    def context(self, cid: str) -> Payload:
        return {
            "email": f"{cid.replace('-', '.')}@{self.rng.choice(REGIONAL)}",
            "ip": ".".join(str(self.rng.randrange(1, 255)) for _ in range(4)),
            "user_agent": f"Mozilla/5.0 agent-{self.rng.randrange(10**6)}",
            "device_id": f"dev-{cid}",
            "payment_fingerprint": f"fp-{cid}",
            "shipping_address": {"line1": f"{self.rng.randrange(1, 300)} {cid} Street",
                                 "postal_code": f"{self.rng.randrange(10000, 99999)}",
                                 "city": "Lyon", "country": "FR"},
        }  # fmt: skip

    def purchase(self, cid: str, context: Payload | None, cents: int = 4000) -> Record:
        body = {"event_id": f"p-{secrets.token_hex(8)}", "occurred_at": self.at(),
                "customer_id": cid, "type": "purchase", "order_id": f"o-{secrets.token_hex(8)}",
                "amount_cents": cents, "currency": "EUR"}  # fmt: skip
        if context is not None:
            body["context"] = context
        return ("purchases", cid, body)

    def signup(self, referrer: str, referee: str, context: Payload) -> Record:
        body = {"event_id": f"su-{secrets.token_hex(8)}", "occurred_at": self.at(),
                "type": "signed_up", "referrer_id": referrer, "referee_id": referee,
                "referral_code": f"REF-{referrer}", "context": context}  # fmt: skip
        return ("referrals", referrer, body)


def alias(email: str) -> str:
    local, domain = email.split("@")
    return f"{local}+promo@{domain}"


def build(customers: int, seed: int) -> Scenario:
    """Honest referrals for two thirds of the customers, the rest split over the fraud kinds."""
    shop, sc = _Shop(seed), Scenario()
    p1, p2, p3, p4, p5 = sc.phases
    pairs = customers // 2
    for i in range(pairs):
        r, e = f"r{seed}-{i}", f"e{seed}-{i}"
        kind = "honest" if i % 3 else KINDS[(i // 3) % len(KINDS)]
        if kind == "honest" and i % 20 == 1:
            kind = "honest_household"  # a family member: same address, nothing else shared
        rc, ec = shop.context(r), shop.context(e)
        if kind not in ("late_evidence", "ring"):
            p1.append(shop.purchase(r, rc, 1500))
        if kind == "alias_email":
            ec["email"] = alias(rc["email"])
        elif kind == "same_device":
            ec["device_id"] = rc["device_id"]
        elif kind in ("same_address", "honest_household"):
            line1 = rc["shipping_address"]["line1"].upper().replace("STREET", "St.")
            ec["shipping_address"] = {**rc["shipping_address"], "line1": line1}
        elif kind == "late_evidence":
            rc["device_id"] = ec["device_id"]
        signup_context = {k: v for k, v in ec.items() if k != "payment_fingerprint"}
        p2.append(shop.signup(r, e, signup_context))
        conversion = dict(ec)
        if kind == "same_card":
            conversion["payment_fingerprint"] = rc["payment_fingerprint"]
        p3.append(shop.purchase(e, conversion))
        sc.referrals.append((r, e, kind))
        if kind == "ring":  # e refers r back once e has converted; r then buys
            p4.append(shop.signup(e, r, rc))
            p5.append(shop.purchase(r, rc))
            sc.referrals.append((e, r, "ring"))
        if kind == "late_evidence":
            p5.append(shop.purchase(r, rc, 1500))
    return sc


def paid(settings: Settings) -> set[str]:
    """Referral keys whose referee side was credited and not taken back."""
    credited, undone = set(), set()
    for message in read_topic(settings, settings.topic("referral-rewards"), 30.0):
        record = orjson.loads(message.value() or b"{}")
        if record.get("role") != "referee":
            continue
        if record["status"] == "credited":
            credited.add(record["referral_key"])
        elif record["status"] in ("cancelled", "rejected"):
            undone.add(record["referral_key"])
    return credited - undone


def run(
    sc: Scenario, settings: Settings, worker_env: dict[str, str], module: str, log: Path
) -> dict[str, Any]:
    """Publish the phases to a fresh worker and compare what it paid with the oracle."""
    ensure_topics(settings)
    worker = WorkerProcess(worker_env, settings.web_port, log, module).start(180)
    producer = fast_producer(settings)
    sent = 0
    try:
        for phase in sc.phases:
            for topic, key, body in phase:
                produce(producer, settings.topic(topic), orjson.dumps(body), key.encode())
            producer.flush(60)
            sent += len(phase)
            _settle(worker, sent)
        keys = paid(settings)
    finally:
        worker.stop()
        purge(settings)
    return _report(sc, keys)


def _settle(worker: WorkerProcess, sent: int, timeout_s: float = 300) -> None:
    """Until every input record is counted and the referral commands went quiet for 3 s."""
    deadline, last, quiet = time.monotonic() + timeout_s, -1.0, 0
    while time.monotonic() < deadline and quiet < 3:
        done = sum(
            worker.total("rewards_events_consumed_total", topic=t)
            for t in ("purchases", "referrals")
        )
        commands = worker.total("rewards_events_processed_total", topic="referral-commands")
        quiet = quiet + 1 if done >= sent and commands == last else 0
        last = commands
        time.sleep(1.0)


def _report(sc: Scenario, keys: set[str]) -> dict[str, Any]:
    by_kind: dict[str, list[int]] = {}
    for referrer, referee, kind in sc.referrals:
        stats = by_kind.setdefault(kind, [0, 0])
        stats[0] += 1
        stats[1] += referral_key(referrer, referee) in keys
    fraud = [v for k, v in by_kind.items() if not k.startswith("honest")]
    honest = [v for k, v in by_kind.items() if k.startswith("honest")]
    total_fraud, fraud_paid = sum(v[0] for v in fraud), sum(v[1] for v in fraud)
    honest_total, honest_paid = sum(v[0] for v in honest), sum(v[1] for v in honest)
    return {
        "fraud_stopped_share": 1 - fraud_paid / max(total_fraud, 1),
        "honest_held_share": 1 - honest_paid / max(honest_total, 1),
        "by_kind": {k: {"referrals": v[0], "paid": v[1]} for k, v in sorted(by_kind.items())},
    }


def main() -> None:
    """Build the scenario, run it on a fresh worker (optionally another checkout's), print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--worker-path", type=Path)
    parser.add_argument("--worker-module", default="streams.cli")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    run_id = secrets.token_hex(4)
    workdir = Path(tempfile.mkdtemp(prefix=f"fraud-{run_id}-"))
    with SandboxProcess() as sandbox:
        settings = Settings(
            kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0"),
            topic_prefix=f"fraud-{run_id}-", app_id=f"fraud-{run_id}", web_port=free_port(),
            data_dir=workdir / "data", pii_hash_key=SecretStr(secrets.token_hex(16)),
            gift_card_provider_url=sandbox.url, gift_card_api_key=SecretStr(sandbox.api_key),
        )  # fmt: skip
        env = settings_env(settings)
        if args.worker_path:
            env["PYTHONPATH"] = str(args.worker_path)
        result = run(build(args.customers, args.seed), settings, env, args.worker_module,
                     workdir / "worker.log")  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
