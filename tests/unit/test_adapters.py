"""The library adapters' start-up self-checks pass on the installed libraries and fail
loudly, naming the library, its version and what changed, when an internal they rely on
is gone or behaves differently."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from redis.asyncio.connection import ConnectionPool

from services.recipients import normalize
from shared.adapters import (
    AdapterError,
    aiohttp_internals,
    nats_internals,
    redis_internals,
    self_check_all,
    smpplib_internals,
)

ADAPTERS = [nats_internals, redis_internals, aiohttp_internals, smpplib_internals]


@pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.DIST)
def test_self_check_passes_on_the_installed_library(adapter) -> None:  # type: ignore[no-untyped-def]
    adapter.self_check()


def test_every_process_self_check_passes() -> None:
    self_check_all()


def _fails(adapter, needle: str) -> AdapterError:  # type: ignore[no-untyped-def]
    with pytest.raises(AdapterError) as info:
        adapter.self_check()
    err = info.value
    assert err.distribution == adapter.DIST
    assert str(err).startswith(f"{adapter.DIST} {metadata.version(adapter.DIST)}: ")
    assert needle in str(err)
    return err


# --- nats-py ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["_process_msg", "_send_command", "_flush_pending"])
def test_nats_check_fails_when_a_client_method_is_gone(monkeypatch: pytest.MonkeyPatch,
                                                       name: str) -> None:
    monkeypatch.delattr(NATS, name)
    _fails(nats_internals, f"Client.{name}")


def test_nats_check_fails_when_the_parser_hook_signature_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def _process_msg(self, sid, subject, reply, data, headers, extra=None):  # type: ignore[no-untyped-def]
        return None
    monkeypatch.setattr(NATS, "_process_msg", _process_msg)
    _fails(nats_internals, "Client._process_msg now takes")


def test_nats_check_fails_when_the_parser_stops_calling_the_hook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from nats.protocol.parser import Parser

    async def parse(self, data=b""):  # type: ignore[no-untyped-def]
        return None  # a parser that dispatches some other way
    monkeypatch.setattr(Parser, "parse", parse)
    _fails(nats_internals, "parser hook")


def test_nats_check_fails_when_the_context_or_sid_move(monkeypatch: pytest.MonkeyPatch) -> None:
    real = JetStreamContext.__init__

    def init(self, conn, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(self, conn, *args, **kwargs)
        self._nc = None
    monkeypatch.setattr(JetStreamContext, "__init__", init)
    _fails(nats_internals, "JetStreamContext._nc")
    monkeypatch.setattr(JetStreamContext, "__init__", real)

    sub_init = Subscription.__init__

    def renamed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        sub_init(self, *args, **kwargs)
        self.sid = self.__dict__.pop("_id")
    monkeypatch.setattr(Subscription, "__init__", renamed)
    _fails(nats_internals, "Subscription")


def test_nats_check_fails_when_writes_stop_reaching_the_send_buffer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def _send_command(self, cmd, priority=False):  # type: ignore[no-untyped-def]
        return None
    monkeypatch.setattr(NATS, "_send_command", _send_command)
    _fails(nats_internals, "send buffer")


# --- redis-py --------------------------------------------------------------------------

def test_redis_check_fails_when_hiredis_packs_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_internals.hiredis, "pack_command", lambda args: b"*0\r\n")
    _fails(redis_internals, "packs 'EVALSHA' differently")


def test_redis_check_fails_when_the_pool_ignores_connection_class(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from redis.asyncio.connection import Connection

    monkeypatch.setattr(ConnectionPool, "make_connection",
                        lambda self: Connection(**self.connection_kwargs))
    _fails(redis_internals, "connection_class")


def test_redis_connections_pack_with_hiredis() -> None:
    from shared import cache

    client = cache.connect("redis://127.0.0.1:1/0")
    assert isinstance(client.connection_pool.make_connection(), redis_internals.HiredisConnection)


# --- aiohttp ---------------------------------------------------------------------------

def test_aiohttp_check_fails_when_output_size_stops_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    def _write(self, chunk):  # type: ignore[no-untyped-def]
        self._protocol.transport.write(chunk)
    monkeypatch.setattr(StreamWriter, "_write", _write)
    _fails(aiohttp_internals, "output_size no longer counts")


def test_aiohttp_check_fails_when_the_error_path_no_longer_reads_output_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def handle_error(self, request, status=500, exc=None, message=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError
    monkeypatch.setattr(RequestHandler, "handle_error", handle_error)
    _fails(aiohttp_internals, "handle_error")


# --- smpplib (the benchmark's reference client) -------------------------------------------

def test_smpplib_check_fails_when_the_socket_attribute_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    import smpplib.client

    real = smpplib.client.Client.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(self, *args, **kwargs)
        del self._socket
    monkeypatch.setattr(smpplib.client.Client, "__init__", init)
    _fails(smpplib_internals, "Client._socket")


# --- a process refuses to start -----------------------------------------------------------

def test_a_process_with_unexpected_internals_stops_before_serving() -> None:
    """What a start-up sees: the error names the library and what changed, exit status 1."""
    code = ("import nats.aio.client as c; del c.Client._flush_pending\n"
            "from shared.adapters import self_check_all; self_check_all()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("shared.adapters.AdapterError: nats-py ")
    assert "Client._flush_pending is gone" in last


# --- phonenumbers: public API only ---------------------------------------------------------

def test_phone_parse_errors_keep_libphonenumbers_reason() -> None:
    """The reason comes from the parse error's public args, not a private attribute."""
    with pytest.raises(normalize.BadAddress) as info:
        normalize.normalise_phone("hello", region="GB")
    assert "not a phone number (The string supplied did not seem to be a phone number" in str(info.value)


def test_product_code_waives_no_private_access_check() -> None:
    """ruff's SLF rule reports private accesses everywhere but shared/adapters (pyproject.toml);
    a `noqa: SLF001` in a process's code would hide one from it."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    waived = [f"{path.relative_to(root)}:{n}"
              for base in ("services", "gateways", "shared", "cli")
              for path in sorted((root / base).rglob("*.py")) if "adapters" not in path.parts
              for n, line in enumerate(path.read_text().splitlines(), 1) if "noqa: SLF" in line]
    assert waived == []
