"""A campaign template prepared once, then per recipient only the variable parts filled in.

Prepared once per (campaign, variant, sender, subject, text, html):
  - the templates compiled by the one engine (shared.templating, sandboxed; the fast
    path of gateways.email.plaintpl for plain lookups);
  - every static http(s) <a href> of the HTML source replaced by `{{ _herald_links[i] }}`
    and the open pixel put before </body>, so per recipient Jinja writes the signed URLs
    directly (no HTML scan); hrefs that are themselves templated are rewritten after
    rendering, the only case that scans the output;
  - the JSON of every click token minus the message id, so a click URL costs one
    string join, one base64 and one HMAC;
  - long source lines folded at spaces that mean the same as a newline (between
    attributes), so rendered ASCII bodies go out as 7bit with no encoding pass (non-ASCII
    bodies fall back to quoted-printable); the sender, a random multipart boundary.
Per recipient: render subject/text/HTML, sign the tokens (one keyed BLAKE2b each), join
bytes, and DKIM-sign when a key is configured.
"""

from __future__ import annotations

import binascii
import email.utils
import html as htmllib
import json
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from herald.v1 import events_pb2 as e
from markupsafe import escape

from gateways.email import links, mime, render, tokens
from gateways.email.dkimsign import DkimSigner
from gateways.email.render import TemplateError, context, one_line
from shared import channels

_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
_UNSUB_HREF = re.compile(r"^\{\{-?\s*unsubscribe_url\s*-?\}\}$")

_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) does to a str
LINKS_VAR = "_herald_links"
PIXEL_VAR = "_herald_pixel"


class SenderError(ValueError):
    """The job's From address is unusable (a campaign configuration problem)."""


class Composed(NamedTuple):
    """Immutable; a NamedTuple builds in a fraction of a frozen dataclass's time (its
    __init__ goes through object.__setattr__ per field)."""

    mail_from: str
    rcpt: str
    message_id_header: str
    data: bytes
    dot_free: bool = False  # no line starts with "." (the SMTP client need not stuff)


def fold_source(source: str, width: int = 200) -> str:
    """Break long template lines where a newline means the same as the space it replaces:
    between attributes inside a tag (outside quotes), or in text past 4x width. Never
    inside a Jinja tag/expression. Rendered lines then stay far below SMTP's 998 octets,
    so ASCII bodies go out as 7bit without per-message quoted-printable encoding."""
    out = []
    col = 0
    in_tag = False
    quote = ""
    jinja = False
    n = len(source)
    i = 0
    while i < n:
        ch = source[i]
        two = source[i:i + 2]
        if jinja:
            if two in ("}}", "%}", "#}"):
                jinja = False
                out.append(two)
                i += 2
                col += 2
                continue
        elif two in ("{{", "{%", "{#"):
            jinja = True
            out.append(two)
            i += 2
            col += 2
            continue
        elif in_tag:
            if quote:
                if ch == quote:
                    quote = ""
            elif ch in "\"'":
                quote = ch
            elif ch == ">":
                in_tag = False
            elif ch == " " and col >= width:
                out.append("\n")
                col = 0
                i += 1
                continue
        elif ch == "<":
            in_tag = True
        elif ch == " " and col >= 4 * width:
            out.append("\n")
            col = 0
            i += 1
            continue
        col = 0 if ch == "\n" else col + 1
        out.append(ch)
        i += 1
    return "".join(out)


