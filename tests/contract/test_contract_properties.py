"""Property: whatever a client sends to any RPC of CampaignService, RecipientService and
StatsService, Herald answers a meaningful status: never INTERNAL or UNKNOWN (nor
UNIMPLEMENTED for an RPC the contract declares), and every INVALID_ARGUMENT carries a
google.rpc.BadRequest naming at least one field.

The RPCs are enumerated from the proto descriptors (a new RPC is covered without touching
this file) and each request is generated from its message descriptor: strings (empty, huge,
unicode, NUL, UUID-like, ids that exist, filter/order/template/page-token shaped), integers
at their extremes, NaN/inf doubles, out-of-range enum numbers, Timestamps out of range,
repeated fields, nested messages and maps. Two passes: an admin with pii and a viewer, in the
property tests' own workspace (ws-p) so random mutations never touch the other tests' data.
Examples are derandomized (the same inputs every run) and bounded per RPC.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf import field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.message import Message
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import field_violations
from tests.contract import stack
from tests.contract.stack import ContractStack

SERVICES = [
    (cpb.DESCRIPTOR.services_by_name["CampaignService"], cgrpc.CampaignServiceStub, "campaigns"),
    (rpb.DESCRIPTOR.services_by_name["RecipientService"], rgrpc.RecipientServiceStub, "recipients"),
    (spb.DESCRIPTOR.services_by_name["StatsService"], sgrpc.StatsServiceStub, "stats"),
]
METHODS = [(svc, m, stub, proc) for svc, stub, proc in SERVICES for m in svc.methods]
BAD_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}
EXAMPLES = 30
TIMEOUT = 20.0
STREAM_TIMEOUT = 1.5

# (RPC, status code name) -> count, printed at the end of the module (pytest -s shows it): a
# property that only ever saw one status would prove little.
OUTCOMES: Counter[tuple[str, str]] = Counter()

# Ids that exist in ws-p, filled in by the fixture so generated requests reach past lookups.
KNOWN_IDS: list[str] = []

UUIDS = ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
         "123e4567-e89b-12d3-a456-426614174000", "123E4567-E89B-12D3-A456-426614174000",
         "123e4567e89b12d3a456426614174000", "{123e4567-e89b-12d3-a456-426614174000}",
         "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-4266141740000",
         "not-a-uuid", "1", "-1", "0"]
SPECIAL = ["", " ", "\x00", "a\x00b", "\t\n", "é", "😀" * 3, "ℌ𝔢𝔩𝔩𝔬", "\u202e", "'; DROP TABLE campaigns; --",
           "%", "_", "\\", "*", "..", "../../etc/passwd", "NaN", "null", "None", "true", "1e309",
           "+447700900123", "447700900123", "+44 7700 900123", "+", "reader@prop.example.com", "@", "a@b",
           "x" * 129, "x" * 5000, "é" * 3000]
FILTERS = ["status=SENDING", "status=SENDING,PAUSED", "status=NOPE", "status=", "=", "status", "a=b",
           "status=FAILED AND category=INVALID_ADDRESS", "category=THROTTLED", "carrier=null",
           "carrier=UNDELIV", "result=failed", "result=bogus", "stage=submitted", "stage=",
           "search=+4477", "search=" + "x" * 3000, "period=24h", "period=99y", "mode=TRIGGER",
           "channel=SMS", "channel=FAX", "moderation=PENDING", "workspace=ws-a", "category_id=x",
           "AND AND", "status=SENDING OR status=DONE", "created>2020", "status==DONE", "(status=DONE)",
           "search=%", "search=_", "search=\\", "search=\x00"]
ORDERS = ["created", "created desc", "created asc", "start", "sender desc", "sent", "created sideways",
          "nonsense", "created desc, start", "created,start", "-created", "CREATED DESC", " "]
TEMPLATES = ["Hi {{ first_name }}", "Hi {{ first_name }", "{% if %}", "{% for x in range(10**9) %}x{% endfor %}",
             "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ unknown_var }}", "{{ code }}",
             "{{ first_name | default('there') }}", "{{ fields['code'] }}", "{{ 1/0 }}", "{{ 'x' * 10**9 }}",
             "{% include 'x' %}", "{{ phone }}", "{{ unsubscribe_url }}", "{#", "{{", "}}", "{%%}",
             "x" * 2000, "€" * 400]
TOKENS = ["", "abc", "AAAA", "eyJvIjo1MH0", "eyJvIjoxMDAwMDAwMDB9", "0", "-1", "%%%", "x" * 2000]
TIMES = ["00:00", "23:59", "24:00", "9:00", "12:60", "-1:00", "noon", ""]
ZONES = ["Europe/Paris", "UTC", "Mars/Olympus", "", "../../etc/localtime", "Europe/Paris\x00"]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
TS_SECONDS = [0, -1, 1, 253402300799, 253402300800, -62135596800, -62135596801, 2**62, -(2**62),
              INT64[1], INT64[0], int(time.time()), int(time.time()) + 3600, int(time.time()) - 86400 * 365]


def _text() -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def _uuid() -> st.SearchStrategy[str]:
    return st.one_of(st.uuids().map(str), st.sampled_from(UUIDS), st.sampled_from(KNOWN_IDS or UUIDS))


PLAUSIBLE_STRINGS = {"name": ["Spring sale", "A"], "channel": [], "first_name": ["Ada"], "last_name": ["Lovelace"],
                     "language": ["en", "fr-CA"], "external_id": ["ext-1"], "note": ["ok"], "reason": ["asked"],
                     "description": ["d"], "template_name": ["welcome"], "categories_field": ["campaign.category_ids"],
                     "inline_field": ["recipients"], "sender_field": ["campaign.sender"]}


def string_strategy(name: str, nasty: bool = True) -> st.SearchStrategy[str]:
    """Strings shaped by the field's name; nasty: mixed with the generic hostile ones."""
    generic = st.one_of(st.sampled_from(SPECIAL), _text())
    n = name.lower()
    if not nasty and n in ("id", "campaign_id", "contact_id", "category_ids", "message_ids", "source_campaign_id"):
        return st.sampled_from(KNOWN_IDS or UUIDS)
    if not nasty and PLAUSIBLE_STRINGS.get(n):
        return st.sampled_from(PLAUSIBLE_STRINGS[n])
    if n == "id" or n.endswith("_id") or n.endswith("_ids"):
        shaped = _uuid()
    elif "filter" in n:
        shaped = st.sampled_from(FILTERS)
    elif n == "order_by":
        shaped = st.sampled_from(ORDERS)
    elif n in ("text", "html", "subject"):
        shaped = st.sampled_from(TEMPLATES)
    elif n == "page_token":
        shaped = st.sampled_from(TOKENS)
    elif n in ("start", "end"):
        shaped = st.sampled_from(TIMES)
    elif n == "time_zone":
        shaped = st.sampled_from(ZONES)
    elif n in ("period",):
        shaped = st.sampled_from(["", "all", "1h", "24h", "7d", "30d", "1y", "-1h", "0d"])
    elif n in ("phone", "address", "sender", "from"):
        # Never another suite's sender (HERALD, example.com): a sender belongs to the first
        # workspace that uses it.
        shaped = st.sampled_from(["+447700900123", "447700900123", "PROPTEST", "PROPTEST2", "x" * 12,
                                  "news@prop.example.com", "Name <news@prop.example.com>", "+4",
                                  "+" + "9" * 20])
    elif n == "email":
        shaped = st.sampled_from(["reader@prop.example.com", "READER@PROP.EXAMPLE.COM", "no-at", "a@", "@example.com"])
    elif n == "request_id":
        shaped = st.sampled_from(["", "prop-fixed", "x" * 128, "x" * 129])
    elif n == "variant":
        shaped = st.sampled_from(["", "A", "B", "A:rollout", "Z"])
    else:
        shaped = generic
    return st.one_of(shaped, generic) if nasty else shaped


