"""The tracking server's own route dispatch (aiohttp's low-level server, no router):
the same answers the router gave, checked in-process against a real NATS."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from gateways.email import tokens
from gateways.email.tracking import TrackingServer

KEY = b"routes-test-key"


@pytest.fixture
async def server(js: Any) -> Any:
    srv = TrackingServer(js, tokens.Signer([KEY]), rate=0, max_body=1024)
    await srv.start("127.0.0.1:0")
    try:
        yield srv
    finally:
        await srv.stop()


async def test_routes_methods_and_limits(server: TrackingServer) -> None:
    signer = tokens.Signer([KEY])
    mid = "m-routes-1"
    pixel = signer.sign(tokens.Token(kind=tokens.OPEN, message_id=mid, campaign_id="c-r"))
    click = signer.sign(tokens.Token(kind=tokens.CLICK, message_id=mid, url="https://example.com/x"))
    unsub = signer.sign(tokens.Token(kind=tokens.UNSUBSCRIBE, message_id=mid,
                                     address="ada@example.com"))
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as http:
        async def status(method: str, path: str, **kw: Any) -> int:
            async with http.request(method, base + path, allow_redirects=False, **kw) as r:
                await r.read()
                return r.status

        assert await status("GET", f"/o/{pixel}.gif") == 200
        assert await status("HEAD", f"/o/{pixel}.gif") == 200
        assert await status("GET", f"/c/{click}") == 302
        assert await status("HEAD", f"/c/{click}") == 302
        assert await status("GET", f"/u/{unsub}") == 200
        assert await status("GET", "/healthz") == 200
        assert await status("HEAD", "/healthz") == 200
        for method, path in [("GET", "/o/"), ("GET", "/o"), ("GET", f"/o/{pixel}.gif/x"),
                             ("POST", f"/o/{pixel}.gif"), ("PUT", f"/u/{unsub}"),
                             ("POST", "/healthz"), ("GET", "/healthz/x"), ("GET", "/"),
                             ("DELETE", f"/c/{click}"), ("GET", f"/x/{click}"),
                             ("GET", f"/c/{pixel.removesuffix('.gif')}")]:
            assert await status(method, path) == 404, (method, path)
        assert await status("POST", f"/u/{unsub}", data={"x": "y" * 4096}) == 413
        # a client that asks before sending its body (curl does for bodies over 1 KB)
        assert await status("POST", "/u/not-a-token", data={"a": "b"},
                            headers={"Expect": "100-continue"}) == 404
        assert await status("POST", "/u/not-a-token", headers={"Expect": "teapot"}) == 417
