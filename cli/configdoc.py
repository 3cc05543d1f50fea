"""Print docs/configuration.md from the HERALD_* settings registry (`python -m cli.configdoc`)."""

from __future__ import annotations

import importlib

from shared import config

# Every module that declares settings; a unit test fails if docs/ is out of date.
SETTINGS_MODULES = [
    "shared.config", "shared.bus", "shared.db",
    "services.campaigns.settings",
    "services.recipients.settings",
    "services.stats.settings",
    "gateways.smpp.settings",
    "gateways.email.settings",
    "gateways.postback.settings",
    "cli.settings",
]


def load_all() -> dict[str, config.Setting]:
    for mod in SETTINGS_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    return dict(sorted(config.REGISTRY.items()))


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Every Herald process is configured by environment variables only. This page is",
        "generated from the settings registry (`python -m cli.configdoc > docs/configuration.md`);",
        "a unit test fails when it is out of date.",
        "",
        "| variable | default | read by | meaning |",
        "|---|---|---|---|",
    ]
    for s in load_all().values():
        default = f"`{s.default}`" if s.default else "(empty)"
        doc = s.doc.replace("|", "\\|")
        lines.append(f"| `{s.name}` | {default} | {s.scope} | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
