"""What the monitoring files say: rules and their promtool tests (YAML), the dashboard's
queries, and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy/k8s/components/monitoring"
RULES = MONITORING / "herald-rules.yaml"
RULES_TEST = MONITORING / "herald-rules.test.yaml"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "herald-dashboard.json"
RUNBOOK = ROOT / "docs/runbook.md"
PODMONITORS = MONITORING / "podmonitors.yaml"
BASE = ROOT / "deploy/k8s/base"

# Series Prometheus makes itself for every target, not exported by any process.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                      "group_right", "offset", "bool", "inf", "nan"})


def load_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file."""
    with path.open(encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def herald_processes() -> set[str]:
    """The Herald processes the base manifests run: their Deployments' names (a pod's
    app.kubernetes.io/name, the job label of its metrics)."""
    names = set()
    for path in sorted(BASE.glob("*.yaml")):
        for doc in load_yaml(path):
            if doc and doc.get("kind") == "Deployment":
                names.add(doc["metadata"]["name"])
    return names


def podmonitor_targets() -> list[str]:
    """The app.kubernetes.io/name each PodMonitor scrapes, one entry per PodMonitor."""
    return [d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]
            for d in load_yaml(PODMONITORS) if d and d.get("kind") == "PodMonitor"]


def rule_groups() -> list[dict[str, Any]]:
    return load_yaml(RULES)[0]["groups"]


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            exprs.append(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            exprs.append(q["query"])
    return exprs


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression (or a Grafana label_values() query) reads:
    identifiers that are not function calls, keywords, label names or durations."""
    s = _STRINGS.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)              # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)             # ranges and subqueries
    s = _GROUPING.sub(" ", s)                     # by (...), on (...), group_left (...)
    s = re.sub(r"\$\w+", " ", s)                  # Grafana variables
    s = re.sub(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,[^)]*\)", r" \1 ", s)
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # the exponent or unit of a number (1e3)
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Names of the samples in a /metrics text (histogram _bucket/_sum/_count included)."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def github_anchor(heading: str) -> str:
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")
