"""What a session or a bind raises, and what each says about whether the request was sent."""

from __future__ import annotations

from gateways.smpp import pdu


class SmppError(Exception):
    """Base of the session errors."""


class NotBound(SmppError):
    """No bound session: nothing was sent, so the request may safely be retried."""


class BindFailed(SmppError):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {pdu.status_name(status)} ({pdu.status_description(status)})")
        self.status = status


class NotWritten(NotBound):
    """The pre-write gate refused the item (`elsewhere`: another process owns the job now)
    or failed (its cause in the message): nothing was sent."""

    def __init__(self, message: str, elsewhere: bool = False) -> None:
        super().__init__(message)
        self.elsewhere = elsewhere


class ResponseTimeout(SmppError):
    """The request was sent but no response came in time: its outcome is unknown."""


class ConnectionLost(SmppError):
    """The connection dropped after the request was sent: its outcome is unknown."""
