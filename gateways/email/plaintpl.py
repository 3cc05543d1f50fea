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

import re
from collections.abc import Callable, Mapping

import jinja2
from jinja2 import nodes
from markupsafe import escape

_MISSING = object()
# the characters markupsafe.escape replaces: a value without them is its own escaped form
_HTML_SPECIAL = re.compile("[&<>'\"]").search


_Static = tuple[bool, int, int, int, bool, bool]


def _static_info(text: str) -> _Static:
    """(has newline, length of the first line part, of the last, longest inner line,
    first part starts with ".", a later line starts with ".")."""
    parts = text.split("\n")
    return (len(parts) > 1, len(parts[0]), len(parts[-1]),
            max((len(x) for x in parts[1:-1]), default=0), parts[0].startswith("."),
            any(x.startswith(".") for x in parts[1:]))


class PlainTemplate:
    """Fragments: str = literal text; (name, default, index, escape) = a lookup.

    `render_lines` is a Python function generated for the template (see _generate): the
    generic loop over the fragments (`render_lines_generic`, kept as the reference and
    for tests) cost 21.8 us for the bench's 8 KB newsletter (35 fragments) on this
    machine, the generated straight-line code ~5 us."""

    __slots__ = ("ops", "info", "render_lines")

    def __init__(self, ops: list[str | tuple[str, str | None, int | None, bool]]) -> None:
        self.ops = ops
        self.info: list[_Static | None] = [
            _static_info(op) if isinstance(op, str) else None for op in ops]
        self.render_lines: Callable[[Mapping[str, object]], tuple[str, int, bool]] = \
            _generate(ops, self.info)

    def render(self, ctx: Mapping[str, object]) -> str:
        return self.render_lines(ctx)[0]

    def render_lines_generic(self, ctx: Mapping[str, object]) -> tuple[str, int, bool]:
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


def _generate(ops: list[str | tuple[str, str | None, int | None, bool]],
              info: list[_Static | None]) -> Callable[[Mapping[str, object]], tuple[str, int, bool]]:
    """Straight-line Python for render_lines_generic on these fragments: one lookup per
    distinct name, the values' line facts folded with the literal text's at generation
    time (a line's length = its literal characters + len() of the values on it; a value
    or literal can start a line only if every value since the line break is empty).
    Only identifiers (checked) and repr()'d constants reach the source; literal text is
    passed as data (`L[i]`)."""
    lines = ["def render_lines(ctx):", " get = ctx.get"]
    names: dict[str, str] = {}
    parts: list[str] = []  # the output, in order: L[i] or a value variable
    values: list[str] = []
    literals: list[str] = []
    longest_const = 0
    longest_exprs: list[str] = []
    dot_const = False
    dot_exprs: list[str] = []
    line_const, line_vars = 0, []  # the line being built
    bol: list[str] | None = []  # at a line start iff all these values are empty; None: not

    def empty_all(chain: list[str]) -> str:
        return "True" if not chain else "not (" + " or ".join(chain) + ")"

    for op, inf in zip(ops, info, strict=True):
        if inf is not None:
            has_nl, first, last, inner, first_dot, inner_dot = inf
            literals.append(op)  # type: ignore[arg-type]
            parts.append(f"L[{len(literals) - 1}]")
            if first_dot and bol is not None:
                if not bol:
                    dot_const = True
                else:
                    dot_exprs.append(empty_all(bol))
            line_const += first
            if has_nl:
                if line_vars:
                    longest_exprs.append(" + ".join([str(line_const)] + [f"len({v})" for v in line_vars]))
                else:
                    longest_const = max(longest_const, line_const)
                longest_const = max(longest_const, inner)
                dot_const = dot_const or inner_dot
                line_const, line_vars = last, []
                bol = [] if last == 0 else None
            elif first:
                bol = None
            continue
        name, default, index, esc = op  # type: ignore[misc]
        if not name.isidentifier():
            raise ValueError(f"not a name: {name!r}")
        var = f"v{len(values)}"
        values.append(var)
        base = names.get(name)
        if base is None:
            base = names[name] = f"n{len(names)}"
            lines.append(f" {base} = get({name!r}, M)")
        if index is not None:
            lines += [f" if {base} is M: raise UndefinedError({repr(name) + ' is undefined'!r})",
                      f" try: {var} = {base}[{int(index)}]",
                      f" except (LookupError, TypeError): {var} = ''",
                      " else:"]
        elif default is None:
            lines += [f" if {base} is M: {var} = ''", " else:", f"  {var} = {base}"]
        else:
            dflt = str(escape(default)) if esc else default
            lines += [f" if {base} is M: {var} = {dflt!r}", " else:", f"  {var} = {base}"]
        lines.append(f"  if {var}.__class__ is not str: {var} = str({var})")
        if esc:  # escape() costs 1.1 us per value (a Markup built), the search 0.24 us
            lines.append(f"  if special({var}): {var} = escape({var})")
        parts.append(var)
        if bol is not None:
            dot_exprs.append(f"({var}[:1] == '.' and {empty_all(bol)})")
            bol = [*bol, var]
        line_vars.append(var)
    if line_vars:
        longest_exprs.append(" + ".join([str(line_const)] + [f"len({v})" for v in line_vars]))
    else:
        longest_const = max(longest_const, line_const)
    lines.append(f" text = ''.join(({', '.join(parts)},))" if parts else " text = ''")
    if values:
        lines += [f" vs = ''.join(({', '.join(values)},))",
                  " if vs and ('\\n' in vs or '\\r' in vs or not vs.isascii()): return text, -1, True"]
    longest = f"max({', '.join([str(longest_const), *longest_exprs])})" if longest_exprs \
        else str(longest_const)
    dot = "True" if dot_const else (" or ".join(dot_exprs) if dot_exprs else "False")
    lines.append(f" return text, {longest}, bool({dot})")
    namespace: dict[str, object] = {"M": _MISSING, "L": tuple(literals), "escape": escape,
                                    "special": _HTML_SPECIAL,
                                    "UndefinedError": jinja2.UndefinedError}
    exec(compile("\n".join(lines), "<plaintpl>", "exec"), namespace)  # noqa: S102
    return namespace["render_lines"]  # type: ignore[return-value]


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
