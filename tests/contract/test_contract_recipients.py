"""User-visible contract of the recipients service, driven end to end through the real
process: contact events published on a real (private) NATS JetStream, read back over gRPC.

- A hard bounce is worded as a bounce (and is an invalid address), not as an unsubscribe;
  a spam complaint says so; only an opt-out "has unsubscribed".
- A STOP (or any opt-out) suppresses the number only in the workspace whose message it
  answered: another workspace may still message the same person.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc

from cli import procs
from shared import bus
from shared.timeutil import now_ts

WS_A, WS_B = "ws-contract-a", "ws-contract-b"
TOKENS = {
    "svc": {"name": "campaigns", "workspace": "none", "roles": ["service"]},
    "viewer-a": {"name": "viewer-a", "workspace": WS_A, "roles": ["viewer"], "pii": False},
}


def service_md(workspace: str) -> tuple:
    return (("authorization", "Bearer svc"), ("x-herald-workspace", workspace))


@pytest.fixture(scope="module")
def recipients_proc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """A private nats-server (its JetStream consumers are this module's alone) and the
    recipients service as a process on SQLite."""
    work: Path = tmp_path_factory.mktemp("contract-recipients")
    nats = procs.start_nats(work / "nats")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    try:
        proc = procs.start_module("recipients", "services.recipients", work, {
            "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'recipients.db'}",
            "HERALD_NATS_URL": str(nats.info["url"]),
            "HERALD_GRPC_ADDR": "127.0.0.1:0",
            "HERALD_METRICS_ADDR": "127.0.0.1:0",
            "HERALD_TOKENS_FILE": str(tokens),
            "HERALD_DEV_MODE": "0",
            "HERALD_LOG_FORMAT": "text",
        })
    except Exception:
        nats.stop()
        raise
    yield {"nats_url": nats.info["url"], "grpc_port": proc.info["grpc_port"]}
    proc.stop()
    nats.stop()


@pytest.fixture
async def stub(recipients_proc: dict[str, object]) -> AsyncIterator[pb_grpc.RecipientServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{recipients_proc['grpc_port']}") as ch:
        yield pb_grpc.RecipientServiceStub(ch)


@pytest.fixture
async def publish(recipients_proc: dict[str, object]):  # type: ignore[no-untyped-def]
    nc = await bus.connect(str(recipients_proc["nats_url"]))
    js = nc.jetstream()
    await bus.ensure_streams(js)

    async def send(kind: int, workspace: str, channel: int, address: str, reason: str) -> None:
        ev = e.ContactEvent(event_id=str(uuid.uuid4()), kind=kind, workspace_id=workspace,
                            channel=channel, address=address, reason=reason,
                            message_id=str(uuid.uuid4()), occurred_at=now_ts())
        subject = {e.CONTACT_EVENT_KIND_OPTED_OUT: "opted_out",
                   e.CONTACT_EVENT_KIND_BOUNCED: "bounced",
                   e.CONTACT_EVENT_KIND_COMPLAINED: "complained"}[kind]
        await bus.publish(js, f"events.contact.{subject}", ev, ev.event_id)

    yield send
    await nc.close()


async def consumed(stub: pb_grpc.RecipientServiceStub, workspace: str, count: int) -> None:
    """Until the consumer has written `count` entries in the workspace (the test's timeout
    bounds the wait)."""
    while True:
        listed = await stub.ListSuppressions(pb.ListSuppressionsRequest(page_size=1000),
                                             metadata=service_md(workspace))
        if len(listed.suppressions) >= count:
            return
        await asyncio.sleep(0.05)


async def audience(stub: pb_grpc.RecipientServiceStub, workspace: str, channel: int,
                   inline: list[c.Recipient]) -> list[pb.AudienceMember]:
    return [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=channel, inline=inline), metadata=service_md(workspace))]


async def test_a_bounce_is_worded_as_a_bounce_not_an_unsubscribe(
        stub: pb_grpc.RecipientServiceStub, publish) -> None:  # type: ignore[no-untyped-def]
    await publish(e.CONTACT_EVENT_KIND_BOUNCED, WS_A, c.CHANNEL_EMAIL, "bounce@example.com",
                  "5.1.1 user unknown")
    await publish(e.CONTACT_EVENT_KIND_COMPLAINED, WS_A, c.CHANNEL_EMAIL, "spam@example.com",
                  "abuse report")
    await publish(e.CONTACT_EVENT_KIND_OPTED_OUT, WS_A, c.CHANNEL_EMAIL, "leaver@example.com",
                  "one-click unsubscribe")
    await consumed(stub, WS_A, 3)
    members = await audience(stub, WS_A, c.CHANNEL_EMAIL, [
        c.Recipient(email="bounce@example.com"), c.Recipient(email="spam@example.com"),
        c.Recipient(email="leaver@example.com")])
    got = {m.recipient.email: (m.accepted, m.rejection, m.rejection_reason) for m in members}
    assert got["bounce@example.com"] == (
        False, c.FAILURE_CATEGORY_INVALID_ADDRESS,
        "The email address bounce@example.com bounced (5.1.1 user unknown)")
    assert got["spam@example.com"] == (
        False, c.FAILURE_CATEGORY_UNSUBSCRIBED, "The email address spam@example.com reported spam")
    assert got["leaver@example.com"] == (
        False, c.FAILURE_CATEGORY_UNSUBSCRIBED,
        "The email address leaver@example.com has unsubscribed")


async def test_stop_suppresses_only_in_the_workspace_it_answered(
        stub: pb_grpc.RecipientServiceStub, publish) -> None:  # type: ignore[no-untyped-def]
    # The SMPP gateway publishes the STOP with the workspace of the message it answered.
    await publish(e.CONTACT_EVENT_KIND_OPTED_OUT, WS_B, c.CHANNEL_SMS, "447700900777", "STOP")
    await consumed(stub, WS_B, 1)
    target = [c.Recipient(phone="+447700900777")]
    (answered,) = await audience(stub, WS_B, c.CHANNEL_SMS, target)
    assert (answered.accepted, answered.rejection, answered.rejection_reason) == (
        False, c.FAILURE_CATEGORY_UNSUBSCRIBED, "The phone number +447700900777 has unsubscribed")
    # Workspace A never received that STOP: the same person is still reachable from there.
    (elsewhere,) = await audience(stub, WS_A, c.CHANNEL_SMS, target)
    assert elsewhere.accepted
    assert not [s for s in (await stub.ListSuppressions(pb.ListSuppressionsRequest(
        filter="channel=SMS"), metadata=service_md(WS_A))).suppressions]
