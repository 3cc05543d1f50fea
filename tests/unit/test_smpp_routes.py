"""Routes, id formats, token bucket (fake clock), hand-rolled PDUs vs smpplib, UDH."""

from __future__ import annotations

import pytest

from gateways.smpp import pdu
from gateways.smpp.routes import IdFormat, RouteConfigError, choose, parse_routes
from gateways.smpp.session import ClientConfig, TokenBucket
from shared import smstext as encoding

BASE = ClientConfig("127.0.0.1", 2775, "herald")


def test_routes_pick_longest_prefix_among_matching_senders() -> None:
    routes = parse_routes("""[
      {"name": "fallback", "port": 1},
      {"name": "uk", "port": 2, "prefixes": ["+44"], "binds": 2, "throughput": 50},
      {"name": "uk-mobile", "port": 3, "prefixes": ["+447"], "bind_mode": "pair"},
      {"name": "brand", "port": 4, "senders": ["ACME"], "id_format": "hex:decimal"}
    ]""", BASE)
    assert choose(routes, "HERALD", "+447700900001").name == "uk-mobile"
    assert choose(routes, "HERALD", "+441632960001").name == "uk"
    assert choose(routes, "HERALD", "+15550100").name == "fallback"
    assert choose(routes, "ACME", "+15550100").name == "brand"
    assert choose(routes, "ACME", "+447700900001").name == "uk-mobile"  # longer prefix wins
    uk = routes[1]
    assert uk.binds == 2 and uk.client.throughput == 50 and uk.client.name == "uk"
    assert routes[2].client.bind_mode == "pair" and routes[2].client.system_id == "herald"
    only_brand = parse_routes('{"routes": [{"name": "b", "senders": ["ACME"]}]}', BASE)
    assert choose(only_brand, "OTHER", "+447700900001") is None
    for bad in ('[{"name": "a", "bogus": 1}]', '[{"name": "a"}, {"name": "a"}]', "[]", "{",
                '[{"id_format": "hex:string"}]', '[{"bind_mode": "sideways"}]'):
        with pytest.raises(RouteConfigError):
            parse_routes(bad, BASE)


def test_id_formats() -> None:
    auto = IdFormat.parse("auto")
    assert auto.lookup_key("0972660181") in auto.store_keys("39F99DD5")
    assert auto.lookup_key("39f99dd5") in auto.store_keys("39F99DD5")
    hd = IdFormat.parse("hex:decimal")
    assert hd.store_keys("39F99DD5") == [hd.lookup_key("0972660181")] == ["972660181"]
    hh = IdFormat.parse("hex")
    assert hh.store_keys("00ABC") == [hh.lookup_key("abc")]
    s = IdFormat.parse("string:string")
    assert s.store_keys("Msg-0042") == [s.lookup_key("msg-0042")]


def test_token_bucket_rate_is_exact_with_concurrent_callers() -> None:
    now = [100.0]
    tb = TokenBucket(250.0, clock=lambda: now[0])
    # 1,000 callers reserve at once: their slots are spaced exactly 1/250 s apart.
    waits = [tb.reserve() for _ in range(1000)]
    assert waits[0] == 0.0
    assert waits[-1] == pytest.approx(999 / 250)
    # Time passes by the reservations: the achieved rate over the span is 250/s (within 2%).
    rate = 999 / (waits[-1] - waits[0])
    assert abs(rate - 250.0) / 250.0 < 0.02
    tb.slow_down()
    now[0] += 10.0
    a, b = tb.reserve(), tb.reserve()
    assert a == 0.0 and b == pytest.approx(1 / (250 * 0.8))
    assert TokenBucket(0).reserve() == 0.0  # unlimited


def test_hand_rolled_pdus_match_smpplib_byte_for_byte() -> None:
    kw = dict(source_addr="HERALD", source_addr_ton=5, source_addr_npi=0,
              destination_addr="447700900001", dest_addr_ton=1, dest_addr_npi=1, esm_class=0x40,
              registered_delivery=1, data_coding=8, short_message=b"\x05\x00\x03\x01\x02\x01hi")
    ours = pdu.encode_submit_sm(77, **kw)  # type: ignore[arg-type]
    theirs = pdu.encode("submit_sm", 77, service_type="", protocol_id=0, priority_flag=0,
                        schedule_delivery_time="", validity_period="", replace_if_present_flag=0,
                        sm_default_msg_id=0, **kw)
    assert ours == theirs
    sm = pdu.parse_sm(ours)
    assert (sm.source_addr, sm.destination_addr, sm.esm_class, sm.data_coding) == (
        "HERALD", "447700900001", 0x40, 8)
    assert sm.short_message == kw["short_message"] and sm.tlvs == {}
    assert pdu.encode_submit_sm_resp(5, "ABC") == pdu.encode("submit_sm_resp", 5, message_id="ABC")
    assert pdu.encode_submit_sm_resp(5, "", 0x58) == pdu.encode("submit_sm_resp", 5, status=0x58)
    assert pdu.encode_deliver_sm_resp(9, 0x64) == pdu.encode("deliver_sm_resp", 9, status=0x64)
    assert pdu.resp_message_id(pdu.encode("submit_sm_resp", 5, message_id="39F99DD5")) == "39F99DD5"
    with pytest.raises(pdu.ProtocolError):
        pdu.parse_sm(ours[:30])


def test_udh_8_and_16_bit_never_split_escapes_or_surrogates() -> None:
    text = ("a" * 152 + "€") * 3
    enc = encoding.encode_text(text, max_parts=10, reference=0x1234)
    bodies = [encoding.strip_udh(p, enc.esm_class) for p in enc.parts]
    assert all(c == (0x34, len(enc.parts), i) for i, (_b, c) in enumerate(bodies, 1))
    assert all(not b.endswith(b"\x1b") for b, _ in bodies)
    assert "".join(encoding.gsm7_decode(b) for b, _ in bodies) == text
    enc16 = encoding.encode_text("😀" * 100, max_parts=10, reference=0x1234, udh16=True)
    parts16 = [encoding.strip_udh(p, enc16.esm_class) for p in enc16.parts]
    assert all(c is not None and c[0] == 0x1234 for _b, c in parts16)
    assert all(len(p) <= 140 for p in enc16.parts)
    assert "".join(b.decode("utf-16-be") for b, _ in parts16) == "😀" * 100


def test_in_flight_cap_follows_windows_and_rate_limits() -> None:
    from gateways.smpp.gateway import in_flight_cap, job_ack_wait
    from gateways.smpp.routes import RouteConfig

    def r(window: int, binds: int = 1, rate: float = 0.0) -> RouteConfig:
        return RouteConfig(name=f"r{window}-{rate}", binds=binds,
                           client=ClientConfig("127.0.0.1", 1, "x", window=window, throughput=rate))

    assert in_flight_cap([r(100, binds=2), r(50)]) == 4 * 250
    assert in_flight_cap([r(1)]) == 64
    # 10 msg/s with 40 s of ack_wait: at most 100 jobs wait their turn (~10 s of work)
    assert job_ack_wait(10.0) == 40.0
    assert in_flight_cap([r(100, rate=10.0)]) == 100
    # one unlimited route: windows decide
    assert in_flight_cap([r(100, rate=10.0), r(100)]) == 800
