"""ESME side of SMPP over asyncio, in modules by job (this module names them all):

- `session_link.Session`: one bound TCP connection -- connect and bind, enquire_link,
  unbind and close; writes made in one loop iteration go out in one syscall.
- `session_inflight`: its requests in flight -- sequence numbers, a response handed to the
  callback registered for its sequence number (a future for the awaitable API), and a
  sweeper that fails requests whose response is late (ResponseTimeout).
- `session_reader`: PDUs framed straight out of the receive buffer (no per-PDU awaits);
  inbound deliver_sm go to a `DeliverSink(frame, reply)`: the sink calls `reply(status)`
  exactly once when it is done (the deliver_sm_resp is written then), so receipts can be
  handled in batches without a task per PDU. An async handler returning the status can be
  given instead (wrapped in a task per PDU).
- `session_client.SmppClient`: one bind of a route -- a transceiver session, or a
  transmitter+receiver pair -- kept up with reconnects (exponential backoff with jitter).
- `session_writer`: its submits wait in a FIFO and are written while the window has room,
  the token bucket (`session_pacing`, msg/s) allows and no throttling pause runs; each
  result (response frame or error) goes to the item's `on_result`, so the gateway drives
  thousands of messages without a task or future per message. An optional `gate` sees the
  items of a socket write before their bytes go out (one call for all the items that
  became writable while the previous call ran): the gateway confirms its "written" send
  markers there, so "possibly sent" starts exactly at the write. An item the gate refuses
  (or a gate that fails) gets NotWritten: nothing was sent.
- `session_errors`, `session_config`: what is raised (and whether anything was sent); a
  bind's settings.
"""

from __future__ import annotations

from gateways.smpp.session_client import CLIENTS_BY_ROUTE, SmppClient
from gateways.smpp.session_config import ClientConfig
from gateways.smpp.session_errors import (
    BindFailed,
    ConnectionLost,
    NotBound,
    NotWritten,
    ResponseTimeout,
    SmppError,
)
from gateways.smpp.session_link import Session
from gateways.smpp.session_pacing import TokenBucket
from gateways.smpp.session_reader import (
    DeliverHandler,
    DeliverSink,
    FrameProtocol,
    Reply,
    sink_from_handler,
)
from gateways.smpp.session_writer import Gate, SubmitItem

__all__ = [
    "CLIENTS_BY_ROUTE", "BindFailed", "ClientConfig", "ConnectionLost", "DeliverHandler",
    "DeliverSink", "FrameProtocol", "Gate", "NotBound", "NotWritten", "Reply",
    "ResponseTimeout", "Session", "SmppClient", "SmppError", "SubmitItem", "TokenBucket",
    "sink_from_handler",
]
