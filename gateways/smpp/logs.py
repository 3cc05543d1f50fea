"""The gateway's log: one logger for every part of it (operators filter on its name), and
how errors read in its lines."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger("herald.smpp.gateway")


def cause(exc: BaseException) -> str:
    """'TimeoutError: ' says more than '' (str() of many exceptions is empty)."""
    return f"{type(exc).__name__}: {exc}"


async def quietly(coro: Awaitable[Any]) -> None:
    """An ack or nak whose failure changes nothing (the message is redelivered after
    ack_wait anyway): logged, not raised."""
    try:
        await coro
    except Exception as exc:
        log.warning("ack/nak failed", extra={"error": cause(exc)})