def _int(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, -1, 50, 1000, 1001, lo, hi]), st.integers(lo, hi))


def scalar_strategy(f: d.FieldDescriptor, nasty: bool = True) -> st.SearchStrategy[Any]:
    t = f.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return string_strategy(f.name, nasty)
    if not nasty and t == d.FieldDescriptor.TYPE_ENUM:
        return st.sampled_from([v.number for v in f.enum_type.values][1:] or [0])
    if not nasty and t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.sampled_from([0.0, 1.0, 25.5])
    if not nasty and t != d.FieldDescriptor.TYPE_BOOL and t != d.FieldDescriptor.TYPE_BYTES:
        return st.sampled_from([0, 1, 10, 50, 100])
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32, d.FieldDescriptor.TYPE_SFIXED32):
        return _int(*INT32)
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64, d.FieldDescriptor.TYPE_SFIXED64):
        return _int(*INT64)
    if t in (d.FieldDescriptor.TYPE_UINT32, d.FieldDescriptor.TYPE_FIXED32):
        return _int(0, 2**32 - 1)
    if t in (d.FieldDescriptor.TYPE_UINT64, d.FieldDescriptor.TYPE_FIXED64):
        return _int(0, 2**64 - 1)
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"),
                                          1e308, -1e308, 5e-324]), st.floats(allow_nan=True, allow_infinity=True,
                                                                             width=64 if t == d.FieldDescriptor.TYPE_DOUBLE else 32))
    if t == d.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t == d.FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff" * 5000))
    if t == d.FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), st.sampled_from([-1, max(known) + 1, 99, INT32[1], INT32[0]]))
    raise TypeError(f"no strategy for field type {t} ({f.full_name})")


