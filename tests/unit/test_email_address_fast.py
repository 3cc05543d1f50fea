"""The plain-ASCII fast path of normalise_email gives exactly what email-validator gives: the
same accept/reject, the same normalised address, the same error text."""

from __future__ import annotations

import random
import string

import email_validator
import pytest
from email_validator import EmailNotValidError, validate_email

from shared.channels.email import _checked_domain, fast_normalised_email, normalise_email
from shared.channels.spec import AddressError, checked_input

ROLE_NAMES = (
    "info marketing sales support abuse noc security postmaster hostmaster usenet news"
    " webmaster www uucp ftp".split()
)
# Punycode labels whose Unicode form is longer in UTF-8 than the ASCII form, and the reverse.
LONG_UNICODE = ("xn--tdaaaaaaaaaaaaaaaaaaaa", "xn--fiqaaaaaaaaaaaaaaa", "xn--l8jaaaaaaaaaaaaa")
DOMAINS = (
    """
    example.com EXAMPLE.COM Example.Com gmail.com mail.example.org a.b.c.d.e.co example.com.
    .example.com example..com -ex.com ex-.com e-x.com ab--c.com ex_ample.com _dmarc.example.com
    example com example.123 example.c0m 1.2.3.4 [1.2.3.4] [IPv6:::1] [ipv6:2001:db8::1]
    [300.1.1.1] [foo:bar] localhost a.localhost foo.local FOO.LOCAL mail.test test x.onion
    foo.invalid 1.in-addr.arpa arpa example.net www.example a.test.com xn--bcher-kva.de
    XN--BCHER-KVA.DE xn--80ak6aa92e.com xn--eckwd4c7c5976acvb2w6i.jp xn--zz.com xn--.com
    xn--invalid-.com xn--a.com xn--4dbc.1.com 1.xn--4dbc.com bücher.de пример.рф 例え.テスト
    ｅｘａｍｐｌｅ．ｃｏｍ example。com example.com> ex<ample.com exa@mple.com - . ..
""".split()
    + [
        "",
        "exa mple.com",
        "a" * 63 + ".com",
        "a" * 64 + ".com",
        ".".join(["a" * 63] * 3) + "." + "a" * 61,
        ".".join(["a" * 63] * 3) + "." + "a" * 62,
        ".".join(["b" * 49] * 5) + ".com",
        *(f"{lbl}.com" for lbl in LONG_UNICODE),
        *(f"{lbl.upper()}.com" for lbl in LONG_UNICODE),
        ".".join(LONG_UNICODE * 3) + ".com",
    ]
)
PLAIN = string.ascii_letters + string.digits + "._+-"
WIDE = PLAIN + "!#$%&'*/=?^`{|}~\"\\ @<>(),;:[]\t" + "éü中ß\u0301\u200d\u00a0＠"


def reference(raw: str) -> str:
    """normalise_email as it was before the fast path: the library alone."""
    text = checked_input(raw)
    try:
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise AddressError(f"{text!r} is not a valid email address ({exc})") from exc
    except Exception as exc:
        raise AddressError(f"{text!r} is not a valid email address") from exc


def outcome(fn, raw: str) -> tuple[str, str]:
    try:
        return "ok", fn(raw)
    except AddressError as exc:
        return "error", str(exc)


def local_parts(rng: random.Random) -> list[str]:
    out = 'a A a.b a..b .a a. . a+tag a_b-c - + _ 1 "a" a\\b é ü.x <a> ＠'.split()
    out += ['"a b"', '"a@b"', "a b", "a@b", "a\x00", "a\u200db", "\u0301a"]
    out += ROLE_NAMES + [n.upper() for n in ROLE_NAMES] + [n.title() for n in ROLE_NAMES]
    out += [n + "s" for n in ROLE_NAMES] + [n + ".x" for n in ROLE_NAMES]
    for n in (63, 64, 65, 100, 200, 240, 250, 260, 300):
        out.append("x" * n)
        out.append("X." * (n // 2))
    for _ in range(700):
        alphabet = PLAIN if rng.random() < 0.6 else WIDE
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 70))))
    for _ in range(100):  # dots in every position, including doubled
        chars = list("".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 8))))
        chars.insert(rng.randint(0, len(chars)), ".")
        if rng.random() < 0.3:
            chars.insert(rng.randint(0, len(chars)), ".")
        out.append("".join(chars))
    return out


