"""Jinja2 templates of a job (subject, text, HTML) rendered per recipient.

Each distinct template source is compiled once (cache keyed by its SHA-256) and then
only rendered with the contact's fields. Templates come from campaign authors, so they
run in Jinja's sandbox; HTML autoescapes field values, subject and text do not.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import jinja2
from jinja2.sandbox import SandboxedEnvironment


class TemplateError(Exception):
    """The template does not compile or breaks the sandbox: the job can never succeed."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self, cache_size: int = 512) -> None:
        self._html_env = SandboxedEnvironment(autoescape=True, undefined=jinja2.Undefined)
        self._plain_env = SandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)
        self._cache: OrderedDict[tuple[bool, str], jinja2.Template] = OrderedDict()
        self._cache_size = cache_size
        self.compiled = 0  # how many templates were compiled (tests check the cache)

    def template(self, source: str, html: bool) -> jinja2.Template:
        key = (html, hashlib.sha256(source.encode("utf-8")).hexdigest())
        tpl = self._cache.get(key)
        if tpl is not None:
            self._cache.move_to_end(key)
            return tpl
        env = self._html_env if html else self._plain_env
        try:
            tpl = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template does not compile: {exc}") from exc
        self.compiled += 1
        self._cache[key] = tpl
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tpl

    def _render(self, source: str, html: bool, context: Mapping[str, object]) -> str:
        if not source:
            return ""
        try:
            return self.template(source, html).render(context)
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:  # includes the sandbox's SecurityError
            raise TemplateError(f"template failed: {exc}") from exc

    def render(self, subject: str, text: str, html: str,
               context: Mapping[str, object]) -> Rendered:
        # A subject is one header line: a field value must not be able to add headers.
        subj = " ".join(self._render(subject, False, context).split())
        return Rendered(subj, self._render(text, False, context), self._render(html, True, context))


def context_for(fields: Mapping[str, str], **extra: object) -> dict[str, object]:
    """Template variables: every contact field by name, plus `fields` and Herald's own
    values (email, unsubscribe_url, ...) which win over a field of the same name."""
    plain = fields if isinstance(fields, dict) else dict(fields)  # protobuf maps iterate slowly
    return {**plain, "fields": plain, **extra}
