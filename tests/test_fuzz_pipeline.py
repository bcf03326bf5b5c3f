"""Fuzz the worker through real Kafka and Redis: it survives, and accounts for every record once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # admin does not re-export these
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from jsonschema import Draft202012Validator

from streams.adapters.kafka_io import TOPIC_CONFIGS, admin_client
from streams.adapters.topic_reader import read_topic
from streams.cli.worker_metrics import Samples
from tests.fuzz import POISON, SCHEMAS, TOPICS, Fuzzer, Record
from tests.fuzz_oracle import FORMATS, Oracle, Run, parse_time
from tests.support import Sent, eventually

pytestmark = [pytest.mark.integration, pytest.mark.redis]

RECORDS = int(os.environ.get("REWARDS_FUZZ_RECORDS", "3000"))
SEED = int(os.environ.get("REWARDS_FUZZ_SEED", "1103"))
_SKIP = [s for s in os.environ.get("REWARDS_FUZZ_EXCLUDE", "").split(",") if s]
EXCLUDE = tuple(n for s in _SKIP for n in (POISON if s == "poison" else (s,)))
"""Mutation names (prefixes) left out, for checking the harness by hand; `poison` = issue #11's."""
TOPIC_MAX_BYTES = 8 * 2**20  # the purchases topic and the producer take the ~3.5 MiB record
DEAD_LETTER_LIMIT = int(TOPIC_CONFIGS["dead-letter"]["max.message.bytes"])
NOT_INVALID = {"oversized", "key_mismatch", "no_points_rate", "processing_error"}
"""Reasons that name another cause than a record breaking the contract."""
COUNTERS = {
    "rewards_events_consumed_total": "consumed",
    "rewards_events_processed_total": "processed",
    "rewards_dead_letters_total": "dead_letters",
    "rewards_duplicate_events_total": "duplicates",
}
LETTER_SCHEMA = Draft202012Validator(
    json.loads((SCHEMAS / "dead-letter.schema.json").read_text()), format_checker=FORMATS
)


def raise_topic_limit(settings, base: str, limit: int) -> None:
    """Let topic `base` take records of up to `limit` bytes (max.message.bytes)."""
    op = AlterConfigOpType.SET
    entry = ConfigEntry("max.message.bytes", str(limit), incremental_operation=op)
    topic = ConfigResource(ResourceType.TOPIC, settings.topic(base), incremental_configs=[entry])
    admin = admin_client(settings.kafka_bootstrap_servers)
    for future in admin.incremental_alter_configs([topic]).values():
        future.result(timeout=30)


def produce(settings, records: Sequence[Record]) -> list[Sent]:
    """Send the records in order (idempotent: each partition keeps it); where each one went."""
    producer = Producer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "enable.idempotence": True,
         "partitioner": "murmur2_random", "message.max.bytes": TOPIC_MAX_BYTES}
    )  # fmt: skip
    sent: dict[int, Sent] = {}
    errors: list[str] = []

    def report(i: int, record: Record) -> Callable[[Any, Any], None]:
        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(f"{record.mutation}: {err}")
            else:
                sent[i] = Sent(msg.topic(), msg.partition(), msg.offset(), msg.key(), record.value)

        return delivered

    for i, record in enumerate(records):
        while True:
            try:
                topic = settings.topic(record.topic)
                producer.produce(topic, record.value, record.key, on_delivery=report(i, record))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0 and not errors and len(sent) == len(records), errors[:5]
    return [sent[i] for i in range(len(records))]


def tally(samples: Samples) -> dict[str, Counter[str]]:
    """Per input topic: consumed, processed, dead_letters and duplicates, from one scrape."""
    out: dict[str, Counter[str]] = {t: Counter() for t in TOPICS}
    for (name, labels), value in samples.items():
        topic = dict(labels).get("topic")
        if name in COUNTERS and topic in out:
            out[topic][COUNTERS[name]] += int(value)
    return out


def wait_settled(worker, sent: dict[str, int], stall_s: float = 30.0) -> dict[str, Counter[str]]:
    """Until each topic consumed what was sent and the counts hold still (0.5 s once they add
    up, else 5 s); fails early if the worker exits or makes no progress for `stall_s`."""
    last: dict[str, Counter[str]] | None = None
    changed = time.monotonic()
    while True:
        if worker.proc.poll() is not None:
            raise AssertionError(f"worker exited: {errors_logged(worker)}")
        try:
            now: dict[str, Counter[str]] | None = tally(worker.samples())
        except OSError:  # busy or rebalancing: try again
            now = last
        if now != last:
            changed, last = time.monotonic(), now
        consumed = {t: c["consumed"] for t, c in (last or {}).items()}
        still = time.monotonic() - changed
        if last is not None and consumed == sent and still >= (0.5 if balanced(last) else 5.0):
            return last
        stalled = f"stalled {stall_s}s: consumed {consumed}, sent {sent}; {errors_logged(worker)}"
        assert time.monotonic() - changed < stall_s, stalled
        time.sleep(0.25)


