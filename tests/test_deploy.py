"""Deployment files: Prometheus config and alert rules (promtool), the dashboard, docker-compose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.events import purchase, record
from tests.support import CI, REPO, eventually, publish

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
METRIC = re.compile(r"\b((?:rewards|faust)_[a-z_]+)")


def promtool(*args: str) -> str:
    """Run promtool (Debian's prometheus package) and return its output; fail if it fails."""
    binary = shutil.which("promtool")
    if binary is None:
        if CI:
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed")
    done = subprocess.run([binary, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_prometheus_config_is_valid(config):
    assert "SUCCESS" in promtool("check", "config", str(PROMETHEUS / config))


def test_alert_rules_are_valid_and_pass_their_unit_tests():
    rules = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    assert rules
    promtool("check", "rules", *rules)
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.test.yml"))
    assert len(tests) >= 2
    assert "SUCCESS" in promtool("test", "rules", *tests)


def test_every_alert_has_a_runbook():
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:  # recording rules have none
                    assert rule["annotations"].get("runbook"), rule["alert"]


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every dashboard, rows included."""
    found = []
    for path in DASHBOARDS:
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop()
            stack.extend(panel.get("panels", []))
            found += [(panel.get("title", "?"), t["expr"]) for t in panel.get("targets", [])]
    return found


def test_compose_file_references_existing_files():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert {"kafka", "redis", "worker", "demo", "prometheus", "grafana"} <= set(compose["services"])
    for service in compose["services"].values():
        build = service.get("build")
        if isinstance(build, dict):
            assert (REPO / build["context"] / build["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        done = subprocess.run(
            ["docker", "compose", "config", "-q"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


@pytest.mark.integration
def test_dashboard_queries_only_use_metrics_the_worker_exports(settings, start_worker):
    worker = start_worker(settings)
    event = purchase()
    publish(settings, "purchases", [record("purchases", event)] * 2 + [(b"c-1", b"{")])
    eventually(lambda: worker.total("rewards_events_consumed_total") == 3)
    exprs = dashboard_exprs()
    assert len(exprs) >= 10

    def exported() -> bool:  # some series appear only after a commit or a lag poll
        names = {name for name, _ in worker.samples()}
        for title, expr in exprs:
            for name in METRIC.findall(expr):
                assert name in names, (
                    f"panel {title!r} queries {name}, which the worker does not export"
                )
        return True

    eventually(exported)
