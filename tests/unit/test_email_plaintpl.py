import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from gateways.email.plaintpl import compile_plain
from shared.templating import context, recipient_variables

HTML = SandboxedEnvironment(autoescape=True, undefined=jinja2.Undefined)
PLAIN = SandboxedEnvironment(autoescape=False, undefined=jinja2.Undefined)

SOURCES = [
    "Hello {{ first_name }} {{ last_name }},",
    "<b>{{ x }}</b> and {{ company | default(\"our <list>\") }} / {{ nope|d('n&a') }}",
    "a {{- x -}} b\n  {{ x }}\n",  # whitespace control and the dropped trailing newline
    "{# a comment #}line one\nline two {{ links[1] }} {{ links[7] }}\n\n",
    "{{ unsubscribe_url }}",
    "no variables at all",
    "",
]
CONTEXTS = [
    {"first_name": "Ann", "last_name": "O'Neil", "x": "<script>&\"", "company": "",
     "links": ["l0", "https://e.example.com/?a=1&b=2"], "unsubscribe_url": "https://t/u/a.b.c"},
    {"x": "plain", "links": []},
]


@pytest.mark.parametrize("env", [HTML, PLAIN], ids=["html", "plain"])
@pytest.mark.parametrize("source", SOURCES)
def test_same_output_as_jinja(env: SandboxedEnvironment, source: str) -> None:
    fast = compile_plain(env, source)
    assert fast is not None
    for ctx in CONTEXTS:
        if "links[" in source and "links" not in ctx:
            continue
        assert fast.render(ctx) == env.from_string(source).render(ctx)


# What a job carries now (shared.templating.recipient_variables) plus the gateway's own.
RECIPIENT = recipient_variables(
    first_name="Zoë", last_name="O'Brien <&>", phone="+447700900123", email="zoe@example.com",
    external_id="ext-\"1\"", language="", contact_id="ct-1", fields={"city": "Leeds & York"})
FULL = ("Hi {{ first_name }} {{ last_name }} ({{ full_name }}), {{ phone }} {{ email }}\n"
        "{{ external_id }}|{{ language | default('en') }}|{{ contact_id }}|{{ city }}|"
        "{{ unsubscribe_url }}|{{ nickname | d('friend') }}")


@pytest.mark.parametrize("env", [HTML, PLAIN], ids=["html", "plain"])
def test_recipient_variables_render_as_jinja(env: SandboxedEnvironment) -> None:
    fast = compile_plain(env, FULL)
    assert fast is not None
    ctx = context(RECIPIENT, email="zoe@example.com", unsubscribe_url="https://t/u/a.b.c")
    out = fast.render(ctx)
    assert out == env.from_string(FULL).render(ctx)
    assert "Hi Zoë" in out and "|ct-1|" in out and "friend" in out
    # an empty contact field is one the recipient lacks: `default` applies to it too
    assert "|en|ct-1" in out


def test_subscript_of_missing_name_fails_like_jinja() -> None:
    fast = compile_plain(HTML, "{{ links[0] }}")
    assert fast is not None
    with pytest.raises(jinja2.UndefinedError):
        HTML.from_string("{{ links[0] }}").render({})
    with pytest.raises(jinja2.UndefinedError):
        fast.render({})


@pytest.mark.parametrize("source", [
    "{% if x %}y{% endif %}", "{% for i in x %}{{ i }}{% endfor %}", "{{ x.upper() }}",
    "{{ x | upper }}", "{{ fields.city }}", "{{ fields }}", "{{ range }}", "{{ 'lit' }}",
    "{{ x ~ y }}", "{{ x[y] }}", "{{ x | default(y) }}", "{{ ''.__class__ }}", "{% set a = 1 %}",
    "{{ x[-1] }}", "{{ x | default('a', true) }}", "{{ x", "{% raw %}{{ x }}{% endraw %}{{ y.z }}",
])
def test_anything_else_goes_to_jinja(source: str) -> None:
    assert compile_plain(HTML, source) is None


def test_raw_names_are_not_escaped() -> None:
    fast = compile_plain(HTML, '<a href="{{ l[0] }}">{{ x }}</a>', raw=frozenset({"l"}))
    assert fast is not None
    assert fast.render({"l": ["https://t.example.com/c/a.b.c"], "x": "<"}) == \
        '<a href="https://t.example.com/c/a.b.c">&lt;</a>'


