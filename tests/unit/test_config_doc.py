from pathlib import Path

from cli import configdoc

DOC = Path(__file__).resolve().parents[2] / "docs/configuration.md"


def test_configuration_reference_lists_every_variable() -> None:
    assert DOC.read_text() == configdoc.render(), "run: python -m cli.configdoc > docs/configuration.md"


def test_every_variable_is_prefixed_and_documented() -> None:
    for name, s in configdoc.load_all().items():
        assert name.startswith("HERALD_") and len(s.doc) > 10, name
