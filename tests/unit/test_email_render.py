import email
import email.policy

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.email import links, mime, outcomes, render, tokens
from gateways.email.smtp_pool import SmtpConnectionError, SmtpReplyError

F = c.FailureCategory
K = e.MessageEventKind


def test_template_compiled_once_by_the_shared_engine_and_substituted_per_recipient(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from jinja2.sandbox import SandboxedEnvironment

    compiled: list[str] = []
    real = SandboxedEnvironment.from_string

    def counting(self, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        compiled.append(source)
        return real(self, source, *args, **kwargs)

    monkeypatch.setattr(SandboxedEnvironment, "from_string", counting)
    fresh = f"{{# {uuid.uuid4()} #}}"  # sources no earlier test compiled (the cache is global)
    src = fresh + "<p>Hi {{ first_name }} {{ fields.city }}</p>"
    out = [render.render_all(fresh + "Hello {{ first_name }}", fresh + "Hi {{ first_name }}", src,
                             render.context({"first_name": n, "city": "Leeds"}))
           for n in ("Ann", "Bob", "Cy")]
    assert [o[2] for o in out] == ["<p>Hi Ann Leeds</p>", "<p>Hi Bob Leeds</p>", "<p>Hi Cy Leeds</p>"]
    assert out[1][0] == "Hello Bob" and out[2][1] == "Hi Cy"
    assert len(compiled) == 3  # subject, text, html: each once for three recipients


def test_contact_fields_render_in_every_part() -> None:
    from shared import templating

    fields = templating.recipient_variables(
        first_name="Ada", last_name="Lovelace", phone="+447700900123", email="ada@example.com",
        external_id="x-1", language="en", contact_id="ct-1", fields={"city": "Leeds"})
    ctx = render.context(fields, email="ada@example.com", unsubscribe_url="https://t/u/x")
    src = "{{ first_name }}|{{ last_name }}|{{ full_name }}|{{ phone }}|{{ email }}|" \
          "{{ external_id }}|{{ language }}|{{ contact_id }}|{{ city }}|{{ fields.city }}"
    want = "Ada|Lovelace|Ada Lovelace|+447700900123|ada@example.com|x-1|en|ct-1|Leeds|Leeds"
    assert render.render_all(src, src, src, ctx) == (want, want, want)
    # the same dict the shared engine builds
    assert ctx == templating.context(fields, email="ada@example.com", unsubscribe_url="https://t/u/x")


def test_html_autoescapes_fields_text_does_not() -> None:
    out = render.render_all("", "{{ x }}", "<b>{{ x }}</b>", render.context({"x": "<script>&"}))
    assert out[2] == "<b>&lt;script&gt;&amp;</b>"
    assert out[1] == "<script>&"


def test_subject_cannot_inject_headers() -> None:
    subject, _, _ = render.render_all("Hi {{ n }}", "", "", render.context({"n": "x\r\nBcc: a@example.com"}))
    assert "\n" not in subject and "\r" not in subject


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",  # the sandbox
    "{% if %}",  # does not compile
    "{{ first_name | int + 'x' }}",  # a filter on a bad value: TypeError inside Jinja
    "{{ nope[0] }}",  # subscript of a missing name (fast path)
])
def test_any_template_failure_is_a_template_error(source: str) -> None:
    for part in ("subject", "text", "html"):
        args = {"subject": "", "text": "", "html": "", part: source}
        with pytest.raises(render.TemplateError):
            render.render_all(args["subject"], args["text"], args["html"], {"first_name": "Ada"})


def test_missing_field_renders_empty_and_herald_values_win() -> None:
    ctx = render.context({"email": "spoof", "city": "Leeds"}, email="a@example.com")
    _, text, _ = render.render_all("", "{{ email }} {{ nope }}{{ fields.city }}", "", ctx)
    assert text == "a@example.com Leeds"