def encode_body(text: str, longest: int = -1) -> tuple[bytes, str]:
    """(CRLF body, Content-Transfer-Encoding): 7bit when ASCII with lines <= 998 octets
    (no per-message encoding pass), else quoted-printable. `longest`: the longest line
    when the caller knows it (PlainTemplate.render_lines), else the body is scanned."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if text.isascii():
        raw = text.encode("ascii").replace(b"\n", b"\r\n")
        if longest < 0:
            longest = max(map(len, raw.split(b"\r\n")))
        if longest <= 998 and not raw.startswith(b"From "):
            return raw, "7bit"
    return _qp(text), "quoted-printable"


def _qp(text: str) -> bytes:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True).replace(
        b"\n", b"\r\n")


_date_cache: tuple[int, str] = (0, "")


def date_header() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def prepare_html(source: str) -> tuple[str, list[str], bool]:
    """(template source with static links and pixel as variables, static link URLs in
    order, whether templated hrefs remain that need rewriting after rendering)."""
    urls: list[str] = []
    dynamic = False

    def sub(m: re.Match[str]) -> str:
        nonlocal dynamic
        raw = m.group(3).strip()
        if "{{" in raw or "{%" in raw:
            if not _UNSUB_HREF.match(raw):
                dynamic = True
            return m.group(0)
        url = htmllib.unescape(raw)
        if not url.lower().startswith(("http://", "https://")):
            return m.group(0)
        urls.append(url)
        return f"{m.group(1)}{m.group(2)}{{{{ {LINKS_VAR}[{len(urls) - 1}] }}}}{m.group(2)}"

    out = fold_source(_HREF.sub(sub, source))
    img = (f'<img src="{{{{ {PIXEL_VAR} }}}}" width="1" height="1" alt="" '
           'style="display:block;border:0;width:1px;height:1px" />')
    ends = list(_BODY_END.finditer(out))
    out = out + img if not ends else out[:ends[-1].start()] + img + out[ends[-1].start():]
    return out, urls, dynamic


class Skeleton:
    def __init__(self, job: e.MessageJob, signer: tokens.Signer, base_url: str,
                 unsubscribe_mailto: str) -> None:
        try:
            self.from_header, self.sender = mime.parse_sender(job.sender)
        except mime.AddressError as exc:
            raise SenderError(str(exc)) from exc
        self.domain = mime.domain_of(self.sender)
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.mailbox = unsubscribe_mailto or f"unsubscribe@{self.domain}"
        self._common = {k: v for k, v in (("c", job.campaign_id), ("w", job.workspace_id),
                                          ("v", job.variant)) if v}
        self._open_p = signer.part({"k": tokens.OPEN, **self._common})
        self._unsub_json = tokens.compact_json({"k": tokens.UNSUBSCRIBE, **self._common})[:-1] + ',"a":'
        # Compiled by the one engine (shared.templating); plain-lookup templates get the
        # generated fast path (same output as Jinja).
        content = channels.email_content(job)
        self.subject = render.Part(content.subject, False) if content.subject else None
        self.text = render.Part(content.text, False) if content.text else None
        self.dynamic_links = False
        self.link_urls: list[str] = []
        self.html = None
        if content.html:
            source, self.link_urls, self.dynamic_links = prepare_html(content.html)
            # Tracking URLs are HTML-safe (base URL checked, tokens are base64url and
            # dots): the fast path inserts them without escaping; the rare untracked
            # fallback URL is escaped once here. Jinja escapes them like any value.
            self.html = render.Part(source, True, frozenset({LINKS_VAR, PIXEL_VAR}),
                                    fast=str(escape(self.base_url)) == self.base_url)
        if self.subject is None and self.text is None and self.html is None:
            raise TemplateError("email without subject and body")
        self._html_plain = self.html is not None and self.html.plain is not None
        self._safe_urls = [str(escape(u)) for u in self.link_urls]
        self._link_p = [signer.part({"k": tokens.CLICK, **self._common, "i": i, "u": url,
                                     "h": tokens.url_hash(url)})
                        for i, url in enumerate(self.link_urls)]
        self._click_base = f"{self.base_url}/c/"
        self._links_sign = signer.prepared_many(self._link_p)
        self._click_urls = signer.prepared_many(self._link_p, self._click_base)
        # tokens of every link fit when len(M) is at most this (token = P "." M "." 22)
        self._m_fits = tokens.MAX_TOKEN - 24 - max(map(len, self._link_p), default=0)
        self._open_sign = signer.prepared(self._open_p)
        self.boundary = f"=_herald_{secrets.token_hex(12)}"
        self.source_text = content.text
        self.source_html = content.html

    # --- per recipient ------------------------------------------------------------
    def unsubscribe_url(self, job: e.MessageJob, m: str) -> str:
        # The JSON of signer.part({"k": "u", **common, "a": to, "ct": contact}) joined
        # from a prefix made once: json.dumps with separators= cost ~3.7 us per call
        # here (a new encoder each time), the join ~0.4 us. Same bytes (checked in tests).
        raw = self._unsub_json + _json_str(job.to)
        if job.contact_id:
            raw += ',"ct":' + _json_str(job.contact_id)
        p = tokens.b64e((raw + "}").encode("utf-8"))
        return f"{self.base_url}/u/{self.signer.sign_parts(p, m)}"

    def click_urls(self, m: str) -> list[str]:
        base, limit = self._click_base, tokens.MAX_TOKEN
        # Too long for a request line: leave the link untracked rather than broken.
        return [base + tok if len(tok) <= limit else "" for tok in self._links_sign(m)]

    def _links(self, m: str, plain_urls: list[str]) -> list[str]:
        """The href of every static link: its click URL, or the URL itself (as the
        renderer wants it) when the token would be too long."""
        if len(m) <= self._m_fits:  # the usual case: no per-link length check
            return self._click_urls(m)
        return [c or u for c, u in zip(self.click_urls(m), plain_urls, strict=True)]

    def compose(self, job: e.MessageJob, rcpt: str, mail_from: str, dkim: DkimSigner | None,
                fallback_click: Callable[[int, str], str | None]) -> Composed:
        mid = job.message_id
        message_id_header = f"<{mid}@{self.domain}>"
        m = self.signer.message_part(mid)
        unsub = self.unsubscribe_url(job, m)
        # shared.templating.context: every job variable (the contact's own fields and the
        # custom ones), `fields`, then the gateway's own values, which win.
        ctx = context(job.fields, email=rcpt, unsubscribe_url=unsub, message_id=mid)
        # Each part raises TemplateError only: the message fails, nothing unrendered goes.
        subject = one_line(self.subject.render(ctx)) if self.subject is not None else ""
        # line facts (longest line, a line starting with "."): -1/True = unknown
        t_long, t_dot, h_long, h_dot = -1, True, -1, True
        text = ""
        if self.text is not None:
            text, t_long, t_dot = self.text.render_lines(ctx)
        html = ""
        if self.html is not None:
            # Jinja escapes them like any other value; the fast path takes them as they
            # are (HTML-safe), so there the untracked fallback is pre-escaped.
            ctx[LINKS_VAR] = self._links(m, self._safe_urls if self._html_plain else self.link_urls)
            ctx[PIXEL_VAR] = f"{self.base_url}/o/{self._open_sign(m)}.gif"
            html, h_long, h_dot = self.html.render_lines(ctx)
            if self.dynamic_links:
                h_long, h_dot = -1, True
                html, _ = links.rewrite_links(
                    html, lambda i, u: fallback_click(len(self.link_urls) + i, u),
                    skip=lambda u: u.startswith(self.base_url + "/"))
        token = unsub.rsplit("/", 1)[1]
        headers = [
            ("Message-ID", message_id_header),
            ("Date", date_header()),
            ("From", self.from_header),
            ("To", rcpt),
            ("Subject", mime.encode_header(subject)),
            # RFC 2369 + RFC 8058 one-click: the https URL takes the POST.
            ("List-Unsubscribe",
             f"<{unsub}>,\r\n <mailto:{self.mailbox}?subject=unsubscribe%20{token}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("MIME-Version", "1.0"),
        ]
        if self.text is not None and self.html is not None:
            t_body, t_cte = encode_body(text, t_long)
            h_body, h_cte = encode_body(html, h_long)
            # 7bit parts whose lines are known not to start with "." need no dot-stuffing
            # (headers and boundary lines never do): the SMTP client skips its scan.
            dot_free = t_cte == h_cte == "7bit" and not t_dot and not h_dot
            b = self.boundary
            headers.append(("Content-Type", f'multipart/alternative;\r\n boundary="{b}"'))
            # the message in one join (one copy of the ~10 KB body, not two)
            body = [f"\r\n--{b}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
                    f"Content-Transfer-Encoding: {t_cte}\r\n\r\n".encode(), t_body,
                    f"--{b}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                    f"Content-Transfer-Encoding: {h_cte}\r\n\r\n".encode(), h_body,
                    f"--{b}--\r\n".encode()]
        else:
            kind = "html" if self.html is not None else "plain"
            is_html = self.html is not None
            one, cte = encode_body(html if is_html else text, h_long if is_html else t_long)
            dot_free = cte == "7bit" and not (h_dot if is_html else t_dot)
            body = [b"\r\n", one]
            headers.append(("Content-Type", f'text/{kind}; charset="utf-8"'))
            headers.append(("Content-Transfer-Encoding", cte))
        head = "".join([f"{k}: {v}\r\n" for k, v in headers])
        if dkim is not None:
            head = dkim.signature_header(headers, b"".join(body)[2:]) + head
        return Composed(mail_from, rcpt, message_id_header,
                        b"".join([head.encode("utf-8"), *body]), dot_free)


class Skeletons:
    """LRU of prepared campaign templates, keyed by a digest of everything they bake in."""

    def __init__(self, signer: tokens.Signer, base_url: str, unsubscribe_mailto: str = "",
                 size: int = 256) -> None:
        self.signer = signer
        self.base_url = base_url
        self.unsubscribe_mailto = unsubscribe_mailto
        self.size = size
        self.built = 0  # tests check that a campaign's template is prepared once
        self._cache: OrderedDict[tuple[str, ...], Skeleton] = OrderedDict()

    def get(self, job: e.MessageJob) -> Skeleton:
        # Keyed by the short fields; the two long sources are compared rather than hashed
        # (an equal-length memcmp costs far less than digesting 8 KB per job).
        content = channels.email_content(job)
        key = (job.campaign_id, job.workspace_id, job.variant, job.sender, content.subject)
        text, html = content.text, content.html
        sk = self._cache.get(key)
        if sk is not None and sk.source_text == text and sk.source_html == html:
            self._cache.move_to_end(key)
            return sk
        sk = Skeleton(job, self.signer, self.base_url, self.unsubscribe_mailto)
        sk.source_text, sk.source_html = text, html
        self.built += 1
        self._cache[key] = sk
        self._cache.move_to_end(key)
        if len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return sk
