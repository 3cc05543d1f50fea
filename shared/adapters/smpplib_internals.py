"""smpplib's client internals, used only by the benchmark's blocking reference client.

Relied on (checked by `self_check`): `Client._socket`, the connected socket (None
before connect()), created by `Client._create_socket()`. Herald's gateway uses only
smpplib's PDU classes, never its client.
"""

from __future__ import annotations

import socket

import smpplib.client

from shared.adapters import AdapterError

DIST = "smpplib"


def set_nodelay(client: smpplib.client.Client) -> None:
    """TCP_NODELAY on a connected client's socket (smpplib leaves Nagle on)."""
    sock = client._socket
    if sock is None:
        raise ValueError("the client is not connected")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def self_check() -> None:
    """An unconnected client has `_socket` None and `_create_socket()` makes a TCP socket."""
    client = smpplib.client.Client("127.0.0.1", 1, allow_unknown_opt_params=True)
    if "_socket" not in vars(client) or client._socket is not None:
        raise AdapterError(DIST, "Client._socket is gone")
    try:
        sock = client._create_socket()
    except AttributeError as exc:
        raise AdapterError(DIST, "Client._create_socket is gone") from exc
    with sock:
        if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_STREAM:
            raise AdapterError(DIST, "Client._create_socket no longer makes a TCP socket")
