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


class PlainTemplate:
    """Fragments: str = literal text; (name, default, index, escape) = a lookup."""

    __slots__ = ("ops",)

    def __init__(self, ops: list[str | tuple[str, str | None, int | None, bool]]) -> None:
        self.ops = ops

    def render(self, ctx: Mapping[str, object]) -> str:
        out: list[str] = []
        add = out.append
        get = ctx.get
        for op in self.ops:
            if op.__class__ is str:
                add(op)  # type: ignore[arg-type]
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
            add(escape(value) if esc else value)  # type: ignore[arg-type]
        return "".join(out)


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