def addresses() -> list[str]:
    rng = random.Random(20261201)
    locals_ = local_parts(rng)
    out = [f"{lp}@{d}" for lp in locals_[:60] for d in DOMAINS]
    out += [f"{rng.choice(locals_)}@{rng.choice(DOMAINS)}" for _ in range(4000)]
    # The common case: well-formed ASCII local parts on ordinary domains, any case.
    good = [d for d in DOMAINS if d.isascii() and "." in d.strip(".") and "[" not in d]
    for _ in range(3000):
        words = [
            "".join(rng.choice(PLAIN.replace(".", "")) for _ in range(rng.randint(1, 12)))
            for _ in range(rng.randint(1, 3))
        ]
        out.append(".".join(words) + "@" + rng.choice(good))
    # Total length around the library's 254-byte limit, in each of the address's forms.
    for d in DOMAINS:
        for total in (253, 254, 255, 256):
            n = total - len(d) - 1
            if n > 0:
                out.append("y" * n + "@" + d)
    out += "a@@example.com @example.com a@ a a@example.com@example.com a.@example.com".split()
    out += ["  a@example.com  ", "a@example.com\n", "Display <a@example.com>"]
    return out


ALL = addresses()


def test_fast_path_matches_the_library_for_every_generated_address() -> None:
    _checked_domain.cache_clear()
    taken = 0
    for raw in ALL:
        assert outcome(normalise_email, raw) == outcome(reference, raw), raw
        text = raw.strip()
        fast = fast_normalised_email(text) if text else None
        if fast is not None:
            taken += 1
            assert fast == validate_email(text, check_deliverability=False).normalized, raw
    # Not vacuous: the fast path answers a good share, including Punycode domains whose
    # Unicode form is the longer one near the length limit.
    assert taken > 2000
    assert fast_normalised_email("x@xn--bcher-kva.de") == "x@bücher.de"
    long_local = "z" * (254 - 1 - len("xn--tdaaaaaaaaaaaaaaaaaaaa.com"))
    assert fast_normalised_email(long_local + "@xn--tdaaaaaaaaaaaaaaaaaaaa.com") is None
    with pytest.raises(AddressError, match="too long after normalization"):
        normalise_email(long_local + "@xn--tdaaaaaaaaaaaaaaaaaaaa.com")


def test_second_lookup_of_a_domain_gives_the_same_answer() -> None:
    _checked_domain.cache_clear()
    first = [outcome(normalise_email, raw) for raw in ALL]
    assert [outcome(normalise_email, raw) for raw in ALL] == first
    assert _checked_domain.cache_info().hits > 0


def test_role_names_are_lower_cased_like_the_library_does() -> None:
    # The library's own list must be within the fast path's exclusions (a new library version
    # adding names fails here rather than normalising differently).
    assert set(email_validator.rfc_constants.CASE_INSENSITIVE_MAILBOX_NAMES) <= set(ROLE_NAMES)
    for name in ROLE_NAMES:
        for lp in (name, name.upper(), name.title()):
            assert normalise_email(f"{lp}@Example.COM") == f"{name}@example.com"


@pytest.mark.parametrize(
    ("attr", "value"),
    [("TEST_ENVIRONMENT", True), ("GLOBALLY_DELIVERABLE", False), ("STRICT", True)],
)
def test_library_module_options_are_honoured(
    monkeypatch: pytest.MonkeyPatch, attr: str, value: bool
) -> None:
    _checked_domain.cache_clear()  # each domain is first seen with the option changed
    for raw in ALL[:400] + ["a@mail.test", "a@test", "a@localhost", "x" * 70 + "@example.com"]:
        monkeypatch.setattr(email_validator, attr, value)
        assert outcome(normalise_email, raw) == outcome(reference, raw), raw
        monkeypatch.undo()
        assert outcome(normalise_email, raw) == outcome(reference, raw), raw


def test_special_use_list_changes_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalise_email("a@shop.example.com") == "a@shop.example.com"
    monkeypatch.setattr(
        email_validator,
        "SPECIAL_USE_DOMAIN_NAMES",
        [*email_validator.SPECIAL_USE_DOMAIN_NAMES, "example.com"],
    )
    assert outcome(normalise_email, "a@shop.example.com") == outcome(
        reference, "a@shop.example.com"
    )
    assert outcome(normalise_email, "a@shop.example.com")[0] == "error"
