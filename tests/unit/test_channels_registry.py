"""The channel registry: one answer per channel for subject, address validation, masking,
content and finality, equal to what the services did by channel name before."""

from __future__ import annotations

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import bus, channels, states

S = c.MessageStatus
SMS = channels.spec(c.CHANNEL_SMS)
EMAIL = channels.spec(c.CHANNEL_EMAIL)


def test_every_channel_of_the_enum_is_registered_once() -> None:
    got = channels.specs()
    assert [s.channel for s in got] == sorted(v for v in c.Channel.values() if v)
    assert len({s.name for s in got}) == len({s.subject for s in got}) == len(got)
    for s in got:
        assert channels.by_name(s.name) is channels.by_name(c.Channel.Name(s.channel)) is s
        assert s.subject == f"jobs.{s.name}"
    with pytest.raises(channels.UnknownChannel):
        channels.spec(c.CHANNEL_UNSPECIFIED)
    with pytest.raises(channels.UnknownChannel):
        channels.by_name("fax")


def test_subjects_are_the_bus_subjects() -> None:
    assert SMS.subject == bus.SUBJECT_SMS_JOBS and EMAIL.subject == bus.SUBJECT_EMAIL_JOBS


def test_phone_addresses() -> None:
    assert SMS.address_kind == "phone" and SMS.an_address() == "a phone number"
    assert SMS.normalise_address(" 07700 900123 ") == "+447700900123"
    for bad in ("", "12345", "hello", "+4477009001234", "1" * 400):
        with pytest.raises(channels.AddressError):
            SMS.normalise_address(bad)
    # An SMSC reports international digits without "+".
    assert SMS.normalise_reported("447700900555") == "+447700900555"
    with pytest.raises(channels.AddressError):
        SMS.normalise_reported("12")


def test_email_addresses() -> None:
    assert EMAIL.address_kind == "email" and EMAIL.an_address() == "an email address"
    assert EMAIL.normalise_address("Alice@Example.COM") == "Alice@example.com"
    for bad in ("", "bob@", "Bob <bob@example.com>", "a@" + "b" * 400):
        with pytest.raises(channels.AddressError) as err:
            EMAIL.normalise_address(bad)
        assert str(err.value)
    assert EMAIL.match_key("Alice@example.com") == "alice@example.com"
    assert SMS.match_key("+447700900123") == "+447700900123"


def test_masking_by_pii_rights() -> None:
    assert SMS.mask("+447700900123", pii=False) == "**********123"
    assert SMS.mask("+447700900123", pii=True) == "+447700900123"
    # Email addresses are shown as they are (only phone numbers are masked).
    assert EMAIL.mask("alice@example.com", pii=False) == "alice@example.com"


def test_senders() -> None:
    assert SMS.normalise_sender(" HERALD ") == "HERALD"
    assert EMAIL.normalise_sender("News <a@News.Example.com>") == "news.example.com"
    for spec, bad in ((SMS, "TOO LONG SENDER"), (EMAIL, "localhost"), (SMS, "A\x00")):
        with pytest.raises(channels.AddressError):
            spec.normalise_sender(bad)


def test_content_round_trip_and_flat_fallback() -> None:
    for spec in channels.specs():
        job = e.MessageJob(channel=spec.channel)
        values = {f: f"{f} {{{{ first_name }}}}" for f in spec.content_fields}
        spec.set_content(job, values)
        assert job.WhichOneof("content") is not None
        assert spec.content_values(job) == values
        assert job.HasField(job.WhichOneof("content")) and spec.content(job).ListFields()
    old = e.MessageJob(text="hi", subject="s", html="<p>")
    assert SMS.content(old).text == "hi" == channels.sms_content(old).text
    assert (EMAIL.content(old).subject, EMAIL.content(old).html) == ("s", "<p>")
    assert channels.email_content(e.MessageJob(sms=e.SmsContent(text="x"))).text == ""


def test_finality() -> None:
    assert SMS.final_statuses == states.FINAL
    assert EMAIL.is_final(S.MESSAGE_STATUS_SUBMITTED) and not SMS.is_final(S.MESSAGE_STATUS_SUBMITTED)
    for spec in channels.specs():
        assert states.FINAL <= spec.final_statuses
        for status in S.values():
            assert states.is_final(status, spec.channel) == spec.is_final(status)


def test_recipient_addresses() -> None:
    r = c.Recipient(phone="07700 900123", email="a@example.com")
    assert SMS.address_of(r) == "07700 900123" and EMAIL.address_of(r) == "a@example.com"
    SMS.set_address(r, "+447700900123")
    assert r.phone == "+447700900123"


def test_postback_urls() -> None:
    pb = channels.spec(c.CHANNEL_POSTBACK)
    assert pb.an_address() == "a URL" and channels.by_name("POSTBACK") is pb
    assert pb.normalise_address(" HTTPS://Hooks.Example.COM:8443/a/B?x=1#frag ") == (
        "https://hooks.example.com:8443/a/B?x=1")
    assert pb.normalise_address("http://[::1]:9000") == "http://[::1]:9000/"
    once = pb.normalise_address("http://127.0.0.1:8080/in")
    assert pb.normalise_address(once) == once
    for bad in ("", "hooks.example.com/x", "ftp://example.com/", "http://", "http://a b/",
                "http://user:pw@example.com/", "http://example.com:99999/", "javascript:x"):
        with pytest.raises(channels.AddressError):
            pb.normalise_address(bad)
    r = c.Recipient(email="a@example.com", fields={"url": "http://127.0.0.1/x"})
    assert pb.address_of(r) == "http://127.0.0.1/x" and pb.address_of(c.Recipient()) == ""
    pb.set_address(r, "http://127.0.0.1/y")
    assert r.fields["url"] == "http://127.0.0.1/y"
    assert pb.normalise_sender(" herald-hooks ") == "herald-hooks"
    with pytest.raises(channels.AddressError):
        pb.normalise_sender("not a name")
    assert pb.is_final(S.MESSAGE_STATUS_SUBMITTED)
