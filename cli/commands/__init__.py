"""The CLI's commands, one module per area. Each module's register(sub, common) adds its
sub-commands; a command's handler is `async def (args, clients, out) -> exit code`."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from typing import Any

from herald.v1 import recipients_pb2 as rpb

from cli.connect import Clients

MAX_PAGE = 1000


def add(sub: Any, common: argparse.ArgumentParser, name: str, handler: Callable, help: str,
        **kw: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
    p.set_defaults(func=handler)
    return p


def paging(p: argparse.ArgumentParser, limit: int = 50) -> None:
    p.add_argument("--limit", type=int, default=limit, help=f"rows per page (default {limit}, at most 1000)")
    p.add_argument("--page-token", default="", help="continue a listing where a page ended")
    p.add_argument("--all-pages", action="store_true", help="fetch every page")


async def pages(call: Callable, request: Any, field: str, args: argparse.Namespace
                ) -> AsyncIterator[tuple[list[Any], Any]]:
    """(items, response) of each page: one page, or every page with --all-pages."""
    request.page_size = min(args.limit, MAX_PAGE) if not args.all_pages else MAX_PAGE
    request.page_token = args.page_token
    while True:
        resp = await call(request)
        yield list(getattr(resp, field)), resp
        if not (args.all_pages and resp.next_page_token):
            return
        request.page_token = resp.next_page_token


async def collect(call: Callable, request: Any, field: str, args: argparse.Namespace
                  ) -> tuple[list[Any], Any]:
    items: list[Any] = []
    last = None
    async for chunk, resp in pages(call, request, field, args):
        items.extend(chunk)
        last = resp
    return items, last


async def category_ids(cl: Clients) -> dict[str, str]:
    """name -> id and id -> id of every category of the workspace."""
    out: dict[str, str] = {}
    token = ""
    while True:
        resp = await cl.recipients.ListCategories(rpb.ListCategoriesRequest(page_size=MAX_PAGE,
                                                                            page_token=token))
        for cat in resp.categories:
            out[cat.name] = cat.id
            out[cat.id] = cat.id
        token = resp.next_page_token
        if not token:
            return out


def more_hint(resp: Any, args: argparse.Namespace) -> str:
    if resp is not None and resp.next_page_token and not args.all_pages:
        return f"more: --page-token {resp.next_page_token} (or --all-pages)"
    return ""
