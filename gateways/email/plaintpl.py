"""A fast path for templates that are only text and plain lookups.

Most campaign templates are static text with `{{ first_name }}`-style fields. For those,
Jinja's per-render machinery (a new Context, a generator per template, Undefined objects)
is most of a 10 KB email's cost. A template whose parsed body is nothing but
  text, `{{ name }}`, `{{ name | default("literal") }}`, `{{ name[<int>] }}`
is turned into a list of fragments and looked up directly; anything else (tags, other
filters, attribute access, Jinja globals, `fields`) returns None and the caller renders
with Jinja as before. Output is identical to Jinja's (tests compare both), including
autoescaping, missing names rendering empty, and `default` applying only to missing names.
Lookups and literals cannot reach the sandbox's concerns (no attribute or call), so the
sandbox stays in force for every template that can.
"""

from __future__ import annotations

from collections.abc import Mapping

import jinja2
from jinja2 import nodes
from markupsafe import escape

_MISSING = object()


_Static = tuple[bool, int, int, int, bool, bool]


def _static_info(text: str) -> _Static:
    """(has newline, length of the first line part, of the last, longest inner line,
    first part starts with ".", a later line starts with ".")."""
    parts = text.split("\n")
    return (len(parts) > 1, len(parts[0]), len(parts[-1]),
            max((len(x) for x in parts[1:-1]), default=0), parts[0].startswith("."),
            any(x.startswith(".") for x in parts[1:]))


class PlainTemplate:
    """Fragments: str = literal text; (name, default, index, escape) = a lookup."""

    __slots__ = ("ops", "info")

    def __init__(self, ops: list[str | tuple[str, str | None, int | None, bool]]) -> None:
        self.ops = ops
        self.info: list[_Static | None] = [
            _static_info(op) if isinstance(op, str) else None for op in ops]

    def render(self, ctx: Mapping[str, object]) -> str:
        return self.render_lines(ctx)[0]

    def render_lines(self, ctx: Mapping[str, object]) -> tuple[str, int, bool]:
        """(output, longest line or -1 if unknown, whether a line may start with ".").
        Line facts of the literal text are known in advance; values are short and
        usually single-line ASCII, so the caller can skip scanning ~10 KB twice (line
        lengths for 7bit, dot-stuffing for SMTP) -- each scan costs ~10-20 us here.
        A value with a line break or non-ASCII makes the facts unknown."""
        out: list[str] = []
        add = out.append
        get = ctx.get
        col = longest = 0
        bol, dot, known = True, False, True
        for op, info in zip(self.ops, self.info, strict=True):
            if info is not None:
                add(op)  # type: ignore[arg-type]
                has_nl, first, last, inner, first_dot, inner_dot = info
                if bol and first_dot:
                    dot = True
                col += first
                if has_nl:
                    longest = max(longest, col, inner)
                    dot = dot or inner_dot
                    col = last
                    bol = last == 0
                elif first:
                    bol = False
                continue
            name, default, index, esc = op  # type: ignore[misc]
            value = get(name, _MISSING)
            if value is _MISSING:
                if index is not None:  # like Jinja: subscripting Undefined fails
                    raise jinja2.UndefinedError(f"{name!r} is undefined")
                if default is None:
                    continue  # jinja2.Undefined renders as ""
                value = default
            elif index is not None:
                try:
                    value = value[index]  # type: ignore[index]
                except (LookupError, TypeError):
                    continue  # Undefined as well
            if value.__class__ is not str:
                value = str(value)
            if esc:
                value = escape(value)
            add(value)  # type: ignore[arg-type]
            if known and value:
                if "\n" in value or "\r" in value or not value.isascii():  # type: ignore[operator,union-attr]
                    known = False
                else:
                    if bol and value[0] == ".":  # type: ignore[index]
                        dot = True
                    col += len(value)  # type: ignore[arg-type]
                    bol = False
        text = "".join(out)
        if not known:
            return text, -1, True
        return text, max(longest, col), dot


def compile_plain(env: jinja2.Environment, source: str,
                  raw: frozenset[str] = frozenset()) -> PlainTemplate | None:
    """The fast form of `source`, or None when it needs Jinja proper. Values of `raw`
    names are inserted as they are: the caller passes them already HTML-safe."""
    try:
        tree = env.parse(source)
    except jinja2.TemplateError:
        return None
    reserved = set(env.globals) | {"fields"}

    def lookup(n: nodes.Node) -> str | None:
        if isinstance(n, nodes.Name) and n.ctx == "load" and n.name not in reserved:
            return n.name
        return None

    auto = bool(env.autoescape)
    ops: list[str | tuple[str, str | None, int | None, bool]] = []
    for out in tree.body:
        if not isinstance(out, nodes.Output):
            return None
        for n in out.nodes:
            if isinstance(n, nodes.TemplateData):
                if ops and ops[-1].__class__ is str:
                    ops[-1] += n.data  # type: ignore[operator]
                else:
                    ops.append(n.data)
            elif (name := lookup(n)) is not None:
                ops.append((name, None, None, auto and name not in raw))
            elif (isinstance(n, nodes.Filter) and n.name in {"default", "d"}
                  and (name := lookup(n.node)) is not None and len(n.args) == 1
                  and isinstance(n.args[0], nodes.Const) and isinstance(n.args[0].value, str)
                  and not n.kwargs and n.dyn_args is None and n.dyn_kwargs is None):
                ops.append((name, n.args[0].value, None, auto and name not in raw))
            elif (isinstance(n, nodes.Getitem) and (name := lookup(n.node)) is not None
                  and isinstance(n.arg, nodes.Const) and type(n.arg.value) is int
                  and n.arg.value >= 0):
                ops.append((name, None, n.arg.value, auto and name not in raw))
            else:
                return None
    return PlainTemplate(ops)