def test_rewrite_links_only_http_and_keeps_order() -> None:
    html = ('<a href="https://example.com/a?x=1&amp;y=2">A</a> <a class="b" HREF=\'http://example.com/b\'>B</a>'
            '<a href="mailto:x@example.com">m</a><a href="#top">t</a>'
            '<a href="https://t.example.com/u/tok">unsub</a>')
    seen = []

    def make(i: int, url: str) -> str:
        seen.append((i, url))
        return f"https://t.example.com/c/{i}?q=1&r=2"

    out, targets = links.rewrite_links(html, make, skip=lambda u: u.startswith("https://t.example.com/"))
    assert seen == [(0, "https://example.com/a?x=1&y=2"), (1, "http://example.com/b")]
    assert targets == ["https://example.com/a?x=1&y=2", "http://example.com/b"]
    assert 'href="https://t.example.com/c/0?q=1&amp;r=2"' in out
    assert "HREF='https://t.example.com/c/1?q=1&amp;r=2'" in out
    assert 'href="mailto:x@example.com"' in out and 'href="#top"' in out
    assert 'href="https://t.example.com/u/tok"' in out


def test_pixel_goes_before_body_end() -> None:
    assert links.add_pixel("<html><body>x</body></html>", "https://t/o/a.gif").endswith(
        'style="display:block;border:0;width:1px;height:1px" /></body></html>')
    assert links.add_pixel("<p>x</p>", "https://t/o/a.gif").startswith("<p>x</p><img ")


def test_tracker_urls_verify() -> None:
    signer = tokens.Signer([b"k"])
    t = links.Tracker(signer, "https://t.example.com/")
    job = e.MessageJob(message_id="m-1", campaign_id="c", workspace_id="w", to="a@example.com",
                       contact_id="ct-1")
    o = t.open_url(job)
    assert o.startswith("https://t.example.com/o/") and o.endswith(".gif")
    assert signer.verify(o.rsplit("/", 1)[1].removesuffix(".gif"), tokens.OPEN) is not None
    u = signer.verify(t.unsubscribe_token(job), tokens.UNSUBSCRIBE)
    assert u is not None and u.address == "a@example.com" and u.contact_id == "ct-1"
    assert t.is_own(t.unsubscribe_url(job))


def test_mime_parses_back() -> None:
    data = mime.build(headers=[("Message-ID", "<m@example.com>"), ("From", "a@example.com"),
                               ("To", "b@example.com"), ("Subject", mime.encode_header("Grüße"))],
                      text="Hallo Jürgen\n" + "x" * 200, html="<p>Hallo J&uuml;rgen</p>")
    assert data.isascii()
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert msg["Subject"] == "Grüße"
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").startswith("Hallo Jürgen\n" + "x" * 200)
    assert "Hallo J&uuml;rgen" in msg.get_body(("html",)).get_content()
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))


def test_address_checks() -> None:
    assert mime.parse_sender("News <news@example.com>") == ("News <news@example.com>", "news@example.com")
    assert mime.parse_sender("news@example.com") == ("news@example.com", "news@example.com")
    assert mime.parse_sender("Jörg <j@example.com>")[0].startswith("=?utf-8?")
    for bad in ["", "nobody", "a@b", "a b@example.com", "x@example.com\r\nBcc: y@example.com", "ü@example.com"]:
        with pytest.raises(mime.AddressError):
            mime.check_address(bad)


def test_classification() -> None:
    o = outcomes.from_exception(SmtpReplyError(550, "5.1.1 <x@example.com>: User unknown", "rcpt"))
    assert (o.kind, o.code, o.enhanced, o.category) == (K.MESSAGE_EVENT_KIND_FAILED, "550", "5.1.1",
                                                        F.FAILURE_CATEGORY_INVALID_ADDRESS)
    o = outcomes.from_exception(SmtpReplyError(554, "5.7.1 spam", "data"))
    assert o.category == F.FAILURE_CATEGORY_CONTENT_REJECTED
    o = outcomes.from_exception(SmtpReplyError(553, "sender not allowed", "mail"))
    assert o.category == F.FAILURE_CATEGORY_CONFIG_ERROR
    o = outcomes.from_exception(SmtpReplyError(535, "5.7.8 bad credentials", "auth"))
    assert o.kind == K.MESSAGE_EVENT_KIND_FAILED and o.category == F.FAILURE_CATEGORY_CONFIG_ERROR
    o = outcomes.from_exception(SmtpReplyError(451, "4.7.1 try later", "rcpt"))
    assert o.kind == K.MESSAGE_EVENT_KIND_DEFERRED and o.code == "451"
    final = outcomes.exhausted(o, 5)
    assert final.kind == K.MESSAGE_EVENT_KIND_FAILED and final.enhanced == "4.7.1"
    assert final.category == F.FAILURE_CATEGORY_THROTTLED
    o = outcomes.from_exception(SmtpReplyError(421, "4.3.2 shutting down", "connect"))
    assert o.kind == K.MESSAGE_EVENT_KIND_DEFERRED and o.code == "421"
    o = outcomes.from_exception(ConnectionRefusedError(111, "refused"))
    assert o.kind == K.MESSAGE_EVENT_KIND_DEFERRED and o.code == ""
    o = outcomes.from_exception(SmtpConnectionError("gone"))
    assert o.kind == K.MESSAGE_EVENT_KIND_DEFERRED


