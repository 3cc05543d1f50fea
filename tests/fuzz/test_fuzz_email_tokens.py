"""Fuzzing tracking-token and VERP verification (gateways/email/tokens.py): anything a client
or a bouncing MTA sends is refused with None, never an exception; what the signer made
verifies; a one-character change of a signed token is refused."""

from __future__ import annotations

import uuid

from hypothesis import assume, example, given
from hypothesis import strategies as st

from gateways.email import tokens

SIGNER = tokens.Signer([b"first key", b"second key"])
OLD_ONLY = tokens.Signer([b"second key"])  # a token signed by a rotated-out key
ROTATED = tokens.Signer([b"second key", b"first key"])

ids = st.uuids().map(str) | st.text(min_size=1, max_size=40)
short_text = st.text(max_size=30)
# characters a change may bring in: the token's own alphabet, its separator, anything else
any_char = st.sampled_from("AZaz09-_.=+/ ") | st.characters()


@st.composite
def token_values(draw: st.DrawFn) -> tokens.Token:
    kind = draw(st.sampled_from(sorted(tokens.KINDS)))
    # a click token always carries its target (verify refuses one without: the redirect
    # never comes from the client)
    url = draw(st.from_regex(r"https://[a-z]{1,10}\.example/[ -~]{0,40}", fullmatch=True))
    return tokens.Token(
        kind=kind, message_id=draw(ids), campaign_id=draw(short_text), workspace_id=draw(short_text),
        variant=draw(short_text), link_index=draw(st.integers(0, 50)) if kind == tokens.CLICK else 0,
        url=url if kind == tokens.CLICK else "", address=draw(short_text), contact_id=draw(short_text))


@given(st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_-]{0,60}\.[A-Za-z0-9_-]{0,40}\.[A-Za-z0-9_-]{0,30}",
                                             fullmatch=True),
       st.sampled_from(sorted(tokens.KINDS)))
def test_arbitrary_strings_are_refused(text: str, kind: str) -> None:
    assert SIGNER.verify(text, kind) is None


@given(token_values())
def test_signed_tokens_verify(token: tokens.Token) -> None:
    text = SIGNER.sign(token)
    got = SIGNER.verify(text, token.kind)
    expected = token._replace(url_hash=tokens.url_hash(token.url)) if token.url else token
    assert got == expected
    assert ROTATED.verify(text, token.kind) == expected  # an older key still verifies
    assert OLD_ONLY.verify(text, token.kind) is None
    for other in tokens.KINDS - {token.kind}:
        assert SIGNER.verify(text, other) is None
    # the prepared signers issue the same text as sign()
    p, m, _ = text.split(".")
    assert SIGNER.prepared(p)(m) == text
    assert SIGNER.prepared_many([p, p])(m) == [text, text]


@given(token_values(), st.integers(0, 10_000), any_char, st.sampled_from(["replace", "insert", "delete"]))
def test_any_single_character_change_is_refused(token: tokens.Token, at: int, ch: str, how: str) -> None:
    text = SIGNER.sign(token)
    i = at % len(text)
    if how == "replace":
        assume(text[i] != ch)
        changed = text[:i] + ch + text[i + 1:]
    elif how == "insert":
        changed = text[:i] + ch + text[i:]
    else:
        changed = text[:i] + text[i + 1:]
    assume(changed != text)
    assert SIGNER.verify(changed, token.kind) is None


# --- VERP return paths --------------------------------------------------------------------

@given(st.text(max_size=120) | st.from_regex(r"<?b-[ur][0-9a-f]{0,40}-[0-9]{1,5}-[0-9a-f]{16}@[a-z.]{1,20}>?",
                                             fullmatch=True))
@example("b-x-²-y@bounces.example")  # regression: ValueError from int('²')
@example("b-é-1-0123456789abcdef@bounces.example")  # regression: UnicodeEncodeError
@example("b-r00-1-é@bounces.example")  # regression: TypeError from hmac.compare_digest
@example("b-r00-" + "9" * 5000 + "-0123456789abcdef@bounces.example")  # regression: int limit
def test_arbitrary_addresses_are_refused(address: str) -> None:
    assert tokens.parse_verp(SIGNER, address) is None


@given(ids, st.integers(0, 99))
def test_verp_addresses_round_trip(message_id: str, attempt: int) -> None:
    local = tokens.verp_local(SIGNER, message_id, attempt)
    assert tokens.parse_verp(SIGNER, f"{local}@bounces.example") == (message_id, attempt)
    # MTAs may fold the case of the local part and add angle brackets
    assert tokens.parse_verp(SIGNER, f"<{local.upper()}@BOUNCES.EXAMPLE>") == (message_id, attempt)
    assert tokens.parse_verp(OLD_ONLY, f"{local}@bounces.example") is None


@given(ids, st.integers(0, 99), st.integers(0, 10_000), any_char, st.sampled_from(["replace", "insert", "delete"]))
def test_a_changed_verp_local_part_is_refused(message_id: str, attempt: int, at: int, ch: str, how: str) -> None:
    local = tokens.verp_local(SIGNER, message_id, attempt)
    i = at % len(local)
    if how == "replace":
        changed = local[:i] + ch + local[i + 1:]
    elif how == "insert":
        changed = local[:i] + ch + local[i:]
    else:
        changed = local[:i] + local[i + 1:]
    # case is folded by design; a leading zero added to the attempt reads the same number
    assume(changed.lower() != local.lower() and changed.strip().strip("<>") == changed)
    got = tokens.parse_verp(SIGNER, f"{changed}@bounces.example")
    assert got is None or got == (message_id, attempt) and _same_attempt(changed, local)


def _same_attempt(changed: str, local: str) -> bool:
    """'b-u..-07-sig' is 'b-u..-7-sig': the attempt is a number, read as one."""
    a, b = changed.lower().split("-"), local.split("-")
    return len(a) == 4 and a[:2] == b[:2] and a[3] == b[3] and int(a[2]) == int(b[2])


def test_uuid_message_ids_pack_short() -> None:
    local = tokens.verp_local(SIGNER, str(uuid.uuid4()), 3)
    assert len(local) <= 64  # RFC 5321 local-part limit
