"""A delivered JetStream message with explicit, raw acks, and the settlement payloads:
+ACK, -NAK with an optional {"delay": ns}, +TERM and +WPI (the same bytes nats-py's
Msg.ack/nak/term/in_progress send). `settle_many` settles a batch with one write."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from shared.jsfast.wire import parse_headers, send_raw

ACK = b"+ACK"
NAK = b"-NAK"
TERM = b"+TERM"
WPI = b"+WPI"


class Metadata:
    """The ack subject's fields, parsed once on demand:
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or the v2 form
    $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    """

    __slots__ = ("stream", "consumer", "num_delivered", "stream_seq", "consumer_seq",
                 "timestamp_ns", "num_pending")

    def __init__(self, reply: str) -> None:
        t = reply.split(".")
        if len(t) == 9:
            t = t[2:]
        elif len(t) >= 11:
            t = t[4:11]
        else:
            raise ValueError(f"not a JetStream ack subject: {reply!r}")
        self.stream, self.consumer = t[0], t[1]
        self.num_delivered, self.stream_seq, self.consumer_seq = int(t[2]), int(t[3]), int(t[4])
        self.timestamp_ns, self.num_pending = int(t[5]), int(t[6])


class JsMsg:
    """A delivered JetStream message with explicit, raw acks."""

    __slots__ = ("_nc", "subject", "reply", "data", "_raw_headers", "_headers", "_meta", "_acked")

    def __init__(self, nc: NATS, subject: str, reply: str, data: bytes,
                 headers: dict[str, str] | bytes | None) -> None:
        self._nc = nc
        self.subject = subject
        self.reply = reply
        self.data = data
        self._raw_headers = headers if isinstance(headers, bytes) else None
        self._headers = headers if isinstance(headers, dict) else None
        self._meta: Metadata | None = None
        self._acked = False

    @property
    def headers(self) -> dict[str, str] | None:
        """Parsed on first use (the gateways never read them)."""
        if self._headers is None and self._raw_headers:
            self._headers = parse_headers(self._raw_headers)
        return self._headers

    @property
    def metadata(self) -> Metadata:
        if self._meta is None:
            self._meta = Metadata(self.reply)
        return self._meta

    @property
    def num_delivered(self) -> int:
        return self.metadata.num_delivered

    @property
    def nc(self) -> NATS:
        """The connection the message came on (and its acks go out on)."""
        return self._nc

    @property
    def settled(self) -> bool:
        """Acked, nak'ed or terminated already (by this process)."""
        return self._acked

    def claim_settlement(self) -> bool:
        """Mark as settled; False if it already was (for writers of raw acks)."""
        if self._acked:
            return False
        self._acked = True
        return True

    async def _settle(self, payload: bytes) -> None:
        if self._acked:  # a second settlement would only confuse the server's count
            return
        self._acked = True
        await self._nc.publish(self.reply, payload)

    async def ack(self) -> None:
        await self._settle(ACK)

    async def nak(self, delay: float | None = None) -> None:
        if delay:
            await self._settle(b'-NAK {"delay": %d}' % int(delay * 1_000_000_000))
        else:
            await self._settle(NAK)

    async def term(self) -> None:
        await self._settle(TERM)

    async def in_progress(self) -> None:
        """Reset the ack_wait timer; may be sent many times before the final ack."""
        if not self._acked:
            await self._nc.publish(self.reply, WPI)


def nak_payload(delay: float | None) -> bytes:
    return b'-NAK {"delay": %d}' % int(delay * 1_000_000_000) if delay else NAK


async def settle_many(msgs: list[JsMsg], payload: bytes = ACK) -> None:
    """Ack (or +TERM / -NAK with `payload`) many messages with one write."""
    if not msgs:
        return
    cmds = [b"PUB %s %d\r\n%s\r\n" % (m.reply.encode(), len(payload), payload)
            for m in msgs if m.claim_settlement()]
    await send_raw(msgs[0].nc, cmds)