def test_overlong_link_stays_untracked() -> None:
    t = links.Tracker(tokens.Signer([b"k"]), "https://t.example.com")
    job = e.MessageJob(message_id="m-1")
    long_url = "https://example.com/?q=" + "x" * 5000
    html = f'<a href="https://example.com/a">a</a><a href="{long_url}">b</a><a href="https://example.com/c">c</a>'
    out, targets = links.rewrite_links(html, lambda i, u: t.click_url(job, i, u))
    assert targets == ["https://example.com/a", "https://example.com/c"]
    assert f'href="{long_url}"' in out and out.count("https://t.example.com/c/") == 2


@pytest.mark.parametrize("to,contact", [("a@example.com", "ct-1"), ("ä\"\\x@example.com", ""),
                                        ("b@example.com", "ct-\u2028é")])
def test_unsubscribe_token_payload_is_the_signer_part(to: str, contact: str) -> None:
    from gateways.email.skeleton import Skeleton

    signer = tokens.Signer([b"k"])
    job = e.MessageJob(message_id="m-1", campaign_id="c\"1", workspace_id="w", variant="B", to=to,
                       contact_id=contact, sender="News <news@example.com>", subject="Hi", text="x")
    sk = Skeleton(job, signer, "https://t.example.com", "")
    p = {"k": tokens.UNSUBSCRIBE, "c": "c\"1", "w": "w", "v": "B", "a": to}
    if contact:
        p["ct"] = contact
    m = signer.message_part("m-1")
    assert sk.unsubscribe_url(job, m) == f"https://t.example.com/u/{signer.sign_parts(signer.part(p), m)}"
    tok = signer.verify(sk.unsubscribe_url(job, m).rsplit("/", 1)[1], tokens.UNSUBSCRIBE)
    assert tok is not None and tok.address == to and tok.contact_id == contact


def test_stable_event_id_is_uuid5() -> None:
    import uuid

    from gateways.core.events import EVENT_ID_NAMESPACE as _NS
    from gateways.email.events import stable_event_id

    for name in ("m-1:submitted:1", "ä:failed:2", ""):
        assert stable_event_id(name) == str(uuid.uuid5(_NS, name))
    for k in range(300):  # every value of the variant nibble
        assert stable_event_id(f"m-{k}") == str(uuid.uuid5(_NS, f"m-{k}"))


def test_random_event_id_is_uuid4_text() -> None:
    import uuid

    from gateways.email.events import random_event_id

    for _ in range(300):
        x = random_event_id()
        u = uuid.UUID(x)
        assert str(u) == x and u.version == 4 and u.variant == uuid.RFC_4122


def test_machine_open_rules() -> None:
    from gateways.email.tracking import is_machine_open

    assert is_machine_open("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", "66.249.1.1")
    assert is_machine_open("YahooMailProxy; https://help.yahoo.com", "98.1.1.1")
    assert is_machine_open("  ", "203.0.113.1") and is_machine_open("Mozilla/5.0", "203.0.113.1")
    assert is_machine_open("Mozilla/5.0 (Macintosh) AppleWebKit", "17.58.1.2")
    assert not is_machine_open("Mozilla/5.0 (Macintosh) AppleWebKit", "170.58.1.2")
    assert not is_machine_open("Mozilla/5.0 (Macintosh) AppleWebKit", "17.bad")
    assert not is_machine_open("Mozilla/5.0 (Windows NT 10.0) Firefox/120.0", "2001:db8::1")
    assert is_machine_open("Mimecast scanner", "2001:db8::1")