def balanced(counts: dict[str, Counter[str]]) -> bool:
    return all(c["consumed"] == c["processed"] + c["dead_letters"] + c["duplicates"]
               for c in counts.values())  # fmt: skip


def errors_logged(worker) -> str:
    """The worker log's first error lines (why it crashed or stalled)."""
    lines = worker.log_path.read_text(errors="replace").splitlines()
    code = worker.proc.poll()
    errors = [line[:400] for line in lines if "ERROR" in line][:2]
    return f"exit code {code}, log: " + " | ".join(errors)


def check_alive(worker) -> None:
    assert worker.proc.poll() is None, f"worker exited with {worker.proc.returncode}"
    assert "rewards_events_consumed_total" in worker.metrics_text()


def check_accounting(counts: dict[str, Counter[str]], run: Run) -> None:
    """consumed == sent == processed + dead letters + duplicates, each as the oracle expects."""
    wrong = []
    for topic in TOPICS:
        got, want = counts[topic], run.expected_counts(topic)
        accounted = got["processed"] + got["dead_letters"] + got["duplicates"]
        if got["consumed"] != accounted or any(got[k] != want[k] for k in want):
            wrong.append(f"{topic}: worker {dict(got)} (accounted {accounted}), expected {want}")
    assert not wrong, "\n".join(wrong)


def letter_problems(letter: dict[str, Any], key: bytes | None, run: Run) -> list[str]:
    """What is wrong with one dead letter: its source, reason, key and value."""
    source = letter.get("source", {})
    found = run.at.get((source.get("topic"), source.get("partition"), source.get("offset")))
    if found is None:
        return [f"unknown: not a record that was sent: {source}"]
    record, sent, verdict = found
    problems = [f"{record.mutation}: {e.message[:200]}" for e in LETTER_SCHEMA.iter_errors(letter)]
    reason = letter.get("reason")
    if verdict.outcome != "rejected":
        problems.append(f"{record.mutation}: dead-lettered ({reason}), must be {verdict.outcome}")
    elif reason in NOT_INVALID if verdict.reason == "invalid" else reason != verdict.reason:
        problems.append(f"{record.mutation}: reason {reason}, expected {verdict.reason}")
    want_key = None if sent.key is None else base64.b64encode(sent.key).decode()
    if letter.get("original_key_b64") != want_key or key != sent.key:
        problems.append(f"{record.mutation}: key {letter.get('original_key_b64')!r}, {key!r}")
    return problems + value_problems(letter, record)


def value_problems(letter: dict[str, Any], record: Record) -> list[str]:
    """The original value, exact; a record whose base64 exceeds the limit may come truncated,
    with original_sha256 and original_size (checked when those fields are there)."""
    value, name = base64.b64decode(letter.get("original_value_b64", "")), record.mutation
    if value == record.value:
        return []
    fits = 4 * len(record.value) // 3 + 65_536 <= DEAD_LETTER_LIMIT
    if fits or not record.value.startswith(value):
        return [f"{name}: original value differs ({len(value)} of {len(record.value)} bytes)"]
    digest, size = letter.get("original_sha256"), letter.get("original_size")
    if digest is not None and digest.lower() != hashlib.sha256(record.value).hexdigest():
        return [f"{name}: original_sha256 {digest} is wrong"]
    if size is not None and size != len(record.value):
        return [f"{name}: original_size {size}, sent {len(record.value)}"]
    return []


def check_dead_letters(settings, run: Run) -> None:
    """Every dead letter names a sent record that must be rejected, once, with its bytes."""
    rejected = [
        (s.topic, s.partition, s.offset) for _, s, v in run.items if v.outcome == "rejected"
    ]

    def letters() -> list[Any]:
        found = read_topic(settings, settings.topic("dead-letter"), timeout_s=30)
        assert len(found) >= len(rejected), f"{len(found)} dead letters, {len(rejected)} expected"
        return found

    problems: list[str] = []
    seen: Counter[tuple[Any, Any, Any]] = Counter()
    for msg in eventually(letters, timeout_s=20):
        letter = json.loads(msg.value())
        source = letter.get("source", {})
        seen[(source.get("topic"), source.get("partition"), source.get("offset"))] += 1
        problems += letter_problems(letter, msg.key(), run)
    problems += [
        f"{run.at[p][0].mutation}: dead-lettered {seen[p]} times" for p in rejected if seen[p] != 1
    ]
    kinds = Counter(p.split(":")[0].split("@")[0] for p in problems)
    shown = [p for k in kinds for p in [q for q in problems if q.startswith(k)][:2]]
    assert not problems, f"{len(problems)} by mutation {dict(kinds)}, e.g.\n" + "\n".join(shown)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # our own worker
        return json.loads(response.read())


def check_once(settings, topic: str, want: list[str], **match: str) -> None:
    """Each id in `want` is the source_event_id of exactly one `topic` record, and no other is."""
    records = [json.loads(m.value() or b"{}") for m in read_topic(settings, settings.topic(topic))]
    got = Counter(r["source_event_id"] for r in records if match.items() <= r.items())
    missing, extra = set(want) - set(got), set(got) - set(want)
    repeated = [i for i in want if got[i] > 1]
    assert not (missing or extra or repeated), (
        f"{topic}: {len(missing)} missing {sorted(missing)[:5]}, {len(extra)} unexpected "
        f"{sorted(extra)[:5]}, {len(repeated)} more than once {repeated[:5]}"
    )


