"""The seeded fraud scenario (`streams.bench.fraud_scenario`) on a real worker: every kind of
self-referral is stopped before its rewards are paid, and only household referrals are held."""

from __future__ import annotations

import pytest

from streams.bench.fraud_scenario import KINDS, build, run
from streams.settings_env import settings_env

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def test_every_kind_of_self_referral_is_stopped_and_honest_ones_are_paid(settings, tmp_path):
    scenario = build(customers=240, seed=3)
    assert {kind for *_, kind in scenario.referrals} == {*KINDS, "honest", "honest_household"}
    result = run(scenario, settings, settings_env(settings), "streams.cli", tmp_path / "w.log")
    by_kind = result["by_kind"]
    assert result["fraud_stopped_share"] == 1.0, by_kind
    assert by_kind["honest"]["paid"] == by_kind["honest"]["referrals"] > 0
    assert by_kind["honest_household"]["paid"] == 0  # the same address: held for an operator
