"""The one personalisation engine: Jinja2 in its sandbox, for every channel.

Campaigns check templates with it when a campaign is created or edited (syntax, unknown
variables, size) and render previews; the gateways render each message with it from the
variables the job carries. A known variable that a recipient lacks renders empty; nothing
unrendered ever leaves Herald, because a template that does not parse is refused at create.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

# Variables every recipient has (possibly empty). Channel-specific ones are added by the
# channel (email: unsubscribe_url).
BUILTIN_VARIABLES = ("first_name", "last_name", "full_name", "phone", "email", "external_id",
                     "language", "contact_id", "fields")
CHANNEL_VARIABLES = {"email": ("unsubscribe_url",)}


class TemplateError(Exception):
    """A template does not parse, uses an unknown variable, or failed in the sandbox."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Issue:
    """One problem of one template, for a field violation."""

    message: str
    line: int | None = None

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


_plain = SandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)
_html = SandboxedEnvironment(autoescape=True, undefined=jinja2.Undefined)
_cache: OrderedDict[tuple[bool, str], jinja2.Template] = OrderedDict()
_CACHE_SIZE = 512


def _env(html: bool) -> SandboxedEnvironment:
    return _html if html else _plain


def is_template(source: str) -> bool:
    """Plain text needs no rendering (the common case for bulk SMS): skip Jinja entirely."""
    return "{" in source


def variables(source: str) -> set[str]:
    """The top-level variables a template reads. Raises TemplateError on a syntax error."""
    try:
        ast = _plain.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from exc
    return set(meta.find_undeclared_variables(ast))


def check(source: str, known: Iterable[str]) -> list[Issue]:
    """Syntax errors and unknown variables of one template (empty list: fine)."""
    if not source or not is_template(source):
        return []
    try:
        used = variables(source)
    except TemplateError as exc:
        return [Issue(str(exc).split(": ", 1)[-1] if exc.line is not None else str(exc), exc.line)]
    unknown = sorted(used - set(known))
    if not unknown:
        return []
    lines = source.splitlines()
    out = []
    for name in unknown:
        line = next((i + 1 for i, text in enumerate(lines) if name in text), None)
        out.append(Issue(f"unknown variable {name!r}", line))
    return out


def template(source: str, html: bool = False) -> jinja2.Template:
    key = (html, hashlib.sha256(source.encode("utf-8")).hexdigest())
    tpl = _cache.get(key)
    if tpl is not None:
        _cache.move_to_end(key)
        return tpl
    try:
        tpl = _env(html).from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", exc.lineno) from exc
    _cache[key] = tpl
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return tpl


def render(source: str, context: Mapping[str, object], html: bool = False) -> str:
    """Render one template; plain text comes back as is."""
    if not source or not is_template(source):
        return source
    try:
        return template(source, html).render(context)
    except TemplateError:
        raise
    except jinja2.TemplateError as exc:  # includes the sandbox's SecurityError
        raise TemplateError(f"template failed: {exc}") from exc
    except Exception as exc:  # a filter on a bad value (e.g. int('x')) must fail the message only
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from exc


def full_name(first: str, last: str) -> str:
    return " ".join(x for x in (first, last) if x)


def recipient_variables(*, first_name: str = "", last_name: str = "", phone: str = "",
                        email: str = "", external_id: str = "", language: str = "",
                        contact_id: str = "", fields: Mapping[str, str] | None = None
                        ) -> dict[str, str]:
    """The flat variable map a job carries (MessageJob.fields): custom fields first, then the
    contact's own fields, which win over a custom field of the same name."""
    out = dict(fields or {})
    out.update(first_name=first_name, last_name=last_name,
               full_name=full_name(first_name, last_name), phone=phone, email=email,
               external_id=external_id, language=language, contact_id=contact_id)
    return out


def context(variables_: Mapping[str, str], **extra: object) -> dict[str, object]:
    """The render context: every variable by name, the map itself as `fields`, plus the
    channel's own values (which win)."""
    plain = variables_ if isinstance(variables_, dict) else dict(variables_)
    # An empty value is a value the recipient lacks: left undefined, it still renders empty
    # and {{ first_name | default("there") }} takes its default.
    return {**{k: v for k, v in plain.items() if v != ""}, "fields": plain, **extra}


SAMPLE = recipient_variables(first_name="Alex", last_name="Martin", phone="+447700900123",
                             email="alex.martin@example.com", external_id="sample-1",
                             language="en", contact_id="00000000-0000-0000-0000-000000000000")


def known_variables(channel: str, custom: Iterable[str] = ()) -> set[str]:
    return set(BUILTIN_VARIABLES) | set(CHANNEL_VARIABLES.get(channel, ())) | set(custom)
