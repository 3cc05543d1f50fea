"""Fuzzing the DSN / ARF parser (gateways/email/bounces.py `parse_report`): anyone can send
mail to the bounce server, so any bytes must give a Report, never an exception (an
exception loses the report: it is counted malformed). Generated RFC 3464 DSNs and RFC 5965
complaints parse to the recipient, action and status they carry."""

from __future__ import annotations

import re

from hypothesis import example, given
from hypothesis import strategies as st

from gateways.email import bounces

ACTIONS = ["failed", "delayed", "delivered", "relayed", "expanded"]
atext = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789.+_-"), min_size=1, max_size=20)
addresses = st.builds(lambda local, dom: f"{local}@{dom}.example", atext, atext)
statuses = st.builds(lambda k, a, b: f"{k}.{a}.{b}", st.sampled_from("245"), st.integers(0, 999),
                     st.integers(0, 999))
diagnostics = st.builds(lambda code, text: f"{code} {text}".strip(),
                        st.sampled_from(["550", "552", "451", "421", "250", ""]),
                        st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))


def header_lines(fields: list[tuple[str, str]], eol: str) -> str:
    return "".join(f"{k}: {v}{eol}" for k, v in fields if v != "")


@st.composite
def dsns(draw: st.DrawFn) -> tuple[bytes, list[dict[str, str]]]:
    """A DSN as an MTA writes it: a human part, the delivery-status part (per-message block,
    then one block per recipient), maybe the returned headers; LF or CRLF line ends."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    boundary = draw(st.from_regex(r"[A-Za-z0-9'()+_,./:=?-]{1,40}", fullmatch=True).filter(
        lambda b: not b.endswith(" ")))
    recipients = draw(st.lists(st.fixed_dictionaries({
        "final_recipient": addresses, "action": st.sampled_from(ACTIONS), "status": statuses,
        "diagnostic": diagnostics}), min_size=1, max_size=3))
    blocks = [header_lines([("Reporting-MTA", "dns; mx.example"), ("Arrival-Date", "Mon, 1 Jan 2024 00:00:00 +0000")], eol)]
    for r in recipients:
        blocks.append(header_lines([
            ("Final-Recipient", f"rfc822; {r['final_recipient']}"),
            ("Action", draw(st.sampled_from([r["action"], r["action"].upper(), r["action"].title()]))),
            ("Status", r["status"]),
            ("Diagnostic-Code", f"smtp; {r['diagnostic']}" if r["diagnostic"] else ""),
        ], eol))
    status_body = eol.join(blocks)
    returned = draw(st.sampled_from(["", "message/rfc822", "text/rfc822-headers"]))
    parts = [
        f"Content-Type: text/plain; charset=us-ascii{eol}{eol}This is the mail system.{eol}",
        f"Content-Type: message/delivery-status{eol}{eol}{status_body}",
    ]
    if returned:
        parts.append(f"Content-Type: {returned}{eol}{eol}Return-Path: <b-x-1-y@bounces.example>{eol}"
                     f"Subject: hello{eol}{eol}")
    body = "".join(f"--{boundary}{eol}{p}{eol}" for p in parts) + f"--{boundary}--{eol}"
    head = header_lines([
        ("From", "MAILER-DAEMON@mx.example"), ("To", "b-x-1-y@bounces.example"),
        ("Subject", "Undelivered Mail Returned to Sender"), ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/report; report-type=delivery-status; boundary="{boundary}"'),
    ], eol)
    return (head + eol + body).encode("ascii"), recipients


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A generated DSN with random bytes replaced, inserted or cut: deep malformations."""
    raw = bytearray(draw(dsns())[0])
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(raw)))
        op = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
            [b"\r\n", b"\n\n", b"--", b";", b"=?utf-8?b?", b"\xff", b"Content-Type: message/delivery-status\n"]))
        if op == "replace":
            raw[at:at + len(chunk)] = chunk
        elif op == "insert":
            raw[at:at] = chunk
        else:
            del raw[at:at + draw(st.integers(1, 40))]
    return bytes(raw)


def _check(raw: bytes) -> None:
    rep = bounces.parse_report(raw)
    assert rep.kind in {"dsn", "arf", "other"}
    for st_ in rep.recipients:
        st_.reply_code  # noqa: B018 -- must not raise
        bounces._enhanced(st_.diagnostic)  # noqa: SLF001


@given(st.binary(max_size=600) | mutated())
@example(b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n"
         b"--x\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b\n--x--\n")
def test_arbitrary_mail_never_raises(raw: bytes) -> None:
    _check(raw)


@given(dsns())
@example((b"Content-Type: multipart/report; report-type=delivery-status; boundary=0\n\n--0\n"
          b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example\n\n"
          b"Final-Recipient: rfc822; a@b.example\nAction: delayed\nStatus: 4.0.0\n"
          b"Diagnostic-Code: smtp; 451\n\n--0--\n",
          [{"final_recipient": "a@b.example", "action": "delayed", "status": "4.0.0",
            "diagnostic": "451"}]))  # regression: a bare reply code was no code at all
def test_generated_dsns_parse_to_their_recipients(case: tuple[bytes, list[dict[str, str]]]) -> None:
    raw, recipients = case
    rep = bounces.parse_report(raw)
    assert rep.kind == "dsn"
    got = [(r.final_recipient, r.action, r.status, r.diagnostic) for r in rep.recipients]
    assert got == [(r["final_recipient"], r["action"], r["status"], " ".join(r["diagnostic"].split()))
                   for r in recipients]
    for r, want in zip(rep.recipients, recipients, strict=True):
        code = re.match(r"([245][0-9][0-9])(?: |$)", want["diagnostic"])
        assert r.reply_code == (code.group(1) if code else "")


@given(st.sampled_from(["abuse", "fraud", "virus", "other", "not-spam", "Abuse"]),
       st.sampled_from(["\r\n", "\n"]), st.booleans())
def test_generated_complaints_are_arf(feedback_type: str, eol: str, with_original: bool) -> None:
    original = (f"--b{eol}Content-Type: message/rfc822{eol}{eol}Return-Path: <b-x-1-y@bounces.example>"
                f"{eol}Subject: hi{eol}{eol}body{eol}") if with_original else ""
    raw = (f"Content-Type: multipart/report; report-type=feedback-report; boundary=b{eol}{eol}"
           f"--b{eol}Content-Type: text/plain{eol}{eol}complaint{eol}"
           f"--b{eol}Content-Type: message/feedback-report{eol}{eol}Feedback-Type: {feedback_type}{eol}"
           f"User-Agent: x/1{eol}Version: 1{eol}{original}--b--{eol}").encode()
    rep = bounces.parse_report(raw)
    assert rep.kind == "arf" and rep.feedback_type == feedback_type.lower()
    if with_original:
        assert rep.original.get("return-path") == "<b-x-1-y@bounces.example>"
