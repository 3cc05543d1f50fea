"""The alert rules load in Prometheus, behave as their promtool unit tests say (each alert
fires on a faulty series and stays quiet on a healthy one), the PrometheusRule object carries
the same rules, and every runbook_url points at a section of docs/runbook.md."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy import monitoring as m

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which(PROMTOOL):
        pytest.fail("promtool is missing: install Debian's `prometheus` package (make test does)")
    return subprocess.run([PROMTOOL, *args], cwd=m.MONITORING, capture_output=True, text=True, timeout=120)


def test_rules_are_valid() -> None:
    out = promtool("check", "rules", m.RULES.name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(m.alerts())} rules found" in out.stdout


def test_promtool_unit_tests_pass() -> None:
    out = promtool("test", "rules", m.RULES_TEST.name)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases: dict[str, dict[str, int]] = {a["alert"]: {"fires": 0, "quiet": 0} for a in m.alerts()}
    doc = m.load_yaml(m.RULES_TEST)[0]
    assert doc["rule_files"] == [m.RULES.name]
    for test in doc["tests"]:
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            assert name in cases, f"test {test['name']!r} checks {name}, which no rule defines"
            cases[name]["fires" if case.get("exp_alerts") else "quiet"] += 1
    missing = {n: c for n, c in cases.items() if not c["fires"] or not c["quiet"]}
    assert not missing, f"alerts without a firing or a quiet promtool case: {missing}"


def test_prometheusrule_carries_the_same_groups() -> None:
    docs = m.load_yaml(m.PROMETHEUS_RULE)
    assert len(docs) == 1
    obj = docs[0]
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert obj["spec"]["groups"] == m.rule_groups()


def test_alerts_carry_what_an_on_call_needs() -> None:
    anchors = {m.github_anchor(line.lstrip("#")) for line in m.RUNBOOK.read_text().splitlines()
               if line.startswith("#")}
    for a in m.alerts():
        assert a["labels"]["severity"] in ("critical", "warning"), a["alert"]
        ann = a["annotations"]
        assert ann["summary"] and ann["description"], a["alert"]
        page, _, anchor = ann["runbook_url"].partition("#")
        assert page == "docs/runbook.md", a["alert"]
        assert anchor in anchors, f"{a['alert']}: docs/runbook.md has no section #{anchor}"


def test_component_renders_with_kustomize(tmp_path: Path) -> None:
    if not shutil.which("kubectl"):
        pytest.fail("kubectl is missing (kubectl kustomize renders the component)")
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: herald\n"
        f"components:\n  - {os.path.relpath(m.MONITORING, tmp_path)}\n")
    rendered = subprocess.run(["kubectl", "kustomize", str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    kinds = [line.split(":", 1)[1].strip() for line in rendered.stdout.splitlines()
             if line.startswith("kind:")]
    processes = len(m.herald_processes())
    assert kinds.count("PodMonitor") == processes and "PrometheusRule" in kinds and "ConfigMap" in kinds
    assert 'grafana_dashboard: "1"' in rendered.stdout
    assert "herald-dashboard.json: |" in rendered.stdout
    assert rendered.stdout.count("port: metrics") == processes


def test_every_process_is_scraped_and_watched_under_its_own_name() -> None:
    """One PodMonitor per Deployment of the base (each email gateway role apart), and the
    process-down alert names exactly those jobs: a renamed or split process is not left
    unwatched."""
    processes = m.herald_processes()
    assert sorted(m.podmonitor_targets()) == sorted(processes)
    [down] = [a for a in m.alerts() if a["alert"] == "HeraldProcessDown"]
    jobs = re.fullmatch(r'up\{job=~"([\w|-]+)"\} == 0', down["expr"].strip())
    assert jobs is not None, down["expr"]
    assert set(jobs.group(1).split("|")) == processes