def test_skeleton_fast_path_composes_the_same_bytes_as_jinja(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from bench.bench_email import job
    from gateways.email import render, skeleton, tokens

    signer = tokens.Signer([b"k"])
    j = job(1, "c-1")
    j.fields["city"] = "Leeds & <York>"
    fast = skeleton.Skeletons(signer, "https://t.example.com").get(j)
    monkeypatch.setattr(render, "compile_plain", lambda *a, **k: None)
    slow = skeleton.Skeletons(signer, "https://t.example.com").get(j)
    # the plain part of the HTML comes from the compiled fast path in one, Jinja in the other
    assert fast.html is not None and fast.html.plain is not None
    assert not (slow.html is not None and slow.html.plain is not None)
    slow.boundary = fast.boundary
    outs = [sk.compose(j, j.to, "b@example.com", None, lambda i, u: None).data for sk in (fast, slow)]
    outs = [re.sub(rb"\r\nDate: [^\r]*", b"", o) for o in outs]
    assert b"Leeds &amp; &lt;York&gt;" in outs[0]
    assert outs[0] == outs[1]


@pytest.mark.parametrize("source", SOURCES + [
    ".dot first {{ x }}\n.dot line\nplain {{ y }}", "{{ x }}\n{{ y }} tail", "a\n\n{{ x }}{{ y }}\n",
    "{{ y }}" + "z" * 990 + "{{ x }}\nshort", "x\n" + "w" * 1200 + "\n{{ x }}",
])
@pytest.mark.parametrize("values", [
    {"x": "Ann", "y": "Bo"}, {"x": ".dot", "y": ""}, {"x": "", "y": ".y"}, {"x": "a" * 30, "y": "b"},
    {"x": "two\nlines", "y": "b"}, {"x": "Jörg", "y": "b"},
])
def test_line_facts_match_the_output(source: str, values: dict[str, str]) -> None:
    fast = compile_plain(PLAIN, source)
    assert fast is not None
    ctx = {**CONTEXTS[0], **values}
    text, longest, dot = fast.render_lines(ctx)
    assert text == PLAIN.from_string(source).render(ctx)
    lines = text.split("\n")
    if longest < 0:  # unknown: only for values with line breaks or non-ASCII
        assert any("\n" in v or not v.isascii() for v in values.values())
        return
    assert longest == max(len(x) for x in lines)
    assert dot == any(x.startswith(".") for x in lines)


def test_composed_mail_says_when_it_needs_no_dot_stuffing() -> None:
    from bench.bench_email import job
    from gateways.email import skeleton, tokens
    from gateways.email.smtp_pool import QueuedMail, dot_stuff

    sks = skeleton.Skeletons(tokens.Signer([b"k"]), "https://t.example.com")
    j = job(1, "c-1")
    c = sks.get(j).compose(j, j.to, "b@example.com", None, lambda i, u: None)
    assert c.dot_free and b"\r\n." not in c.data
    assert QueuedMail("a", "b", c.data, c.dot_free).body == dot_stuff(c.data)
    j.text = "{{ first_name }}\nbye\n"
    j.fields["first_name"] = ".starts with a dot"
    c = sks.get(j).compose(j, j.to, "b@example.com", None, lambda i, u: None)
    assert not c.dot_free and b"\r\n.starts" in c.data
    assert QueuedMail("a", "b", c.data, c.dot_free).body == dot_stuff(c.data)
    assert b"\r\n..starts" in dot_stuff(c.data)


@pytest.mark.parametrize("env", [HTML, PLAIN], ids=["html", "plain"])
@pytest.mark.parametrize("source", SOURCES + [
    ".dot first {{ x }}\n.dot line\nplain {{ y }}", "{{ x }}\n{{ y }} tail", "a\n\n{{ x }}{{ y }}\n",
    "{{ y }}" + "z" * 990 + "{{ x }}\nshort", "x\n" + "w" * 1200 + "\n{{ x }}",
    "{{ x }}{{ y }}.z\n{{ y }}{{ x }}", "\n{{ x }}.{{ y }}", "{{ x | d('.d') }}{{ links[0] }}\n",
    "{{ links[5] }}{{ nope }}{{ x }}", "{{ x }}\n\n{{ x }}{{ x | default('<&>') }}",
])
@pytest.mark.parametrize("values", [
    {"x": "Ann", "y": "Bo"}, {"x": ".dot", "y": ""}, {"x": "", "y": ".y"}, {"x": "a" * 30, "y": "b"},
    {"x": "two\nlines", "y": "b"}, {"x": "Jörg", "y": "b"}, {"x": "", "y": ""}, {"y": ".<"},
    {"x": 7, "y": ".", "links": [".l0", 3]}, {"x": "cr\r", "y": "b"},
])
def test_generated_code_equals_the_generic_loop(env: SandboxedEnvironment, source: str,
                                                values: dict[str, object]) -> None:
    fast = compile_plain(env, source)
    assert fast is not None
    ctx = {**CONTEXTS[0], **values}
    if "x" not in values:
        del ctx["x"]
    assert fast.render_lines(ctx) == fast.render_lines_generic(ctx)
    assert fast.render(ctx) == env.from_string(source).render(ctx)
