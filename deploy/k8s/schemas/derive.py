"""Derive the JSON schemas in this folder from prometheus-operator's CRD manifests.

Usage (PyYAML needed; the checkers' venv has it):
    python derive.py monitoring.coreos.com_servicemonitors.yaml ... > written files

Each CRD's v1 openAPIV3Schema becomes a JSON schema: descriptions and x-kubernetes-* markers
are dropped (the schema stays the same shape), and every object that lists its properties
and does not keep unknown fields gets additionalProperties: false, as the API server's
strict field validation (kubectl apply --validate=strict) refuses unknown fields there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()
           if k != "description" and not k.startswith("x-kubernetes-")}
    if isinstance(out.get("pattern"), str) and out["pattern"].startswith("^(?i)"):
        # Go's RE2 takes an inline flag anywhere; Python's re only at the very start.
        out["pattern"] = "(?i)^" + out["pattern"][len("^(?i)"):]
    if "properties" in node:
        # Property names are data here, not schema keywords: keep every one of them.
        out["properties"] = {k: strict(v) for k, v in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    return out


def derive(crd: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = crd["spec"]["names"]["kind"]
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                       "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                       "annotations": {"type": "object", "additionalProperties": {"type": "string"}}},
    }
    schema["properties"]["apiVersion"] = {"const": "monitoring.coreos.com/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$comment"] = (f"{kind} monitoring.coreos.com/v1, derived from prometheus-operator "
                          f"{crd['metadata']['annotations']['operator.prometheus.io/version']} "
                          "example/prometheus-operator-crd by derive.py")
    return kind, schema


def main(paths: list[str]) -> None:
    here = Path(__file__).parent
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            kind, schema = derive(yaml.safe_load(fh))
        out = here / f"{kind.lower()}_v1.json"
        out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
