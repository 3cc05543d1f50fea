"""A postback receiver for tests and demos: records every JSON body it accepts (answers 2xx),
and can answer the first N posts of each Idempotency-Key with 503 (a flaky endpoint).

    async with Receiver(fail_first=1) as rx:   # rx.url("/hook") -> http://127.0.0.1:<port>/hook
        ...
    rx.received  # [Received(path, key, body, headers), ...] in arrival order
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Received:
    path: str
    key: str  # Idempotency-Key
    body: Any  # the parsed JSON
    headers: dict[str, str]


class Receiver:
    def __init__(self, fail_first: int = 0, host: str = "127.0.0.1") -> None:
        self.fail_first = fail_first
        self.host = host
        self.port = 0
        self.received: list[Received] = []
        self.posts = Counter[str]()  # every POST by key, refused ones included
        self._runner: web.AppRunner | None = None

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _post(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        self.posts[key] += 1
        if self.posts[key] <= self.fail_first:
            return web.Response(status=503, text="try again later")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="not JSON")
        self.received.append(Received(request.path, key, body, dict(request.headers)))
        return web.json_response({"ok": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
