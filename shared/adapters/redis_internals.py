"""redis-py's internals behind Herald's hiredis command packing, and nothing else.

redis-py's sync client packs commands with hiredis (C) when hiredis is installed; its
asyncio client does not. `use_hiredis_packing(pool)` swaps the pool's connection class
for a subclass whose `pack_command` calls `hiredis.pack_command`, falling back to
redis-py's `HiredisRespSerializer` for the argument types hiredis refuses.

Relied on (checked by `self_check`): `Connection.pack_command(*args) -> list[bytes]`
(the bytes redis-py writes), `HiredisRespSerializer().pack`, and a pool's
`connection_class`, which `make_connection()` instantiates.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.connection import HIREDIS_AVAILABLE, HiredisRespSerializer

from shared.adapters import AdapterError

DIST = "redis"


class _HiredisPacking:
    _serializer = HiredisRespSerializer()

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            if " " in first:  # 'SCRIPT LOAD' -> two arguments, as redis-py does
                args = (*first.split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # bytearray, or a type redis-py refuses (DataError from here)
            return self._serializer.pack(*args)


class HiredisConnection(_HiredisPacking, Connection):
    pass


class HiredisSSLConnection(_HiredisPacking, SSLConnection):
    pass


class HiredisUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_FAST: dict[type, type] = {Connection: HiredisConnection, SSLConnection: HiredisSSLConnection,
                           UnixDomainSocketConnection: HiredisUnixConnection}


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """The pool's connections pack their commands with hiredis (when it is installed)."""
    if HIREDIS_AVAILABLE:
        pool.connection_class = _FAST.get(pool.connection_class, pool.connection_class)


# --- self-check ----------------------------------------------------------------------

_SAMPLES: tuple[tuple[Any, ...], ...] = (
    ("EVALSHA", "a" * 40, 2, "herald:k:1", b"herald:k:2", 86400, 1.5, b"held:gw:1.000", "é"),
    ("SCRIPT LOAD", "return 1"),
    ("SET", b"k", bytearray(b"v"), "PX", 1000),
    ("MGET", memoryview(b"k1"), "k2"),
)


def self_check() -> None:
    """Every sample command packs to the same bytes as redis-py's own packer, and a pool
    built as shared.cache builds it makes connections of the packing class."""
    if not HIREDIS_AVAILABLE:
        return  # redis-py's own packer is used: nothing of ours to check
    plain = Connection()
    fast = HiredisConnection()
    for args in _SAMPLES:
        try:
            want = b"".join(bytes(b) for b in plain.pack_command(*args))
            got = b"".join(bytes(b) for b in fast.pack_command(*args))
        except Exception as exc:
            raise AdapterError(DIST, f"packing {args[0]!r} failed: {exc!r}") from exc
        if got != want:
            raise AdapterError(DIST, f"hiredis packs {args[0]!r} differently from "
                                     "Connection.pack_command")
    pool = BlockingConnectionPool.from_url("redis://127.0.0.1:1/0")
    use_hiredis_packing(pool)
    conn = pool.make_connection()
    if not isinstance(conn, HiredisConnection):
        raise AdapterError(DIST, "ConnectionPool.make_connection no longer instantiates "
                                 "pool.connection_class")