def check_probes(settings, run: Run, probes: list[str]) -> None:
    """Each probe customer has the pending and available points of its valid purchases only
    (floor(amount / 100) each, no redemptions, no refunds); its final order is on hold."""
    assert not settings.points_multipliers
    now, want = datetime.now(UTC), {p: Counter[str]() for p in probes}
    for doc in run.processed("purchases"):
        rate = settings.points_rates.get(doc["currency"])
        if doc["customer_id"] in want and doc["type"] == "purchase" and rate:
            released = parse_time(doc["occurred_at"]) + settings.points_hold <= now
            points = int(doc["amount_cents"]) * rate[0] // rate[1]
            want[doc["customer_id"]]["available" if released else "pending"] += points
    finals = {d["order_id"] for d in run.processed("purchases", "final")}
    wrong = []
    for probe, expected in want.items():
        body = get_json(f"http://127.0.0.1:{settings.web_port}/points/{probe}")
        got = {"pending": body["pending"], "available": body["available"]}
        held = bool(finals & {h["order_id"] for h in body["holds"]})
        if got != {"pending": expected["pending"], "available": expected["available"]} or not held:
            wrong.append(f"{probe}: {got} (final order held: {held}), expected {dict(expected)}")
    assert not wrong, "\n".join(wrong)


def check_referrals(settings, worker, run: Run) -> None:
    """Counted by type; each valid sign-up forwarded once as a `signup` command."""
    docs = run.processed("referrals")
    for kind in ("invited", "signed_up"):
        got = worker.total("rewards_referral_events_total", type=kind)
        assert got == sum(d["type"] == kind for d in docs), f"{kind}: counted {got}"
    signups = [d["event_id"] for d in docs if d["type"] == "signed_up"]
    check_once(settings, "referral-commands", signups, command="signup")


def check_surveys(worker, run: Run) -> None:
    """The 7-day NPS window holds the valid answers of the last 7 days, by category."""
    since = datetime.now(UTC) - timedelta(days=7)
    want = Counter(
        "promoter" if d["score"] >= 9 else "passive" if d["score"] >= 7 else "detractor"
        for d in run.processed("survey-responses")
        if parse_time(d["occurred_at"]) >= since  # type: ignore[operator]  # processed: valid time
    )
    got = {c: worker.total("rewards_nps_responses", window="7d", category=c) for c in want}
    assert got == want, f"NPS answers {got}, expected {dict(want)}"


def test_fuzzed_records_are_each_accounted_for_once_and_the_worker_survives(settings, start_worker):
    fuzzer = Fuzzer(SEED, datetime.now(UTC).replace(minute=0, second=0, microsecond=0))
    garbage, final = fuzzer.records(RECORDS, EXCLUDE), fuzzer.final_batch()
    verdicts = Oracle(settings.max_event_bytes, settings.points_rates).judge_all(garbage + final)
    context = (
        f"fuzz seed {SEED}, {RECORDS} records, excluded {list(EXCLUDE)}: reproduce with "
        f"REWARDS_FUZZ_SEED={SEED} REWARDS_FUZZ_RECORDS={RECORDS} REWARDS_FUZZ_EXCLUDE=..."
    )
    print(context, Counter(v.outcome for v in verdicts))
    raise_topic_limit(settings, "purchases", TOPIC_MAX_BYTES)
    worker = start_worker(settings)
    sent = produce(settings, garbage) + produce(settings, final)  # the final batch after all
    run, checks = Run(garbage + final, sent, verdicts), Checks(context)
    counts = checks.run("settled", lambda: wait_settled(worker, run.sent_counts()))
    checks.run("worker alive", lambda: check_alive(worker))
    checks.run("accounting", lambda: check_accounting(counts or tally(worker.samples()), run))
    checks.run("dead letters", lambda: check_dead_letters(settings, run))
    checks.run("probe balances", lambda: check_probes(settings, run, fuzzer.probes))
    complaints = [d["event_id"] for d in run.processed("complaints")]
    decided = partial(check_once, settings, "compensation-decisions", complaints)
    checks.run("complaint decisions", decided)
    checks.run("referrals", lambda: check_referrals(settings, worker, run))
    checks.run("surveys", lambda: check_surveys(worker, run))
    checks.finish()


class Checks:
    """Runs every named check, then fails once with all of their failures."""

    def __init__(self, context: str) -> None:
        self.context, self.failures = context, list[str]()

    def run(self, name: str, check: Callable[[], Any]) -> Any:
        try:
            return check()
        except Exception as exc:  # a dead worker fails each check that needs it, by name
            self.failures.append(f"[{name}] {type(exc).__name__}: {str(exc)[:3000]}")
            return None

    def finish(self) -> None:
        if self.failures:
            pytest.fail("\n".join([self.context, *self.failures]), pytrace=False)
