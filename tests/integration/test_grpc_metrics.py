"""gRPC server metrics of a real recipients process, read from its /metrics endpoint: the
grpc-ecosystem names and labels for unary calls, failures (including auth refusals by the
interceptor behind the metrics one), a server stream and the bidi reflection stream."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc
from prometheus_client.parser import text_string_to_metric_families

from cli import procs

SERVICE = "herald.v1.RecipientService"
MD = (("authorization", "Bearer ops-token"),)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, nats_url: str) -> Iterator[procs.Proc]:
    work: Path = tmp_path_factory.mktemp("grpc-metrics")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps({"ops-token": {"workspace": "ws-metrics", "roles": ["operator"],
                                                "pii": True}}))
    proc = procs.start_module("recipients", "services.recipients", work, {
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'recipients.db'}",
        "HERALD_NATS_URL": nats_url, "HERALD_GRPC_ADDR": "127.0.0.1:0",
        "HERALD_METRICS_ADDR": "127.0.0.1:0", "HERALD_TOKENS_FILE": str(tokens)})
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
async def channel(service: procs.Proc) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.info['grpc_port']}") as ch:
        yield ch


def scrape(proc: procs.Proc) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of the grpc_server_* samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.info['metrics_port']}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) if fam.name.startswith("grpc_server_")
            for s in fam.samples}


def value(samples: dict, name: str, method: str, kind: str = "unary", service: str = SERVICE,
          **labels: str) -> float | None:
    key = frozenset({"grpc_type": kind, "grpc_service": service, "grpc_method": method, **labels}.items())
    return samples.get((name, key))


async def test_every_method_is_listed_at_zero_before_its_first_call(service: procs.Proc) -> None:
    samples = scrape(service)
    for method, kind in [("DeleteSender", "unary"), ("ResolveAudience", "server_stream")]:
        assert value(samples, "grpc_server_started_total", method, kind) == 0
        assert value(samples, "grpc_server_handled_total", method, kind, grpc_code="OK") == 0
        assert value(samples, "grpc_server_handling_seconds_count", method, kind) == 0
    assert value(samples, "grpc_server_started_total", "Check", service="grpc.health.v1.Health") == 0
    assert value(samples, "grpc_server_started_total", "ServerReflectionInfo", "bidi_stream",
                 service="grpc.reflection.v1alpha.ServerReflection") == 0


async def test_unary_streams_and_failures_carry_the_grpc_ecosystem_labels(
        service: procs.Proc, channel: grpc.aio.Channel) -> None:
    stub = pb_grpc.RecipientServiceStub(channel)
    before = scrape(service)
    await stub.ListContacts(pb.ListContactsRequest(), metadata=MD)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetContact(pb.GetContactRequest(id="not-a-uuid"), metadata=MD)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:  # refused by the auth interceptor
        await stub.GetContact(pb.GetContactRequest(id="not-a-uuid"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_SMS, inline=[c.Recipient(phone="+447700900501"),
                                       c.Recipient(phone="+447700900502"),
                                       c.Recipient(phone="+447700900503")]), metadata=MD)]
    assert len(members) == 3
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = [r async for r in reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    assert SERVICE in [s.name for s in replies[0].list_services_response.service]
    after = scrape(service)

    def delta(name: str, method: str, kind: str = "unary", service: str = SERVICE, **labels: str) -> float:
        return (value(after, name, method, kind, service, **labels) or 0) - (
            value(before, name, method, kind, service, **labels) or 0)

    assert delta("grpc_server_started_total", "ListContacts") == 1
    assert delta("grpc_server_handled_total", "ListContacts", grpc_code="OK") == 1
    assert delta("grpc_server_msg_received_total", "ListContacts") == 1
    assert delta("grpc_server_msg_sent_total", "ListContacts") == 1
    assert delta("grpc_server_handling_seconds_count", "ListContacts") == 1

    assert delta("grpc_server_started_total", "GetContact") == 2
    assert delta("grpc_server_handled_total", "GetContact", grpc_code="InvalidArgument") == 1
    assert delta("grpc_server_handled_total", "GetContact", grpc_code="Unauthenticated") == 1
    assert delta("grpc_server_handled_total", "GetContact", grpc_code="OK") == 0
    assert delta("grpc_server_msg_sent_total", "GetContact") == 0  # no reply message
    assert delta("grpc_server_handling_seconds_count", "GetContact") == 2

    kind = "server_stream"
    assert delta("grpc_server_started_total", "ResolveAudience", kind) == 1
    assert delta("grpc_server_handled_total", "ResolveAudience", kind, grpc_code="OK") == 1
    assert delta("grpc_server_msg_received_total", "ResolveAudience", kind) == 1
    assert delta("grpc_server_msg_sent_total", "ResolveAudience", kind) == 3

    refl = {"kind": "bidi_stream", "service": "grpc.reflection.v1alpha.ServerReflection"}
    assert delta("grpc_server_handled_total", "ServerReflectionInfo", **refl, grpc_code="OK") == 1
    assert delta("grpc_server_msg_received_total", "ServerReflectionInfo", **refl) == 1
    assert delta("grpc_server_msg_sent_total", "ServerReflectionInfo", **refl) == 1
