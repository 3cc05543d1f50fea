"""`python -m services.recipients` as a real process: migrations at start-up, bearer-token
auth with phone masking, and the events.contact.> consumer filling the suppression list."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc

from cli import procs
from shared import bus
from shared.timeutil import now_ts

WS = "ws-tokens"
TOKENS = {
    "op-token": {"name": "ops", "workspace": WS, "roles": ["operator"], "pii": False},
    "pii-token": {"name": "dpo", "workspace": WS, "roles": ["operator"], "pii": True},
    "viewer-token": {"name": "viewer", "workspace": WS, "roles": ["viewer"]},
    "svc-token": {"name": "campaigns", "workspace": "none", "roles": ["service"]},
}


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> Iterator[procs.Proc]:
    work: Path = tmp_path_factory.mktemp("recipients-svc")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    proc = procs.start_module("recipients", "services.recipients", work, {
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'herald-{service}.db'}",
        "HERALD_NATS_URL": nats_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0",
        "HERALD_METRICS_ADDR": "127.0.0.1:0",
        "HERALD_TOKENS_FILE": str(tokens),
        "HERALD_LOG_FORMAT": "text",
    })
    yield proc
    proc.stop()
    assert proc.popen.returncode == 0, proc.log_tail()


@pytest.fixture(scope="module")
async def channel(service: procs.Proc) -> AsyncIterator[grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{service.info['grpc_port']}")
    yield ch
    await ch.close()


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> pb_grpc.RecipientServiceStub:
    return pb_grpc.RecipientServiceStub(channel)


async def test_health_and_auth(channel: grpc.aio.Channel, stub: pb_grpc.RecipientServiceStub) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = await health.Check(health_pb2.HealthCheckRequest(service="herald.v1.RecipientService"))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListContacts(pb.ListContactsRequest())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
            pb.Contact(email="v@example.com")]), metadata=bearer("viewer-token"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_phones_masked_without_pii(stub: pb_grpc.RecipientServiceStub) -> None:
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="m1", phone="+44 7700 900123", email="m1@example.com")]),
        metadata=bearer("op-token"))
    cid = up.results[0].contact_id
    masked = await stub.GetContact(pb.GetContactRequest(id=cid), metadata=bearer("op-token"))
    assert masked.phone == "**********123" and masked.email == "m1@example.com"
    listed = await stub.ListContacts(pb.ListContactsRequest(), metadata=bearer("viewer-token"))
    assert [x.phone for x in listed.contacts if x.id == cid] == ["**********123"]
    clear = await stub.GetContact(pb.GetContactRequest(id=cid), metadata=bearer("pii-token"))
    assert clear.phone == "+447700900123"
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_SMS, inline=[c.Recipient(contact_id=cid)]), metadata=bearer("op-token"))]
    assert [m.recipient.phone for m in members] == ["**********123"]
    # A service acting for the workspace needs the real number to send to it.
    svc_md = (*bearer("svc-token"), ("x-herald-workspace", WS))
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_SMS, inline=[c.Recipient(contact_id=cid)]), metadata=svc_md)]
    assert [(m.recipient.phone, m.accepted) for m in members] == [("+447700900123", True)]


async def wait_suppressed(stub: pb_grpc.RecipientServiceStub, channel: int, address: str
                          ) -> list[pb.Suppression]:
    """Poll until the consumer has written the entry (bounded by the test timeout)."""
    while True:
        found = [s for s in (await stub.ListSuppressions(pb.ListSuppressionsRequest(
            page_size=1000), metadata=bearer("pii-token"))).suppressions
            if s.channel == channel and s.address == address]
        if found:
            return found
        await asyncio.sleep(0.05)


def contact_event(kind: int, channel: int, address: str, reason: str = "") -> e.ContactEvent:
    return e.ContactEvent(event_id=str(uuid.uuid4()), kind=kind, workspace_id=WS, channel=channel,
                          address=address, reason=reason, occurred_at=now_ts())


async def test_contact_events_fill_the_suppression_list(
        stub: pb_grpc.RecipientServiceStub, js, service: procs.Proc) -> None:  # type: ignore[no-untyped-def]
    ev = contact_event(e.CONTACT_EVENT_KIND_OPTED_OUT, c.CHANNEL_EMAIL, "Leaver@Example.COM",
                       "one-click unsubscribe")
    await bus.publish(js, "events.contact.opted_out", ev, ev.event_id)
    # The same fact published again (new event id) is still one entry.
    dup = contact_event(e.CONTACT_EVENT_KIND_OPTED_OUT, c.CHANNEL_EMAIL, "leaver@example.com")
    await bus.publish(js, "events.contact.opted_out", dup, dup.event_id)
    sms = contact_event(e.CONTACT_EVENT_KIND_OPTED_OUT, c.CHANNEL_SMS, "447700900555", "STOP")
    await bus.publish(js, "events.contact.opted_out", sms, sms.event_id)

    found = await asyncio.wait_for(wait_suppressed(stub, c.CHANNEL_EMAIL, "leaver@example.com"), 20)
    assert found[0].reason == "opted_out: one-click unsubscribe"
    stop = await asyncio.wait_for(wait_suppressed(stub, c.CHANNEL_SMS, "+447700900555"), 20)
    assert stop[0].reason == "opted_out: STOP"

    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_EMAIL, inline=[c.Recipient(email="leaver@example.com"),
                                         c.Recipient(email="stayer@example.com")]),
        metadata=bearer("op-token"))]
    assert [(m.recipient.email, m.accepted, m.rejection) for m in members] == [
        ("leaver@example.com", False, c.FAILURE_CATEGORY_UNSUBSCRIBED),
        ("stayer@example.com", True, c.FAILURE_CATEGORY_UNSPECIFIED)]
    assert members[0].rejection_reason == "The email address leaver@example.com has unsubscribed"

    # Wait for the duplicate to be consumed too (consumer is in order), then count.
    info = await js.consumer_info(bus.EVENTS_STREAM, "recipients")
    while info.num_pending or info.num_ack_pending:
        await asyncio.sleep(0.05)
        info = await js.consumer_info(bus.EVENTS_STREAM, "recipients")
    sup = await stub.ListSuppressions(pb.ListSuppressionsRequest(filter="channel=EMAIL"),
                                      metadata=bearer("op-token"))
    assert [s.address for s in sup.suppressions].count("leaver@example.com") == 1

    port = service.info["metrics_port"]
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
    # At least ours: other tests on the shared NATS server may publish contact events too.
    added = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith('herald_recipients_suppressions_added_total{source="event"}')]
    assert added and added[0] >= 2
    assert "herald_recipients_contacts_upserted_total" in text
    assert 'herald_recipients_audience_members_total{result="unsubscribed"}' in text
