import base64
import json

import pytest

from gateways.email import tokens
from gateways.email.tokens import CLICK, OPEN, UNSUBSCRIBE, Signer, Token


def click(url: str = "https://shop.example.com/a?b=1&c=2") -> Token:
    return Token(kind=CLICK, message_id="m-1", campaign_id="c-1", workspace_id="w-1",
                 variant="B", link_index=2, url=url)


def test_sign_and_verify_round_trip() -> None:
    s = Signer([b"k1"])
    tok = s.verify(s.sign(click()), CLICK)
    assert tok is not None
    assert (tok.message_id, tok.campaign_id, tok.workspace_id, tok.variant) == ("m-1", "c-1", "w-1", "B")
    assert tok.link_index == 2 and tok.url == "https://shop.example.com/a?b=1&c=2"
    assert tok.url_hash == tokens.url_hash(tok.url)


def test_first_link_index_zero_survives() -> None:
    s = Signer([b"k1"])
    tok = s.verify(s.sign(Token(kind=CLICK, message_id="m", url="https://example.com/")), CLICK)
    assert tok is not None and tok.link_index == 0


def test_token_is_url_safe() -> None:
    text = Signer([b"k1"]).sign(click("https://example.com/ü?x=<>&y=\"'"))
    assert all(ch.isalnum() or ch in "-_." for ch in text)


def test_rotation_first_key_signs_all_verify() -> None:
    old = Signer([b"old"])
    rotated = Signer([b"new", b"old"])
    old_token = old.sign(click())
    assert rotated.verify(old_token, CLICK) is not None  # links already sent keep working
    new_token = rotated.sign(click())
    assert old.verify(new_token, CLICK) is None  # signed with the new key
    assert Signer([b"new"]).verify(new_token, CLICK) is not None
    assert Signer([b"new"]).verify(old_token, CLICK) is None  # old key retired


def test_tampered_payload_or_signature_is_rejected() -> None:
    s = Signer([b"k1"])
    text = s.sign(click())
    p, m, sig = text.split(".")
    body = f"{p}.{m}"
    payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    payload["u"] = "https://evil.example.net/"
    payload["h"] = tokens.url_hash(payload["u"])
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert s.verify(f"{forged}.{m}.{sig}", CLICK) is None
    # the link's signature does not carry over to another message
    assert s.verify(f"{p}.{Signer.message_part('m-other')}.{sig}", CLICK) is None
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert s.verify(f"{body}.{flipped}", CLICK) is None
    for junk in ["", ".", "..", "abc", "a.b.c", "a.b", f"{body}.", f".{m}.{sig}", "%%%.%%%.%%%",
                 "x" * 5000]:
        assert s.verify(junk, CLICK) is None


def test_kind_is_bound() -> None:
    s = Signer([b"k1"])
    open_token = s.sign(Token(kind=OPEN, message_id="m-1"))
    assert s.verify(open_token, OPEN) is not None
    assert s.verify(open_token, CLICK) is None
    assert s.verify(open_token, UNSUBSCRIBE) is None


def test_click_url_must_match_its_hash() -> None:
    s = Signer([b"k1"])
    bad = Token(kind=CLICK, message_id="m", url="https://example.com/x", url_hash="0" * 16)
    assert s.verify(s.sign(bad), CLICK) is None


def test_parse_keys() -> None:
    assert tokens.parse_keys(" new , old ,") == [b"new", b"old"]
    with pytest.raises(ValueError):
        tokens.parse_keys(" , ")


def test_marker_json_is_json_dumps() -> None:
    import json

    from gateways.email.dedup import marker_json

    for data in ({"k": 3, "code": "250", "d": "2.0.0 ok \"q\" é\n", "cat": 0, "p": "<m@example.com>"},
                 {}, {"x": True, "y": None, "z": 1.5, "n": [1]}, {"s": "other"}):
        got = marker_json("submitted", 1700000000.123456, data)
        assert json.loads(got) == json.loads(json.dumps({"s": "submitted", "t": 1700000000.123456, **data}))


def test_flat_json_is_json_dumps() -> None:
    import json

    from gateways.email.dedup import flat_json

    for data in ({"to": "a\"é@example.com", "c": "c-1", "w": "", "ct": "ct\n1", "v": "A"}, {"n": 3}):
        assert json.loads(flat_json(data)) == data


def test_claim_ref_json_is_flat_json() -> None:
    from herald.v1 import events_pb2 as e

    from gateways.email.dedup import flat_json
    from gateways.email.worker import ref_json

    for job in (e.MessageJob(to="a\"é@example.com", campaign_id="c-1", contact_id="ct\n1", variant="A"),
                e.MessageJob()):
        assert ref_json(job) == flat_json({"to": job.to, "c": job.campaign_id, "w": job.workspace_id,
                                           "ct": job.contact_id, "v": job.variant})


def test_prepared_many_signs_like_sign_parts() -> None:
    signer = tokens.Signer([b"k2", b"k1"])
    ps = [signer.part({"k": "c", "i": i, "u": f"https://e.example.com/{i}" * i}) for i in range(13)]
    for m in (signer.message_part("m-1"), signer.message_part("x" * 70), ""):
        assert signer.prepared_many(ps)(m) == [signer.sign_parts(p, m) for p in ps]
        assert all(signer.verify(t, "c") is None or t for t in signer.prepared_many(ps)(m))
    assert signer.prepared_many([])("m") == []
    assert signer.prepared_many(ps, "https://t/c/")("m") == ["https://t/c/" + signer.sign_parts(p, "m")
                                                             for p in ps]


# --- where the signing keys come from -------------------------------------------------

def test_keys_required_outside_development_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateways.email import keys

    with pytest.raises(keys.KeyConfigError, match="HERALD_TRACKING_KEYS is not set"):
        keys.tracking_keys("", False, tmp_path / "k")
    with pytest.raises(keys.KeyConfigError, match="HERALD_TRACKING_KEYS"):
        keys.tracking_keys(" , ", False, tmp_path / "k")
    for published in keys.PUBLISHED_KEYS:
        for dev in (False, True):
            with pytest.raises(keys.KeyConfigError, match="HERALD_TRACKING_KEYS holds the public"):
                keys.tracking_keys(f"fresh-secret,{published.decode()}", dev, tmp_path / "k")
    assert not (tmp_path / "k").exists()
    assert keys.tracking_keys("new, old", False, tmp_path / "k") == (
        [b"new", b"old"], "HERALD_TRACKING_KEYS")


def test_development_key_is_random_kept_and_shared(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import stat
    from concurrent.futures import ThreadPoolExecutor

    from gateways.email import keys

    path = tmp_path / "var" / "tracking.key"
    with ThreadPoolExecutor(8) as pool:  # gateways of one stack starting at once agree
        found = list(pool.map(lambda _: keys.tracking_keys("", True, path)[0], range(16)))
    assert all(f == found[0] for f in found) and len(found[0]) == 1
    key = found[0][0]
    assert len(key) == 64 and key not in keys.PUBLISHED_KEYS
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.tracking_keys("", True, path)[0] == [key]  # a restart keeps it
    assert keys.dev_key(tmp_path / "other.key") != key  # another stack, another key
    assert [p.name for p in path.parent.iterdir()] == ["tracking.key"]  # no temporary left
    # a token signed with a published key never verifies with it
    forged = tokens.Signer(list(keys.PUBLISHED_KEYS)).sign(
        tokens.Token(kind=tokens.CLICK, message_id="m-1", url="https://evil.example.net/"))
    assert tokens.Signer([key]).verify(forged, tokens.CLICK) is None
