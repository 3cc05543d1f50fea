"""Tracking URLs for one message and the HTML rewriting that puts them in place."""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Callable

from herald.v1 import events_pb2 as e

from gateways.email import tokens

# <a ... href="..."> / href='...'; group 3 is the (HTML-escaped) URL.
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


class Tracker:
    """Builds the signed open/click/unsubscribe URLs of one job."""

    def __init__(self, signer: tokens.Signer, base_url: str) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")

    def _token(self, job: e.MessageJob, kind: str, **kw: object) -> str:
        return self.signer.sign(tokens.Token(
            kind=kind, message_id=job.message_id, campaign_id=job.campaign_id,
            workspace_id=job.workspace_id, variant=job.variant, **kw,  # type: ignore[arg-type]
        ))

    def open_url(self, job: e.MessageJob) -> str:
        return f"{self.base_url}/o/{self._token(job, tokens.OPEN)}.gif"

    def click_url(self, job: e.MessageJob, index: int, url: str) -> str | None:
        """None when the URL is too long to fit in a token: the link then stays as it is."""
        tok = self._token(job, tokens.CLICK, link_index=index, url=url)
        return None if len(tok) > tokens.MAX_TOKEN else f"{self.base_url}/c/{tok}"

    def unsubscribe_url(self, job: e.MessageJob) -> str:
        tok = self._token(job, tokens.UNSUBSCRIBE, address=job.to, contact_id=job.contact_id)
        return f"{self.base_url}/u/{tok}"

    def unsubscribe_token(self, job: e.MessageJob) -> str:
        return self.unsubscribe_url(job).rsplit("/", 1)[1]

    def is_own(self, url: str) -> bool:
        return url.startswith(self.base_url + "/")


def rewrite_links(html: str, make_url: Callable[[int, str], str | None],
                  skip: Callable[[str], bool] = lambda _u: False) -> tuple[str, list[str]]:
    """Replace every http(s) <a href> by make_url(index, original); indexes count from 0
    in document order. mailto:, tel:, anchors, `skip`ped URLs and those make_url returns
    None for stay as they are."""
    targets: list[str] = []

    def sub(m: re.Match[str]) -> str:
        url = htmllib.unescape(m.group(3)).strip()
        if not url.lower().startswith(("http://", "https://")) or skip(url):
            return m.group(0)
        new = make_url(len(targets), url)
        if new is None:
            return m.group(0)
        targets.append(url)
        return f"{m.group(1)}{m.group(2)}{htmllib.escape(new, quote=True)}{m.group(2)}"

    return _HREF.sub(sub, html), targets


def add_pixel(html: str, pixel_url: str) -> str:
    img = (f'<img src="{htmllib.escape(pixel_url, quote=True)}" width="1" height="1" alt="" '
           'style="display:block;border:0;width:1px;height:1px" />')
    matches = list(_BODY_END.finditer(html))
    if not matches:
        return html + img
    at = matches[-1].start()
    return html[:at] + img + html[at:]