def _timestamp(nasty: bool = True) -> st.SearchStrategy[Message]:
    if not nasty:
        now = int(time.time())
        return st.sampled_from([now + 3600, now + 7200, now + 86400]).map(
            lambda s: timestamp_pb2.Timestamp(seconds=s))
    return st.builds(lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
                     st.one_of(st.sampled_from(TS_SECONDS), st.integers(*INT64)),
                     st.one_of(st.sampled_from([0, 1, 999_999_999, 1_000_000_000, -1]), st.integers(*INT32)))


def _field_mask(owner: d.Descriptor | None) -> st.SearchStrategy[Message]:
    names = ["name", "content", "sender", "window", "max_rate", "variants", "id", "status", "workspace_id",
             "content.text", "nope", "", "*", "campaign.name"]
    return st.lists(st.sampled_from(names), max_size=4).map(lambda ps: field_mask_pb2.FieldMask(paths=ps))


def request_strategy(desc: d.Descriptor) -> st.SearchStrategy[Message]:
    """Hostile requests, and plausible ones (known ids, valid shapes) that get past validation
    into the servicers' deeper paths."""
    return st.one_of(message_strategy(desc, nasty=True), message_strategy(desc, nasty=False))


def message_strategy(desc: d.Descriptor, depth: int = 0, nasty: bool = True) -> st.SearchStrategy[Message]:
    if desc.full_name == "google.protobuf.Timestamp":
        return _timestamp(nasty)
    if desc.full_name == "google.protobuf.FieldMask":
        return _field_mask(None)
    cls = message_factory.GetMessageClass(desc)
    optional = {}
    for f in desc.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            key = scalar_strategy(f.message_type.fields_by_name["key"], nasty) if nasty else st.sampled_from(
                ["code", "city"])
            val_f = f.message_type.fields_by_name["value"]
            val = (scalar_strategy(val_f, nasty) if val_f.message_type is None
                   else message_strategy(val_f.message_type, depth + 1, nasty))
            optional[f.name] = st.dictionaries(key, val, max_size=3)
            continue
        if f.message_type is not None:
            if depth >= 3:
                continue
            one = message_strategy(f.message_type, depth + 1, nasty)
        else:
            one = scalar_strategy(f, nasty)
        if f.is_repeated:
            many = st.lists(one, max_size=3)
            if nasty and f.message_type is None:  # a long list of scalars (ids): limits and batching
                many = st.one_of(many, one.flatmap(lambda v: st.just([v] * 1200)))
            optional[f.name] = many
        else:
            optional[f.name] = one
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, desc, values))


