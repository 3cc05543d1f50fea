"""The email parts (subject, text, HTML) of a job, rendered per recipient with the one
template engine (shared.templating: the Jinja sandbox, its compiled-template cache).

The gateway adds only what is email's own: HTML autoescapes values, a subject is one
header line, and a template made of text and plain lookups gets the generated fast path
(gateways.email.plaintpl), whose output equals Jinja's. Any failure, at compile or at
render, is a TemplateError: the message fails (CONTENT_REJECTED), nothing unrendered
ever goes out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jinja2

from gateways.email.plaintpl import PlainTemplate, compile_plain
from shared import templating

TemplateError = templating.TemplateError

# (output, longest line or -1 if unknown, whether a line may start with ".")
Lines = tuple[str, int, bool]


def context(fields: Mapping[str, str], **own: object) -> dict[str, object]:
    """The render context: every job variable by name (the contact's own fields and the
    custom/per-trigger ones, MessageJob.fields), `fields`, and the gateway's own values
    (email, unsubscribe_url, ...), which win over a variable of the same name."""
    return templating.context(fields, **own)


context_for = context  # the name earlier callers used


class Part:
    """One compiled part. `render` and `render_lines` raise TemplateError only."""

    __slots__ = ("plain", "_render")

    def __init__(self, source: str, html: bool, raw: frozenset[str] = frozenset(),
                 fast: bool = True) -> None:
        try:
            tpl = templating.template(source, html)
        except TemplateError as exc:
            raise TemplateError(f"template does not compile: {exc}") from exc
        # The shared engine's environment: the fast path parses with the same rules.
        self.plain: PlainTemplate | None = (
            compile_plain(tpl.environment, source, raw) if fast else None)
        self._render: Callable[[Mapping[str, object]], str] = (
            self.plain.render if self.plain is not None else tpl.render)

    def render(self, ctx: Mapping[str, object]) -> str:
        try:
            return self._render(ctx)
        except Exception as exc:  # the sandbox's SecurityError, UndefinedError, int('x')...
            raise _failed(exc) from exc

    def render_lines(self, ctx: Mapping[str, object]) -> Lines:
        if self.plain is None:
            return self.render(ctx), -1, True
        try:
            return self.plain.render_lines(ctx)
        except Exception as exc:
            raise _failed(exc) from exc


def _failed(exc: Exception) -> TemplateError:
    if isinstance(exc, TemplateError):
        return exc
    detail = str(exc) if isinstance(exc, jinja2.TemplateError) \
        else f"{type(exc).__name__}: {exc}"
    return TemplateError(f"template failed: {detail}")


def one_line(subject: str) -> str:
    """A subject is one header line: a value must not be able to add headers."""
    return " ".join(subject.split())


def render_all(subject: str, text: str, html: str,
               ctx: Mapping[str, object]) -> tuple[str, str, str]:
    """(subject, text, HTML) of one recipient, for callers without a prepared skeleton."""
    return (one_line(Part(subject, False).render(ctx)) if subject else "",
            Part(text, False).render(ctx) if text else "",
            Part(html, True).render(ctx) if html else "")
