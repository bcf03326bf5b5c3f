"""The peer benchmark: a lean peer run verifies and is timed; a corrupted output fails."""

from __future__ import annotations

import textwrap

import orjson
import pytest

from streams.adapters.kafka_io import admin_client
from streams.bench.peer_data import verify
from streams.bench.peer_procs import Peer, checkout_peers
from streams.bench.peers import PeerBenchOptions, run_peer_bench

EVENTS = 10_000
"""Enough for several output bursts: the first burst is not counted (start-up is excluded)."""
CORRUPTING_PEER = '''
"""The lean peer, except that the first ledger record it ever produces is changed."""

import orjson
import peer_lean

real = peer_lean.apply
done = []


def corrupt(state, value, timestamp_ms):
    new, outputs = real(state, value, timestamp_ms)
    if outputs and not done:
        done.append(True)
        key, ledger = outputs[0]
        body = orjson.loads(ledger)
        body["available_after"] += 1
        outputs = [(key, orjson.dumps(body)), *outputs[1:]]
    return new, outputs


peer_lean.apply = corrupt
peer_lean.main()
'''


def small(tmp_path, systems: tuple[str, ...], **overrides) -> PeerBenchOptions:
    return PeerBenchOptions(
        systems=systems, events=EVENTS, customers=1_000, repeat=1, venv="main",
        json_path=tmp_path / "peers.json", **overrides,
    )  # fmt: skip


@pytest.mark.integration
def test_lean_peer_run_verifies_and_is_timed(settings, tmp_path):
    results = run_peer_bench(settings, small(tmp_path, ("lean",)))

    [run] = results
    assert run.ok, f"{run.status}; {run.verification}"
    assert run.status == "done"
    assert run.verification.startswith("ok")
    assert run.output_records >= EVENTS  # ~1.2 ledger records per purchase, duplicates allowed
    assert run.events_per_s > 0
    assert run.events_per_cpu_s > 0
    assert 0 < run.outputs_s <= run.wall_s
    assert run.cpu_s > 0
    assert 0 < run.events <= EVENTS
    assert run.peak_rss_mib > 10
    saved = orjson.loads((tmp_path / "peers.json").read_bytes())
    assert saved["input"]["events"] == EVENTS
    assert saved["input"]["expected_ledger_records"] > EVENTS
    assert saved["summary"]["lean"]["verified"] == 1
    assert saved["summary"]["lean"]["events_per_s"]["median"] == pytest.approx(run.events_per_s)
    topics = admin_client(settings.kafka_bootstrap_servers).list_topics(timeout=10).topics
    assert saved["input"]["topic"] not in topics  # cleaned up
    assert not [t for t in topics if t.startswith(saved["input"]["topic"].rsplit("-", 1)[0])]


@pytest.mark.integration
def test_a_system_that_changes_one_ledger_record_fails_verification(settings, tmp_path, capsys):
    script = tmp_path / "peer_corrupt.py"
    script.write_text(textwrap.dedent(CORRUPTING_PEER))
    corrupt = Peer("corrupt", script, requirements=None)

    results = run_peer_bench(
        settings, small(tmp_path, ("corrupt",), stall_s=5.0), peers={"corrupt": corrupt}
    )

    [run] = results
    assert not run.ok
    assert run.verification.startswith("FAILED")
    assert "1 missing, 1 differing, 0 unexpected" in run.verification
    assert run.events_per_s == 0 and run.events_per_cpu_s == 0  # a failed run is not timed
    assert "FAILED" in capsys.readouterr().out
    saved = orjson.loads((tmp_path / "peers.json").read_bytes())
    assert saved["summary"]["corrupt"]["verified"] == 0


def ledger(entry_id: str, available_after: int = 1) -> bytes:
    return orjson.dumps({"entry_id": entry_id, "available_after": available_after})


def test_verify_allows_duplicates_and_rejects_missing_differing_and_unexpected():
    expected = {"a": ledger("a"), "b": ledger("b")}

    assert verify(expected, [ledger("a"), ledger("b"), ledger("a")]).ok
    missing = verify(expected, [ledger("a")])
    assert (missing.ok, missing.missing, missing.mismatched) == (False, 1, 0)
    differing = verify(expected, [ledger("a"), ledger("b"), ledger("b", 2)])
    assert (differing.ok, differing.missing, differing.mismatched) == (False, 0, 1)
    extra = verify(expected, [ledger("a"), ledger("b"), ledger("c"), b"not json"])
    assert (extra.ok, extra.unexpected) == (False, 2)
    assert verify(expected, [ledger("a"), ledger("b")]).describe() == "ok (2 records)"


def test_quix_in_exactly_once_mode_runs_from_the_quix_pins_and_venv():
    peers = checkout_peers()
    eos, quix = peers["quix_eos"], peers["quix"]

    assert eos.requirements == quix.requirements and eos.pins == "quix"
    assert eos.script.exists()
    assert 'main("exactly-once")' in eos.script.read_text()
    assert "processing_guarantee=guarantee" in quix.script.read_text()