def _build(cls: type, desc: d.Descriptor, values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        f = desc.fields_by_name[name]
        target = getattr(msg, name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            val_f = f.message_type.fields_by_name["value"]
            for k, v in value.items():
                if val_f.message_type is None:
                    target[k] = v
                else:
                    target[k].CopyFrom(v)
        elif f.is_repeated:
            if f.message_type is None:
                target.extend(value)
            else:
                for v in value:
                    target.add().CopyFrom(v)
        elif f.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(msg, name, value)
    return msg


# --- the calls ------------------------------------------------------------------------------
def _describe(req: Message) -> str:
    text = str(req)
    return text if len(text) < 1500 else text[:1500] + f"... ({len(text)} chars)"


def check_call(stub: Any, method: d.MethodDescriptor, req: Message, md: tuple) -> None:
    call = getattr(stub, method.name)
    try:
        if method.server_streaming:
            # Short deadline: a watch that has nothing to say ends with DEADLINE_EXCEEDED.
            stream = call(req, metadata=md, timeout=STREAM_TIMEOUT)
            # Watch streams never end: one item proves the stream works; the rest is cancelled.
            for n, _ in enumerate(stream):
                if n >= 2:
                    stream.cancel()
                    break
        elif method.client_streaming:  # the request twice: options may come only first
            call(iter([req, req]), metadata=md, timeout=TIMEOUT)
        else:
            call(req, metadata=md, timeout=TIMEOUT)
        OUTCOMES[(method.name, "OK")] += 1
    except grpc.RpcError as err:
        code = err.code()
        OUTCOMES[(method.name, code.name)] += 1
        if code == grpc.StatusCode.CANCELLED:
            return
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
            return  # a watch with nothing new to say
        detail = f"{method.full_name} -> {code.name}: {err.details()!r}\nrequest:\n{_describe(req)}"
        assert code not in BAD_CODES, detail
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, detail
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert field_violations(err), f"INVALID_ARGUMENT without a BadRequest field violation: {detail}"  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def contract_property_targets(contract_stack: ContractStack) -> AsyncIterator[None]:
    """A campaign, a contact and a category in ws-p, so generated ids can be real ones."""
    admin = contract_stack.caller(stack.WS_P, "admin", pii=True)
    cat = await stack.create_category(admin, "property")
    ids = await stack.upsert_contacts(admin, [rpb.Contact(
        phone=contract_stack.phones(1)[0], first_name="Prop", fields={"code": "1"},
        external_id=f"prop-{time.time_ns()}", category_ids=[cat])])
    draft = await admin.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"prop-{time.time_ns()}", draft=True,
        campaign=stack.sms_campaign("property target", "Hi {{ first_name }}", "PROPTEST", category_ids=[cat])))
    KNOWN_IDS[:] = [cat, ids[0], draft.id]
    yield None
    KNOWN_IDS.clear()
    by_rpc: dict[str, list[str]] = {}
    for (rpc, code), n in sorted(OUTCOMES.items()):
        by_rpc.setdefault(rpc, []).append(f"{code}={n}")
    print("\nstatus codes seen per RPC:\n" + "\n".join(f"  {k}: {' '.join(v)}" for k, v in by_rpc.items()))


@pytest.fixture(scope="module")
def contract_sync_channels(contract_stack: ContractStack) -> Iterator[dict[str, grpc.Channel]]:
    # Synchronous channels: hypothesis drives a plain function, the stack runs in processes.
    chans = {name: grpc.insecure_channel(contract_stack.stack.addr(name))
             for name in ("campaigns", "recipients", "stats")}
    yield chans
    for ch in chans.values():
        ch.close()


@pytest.mark.parametrize("role", ["admin", "viewer"])
@pytest.mark.parametrize(("method", "stub_cls", "proc"), [(m, s, p) for _svc, m, s, p in METHODS],
                         ids=[m.full_name.removeprefix("herald.v1.") for _svc, m, _s, _p in METHODS])
def test_any_request_gets_a_meaningful_status(
        contract_property_targets: None, contract_sync_channels: dict[str, grpc.Channel],
        method: d.MethodDescriptor, stub_cls: type, proc: str, role: str) -> None:
    stub = stub_cls(contract_sync_channels[proc])
    md = stack.metadata(stack.WS_P, role, pii=role == "admin")
    strategy = request_strategy(method.input_type)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(req=strategy)
    def prop(req: Message) -> None:
        check_call(stub, method, req, md)

    prop()


def test_every_rpc_of_the_contract_is_covered() -> None:
    names = {m.full_name for _svc, m, _s, _p in METHODS}
    assert "herald.v1.CampaignService.PreviewContent" in names
    assert "herald.v1.RecipientService.ValidateTargets" in names
    assert len(names) == sum(len(svc.methods) for svc, _stub, _proc in SERVICES)
    assert c.DESCRIPTOR.package == "herald.v1"
