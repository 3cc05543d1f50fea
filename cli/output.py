"""What the CLI prints: rich tables for people, JSON for machines (--json), and table
columns that never cut an id."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def enum(name: str) -> str:
    """CAMPAIGN_STATUS_SENDING -> SENDING (the prefix is the enum's name in upper case)."""
    for prefix in ("CAMPAIGN_STATUS_", "CAMPAIGN_MODE_", "CAMPAIGN_OUTCOME_", "MODERATION_STATE_",
                   "CHANNEL_", "MESSAGE_STATUS_", "MESSAGE_STAGE_", "DELIVERY_RESULT_",
                   "FAILURE_CATEGORY_", "EXPORT_STATUS_"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return name


def ts(t: Any) -> str:
    return t.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if t.seconds else "-"


class Output:
    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.console = Console()
        self.err = Console(stderr=True)

    def print(self, *items: Any, **kw: Any) -> None:
        if not self.json:
            self.console.print(*items, **kw)

    def error(self, text: str) -> None:
        # With --json stdout carries only JSON, so errors go to stderr; otherwise they stay
        # with the rest of the output on stdout, where scripts have always read them.
        (self.err if self.json else self.console).print(text, markup=False, highlight=False,
                                                        soft_wrap=True)

    def emit(self, value: Any, line: bool = False) -> None:
        """A message, a list of messages or plain data, as JSON on stdout (one line when
        line=True, for streams)."""
        data = _plain(value)
        text = json.dumps(data, separators=(",", ":")) if line else json.dumps(data, indent=2)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, Message):
        return to_dict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def table(title: str, columns: Iterable[str], ids: Iterable[str] = (), rows: list[list[Any]] | None = None,
          right: Iterable[str] = ()) -> Table:
    """A table whose id columns (named in `ids`) are never wrapped, folded or ellipsized:
    they are as wide as their longest value; the other columns give way."""
    rows = rows or []
    ids, right = set(ids), set(right)
    t = Table(title=title, title_justify="left")
    cols = list(columns)
    for i, col in enumerate(cols):
        if col in ids:
            width = max([len(col), *(len(str(r[i])) for r in rows)])
            t.add_column(col, no_wrap=True, min_width=width, overflow="fold")
        else:
            t.add_column(col, justify="right" if col in right else "left")
    for r in rows:
        # Values are data, not markup: a name like "[red]" prints as typed.
        t.add_row(*(escape(v) if isinstance(v, str) else v for v in r))
    return t
