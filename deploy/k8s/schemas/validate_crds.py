"""Validate the prometheus-operator resources of rendered manifests against this folder's
JSON schemas, which kubernetes-validate does not carry.

    python validate_crds.py RENDERED.yaml ...

Prints one JSON object: {"documents": {file: [every document, parsed]}, "errors": [...]}
and exits 1 when a monitoring.coreos.com resource does not validate or has no schema here.
Needs PyYAML and jsonschema (the deployment checkers' venv has both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

HERE = Path(__file__).parent
GROUP = "monitoring.coreos.com/"


def schema_for(doc: dict[str, Any]) -> dict[str, Any] | None:
    version = doc["apiVersion"].split("/", 1)[1]
    path = HERE / f"{doc['kind'].lower()}_{version}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def errors_of(doc: dict[str, Any]) -> list[str]:
    where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    schema = schema_for(doc)
    if schema is None:
        return [f"{where}: no schema for {doc['apiVersion']} {doc['kind']} in {HERE.name}/"]
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{where}: {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))]


def main(paths: list[str]) -> int:
    documents: dict[str, list[dict[str, Any]]] = {}
    errors: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        documents[path] = docs
        for doc in docs:
            if str(doc.get("apiVersion", "")).startswith(GROUP):
                errors += [f"{path}: {e}" for e in errors_of(doc)]
    json.dump({"documents": documents, "errors": errors}, sys.stdout)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
