"""The `herald` CLI as an operator uses it: the real command in a pseudo-terminal 80 columns
wide, against a whole stack of real processes (cli.devstack.Stack, private NATS and Redis),
with no HERALD_* variable in its environment: it finds the stack through the `local`
context the stack wrote, as `make run` does."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from cli import contexts
from cli.devstack import Stack, write_local_context
from cli.procs import free_port
from tests.cli.ptyrun import Screen, clean_env, run

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
CSV = """phone,first_name,last_name,external_id,categories,code
+447700900101,Ann,Lee,cli-1,cli-vip,A1
+447700900102,Bob,Ray,cli-2,cli-vip,B2
not-a-phone,Bad,Row,cli-3,cli-vip,C3
+447700900104,Cat,Poe,cli-4,cli-vip,D4
"""
# 3 contacts of the category + 7 inline recipients at 4 messages a second: ~2.5 s of
# sending, long enough for `watch` to show the counters move.
CAMPAIGN = {
    "name": "CLI spring sale", "channel": "sms", "sender": "HERALD",
    "content": {"text": "Hi {{ first_name | default('there') }}, code {{ code | default('X') }}"},
    "audience": {"categories": ["cli-vip"],
                 "recipients": [f"+44770090020{i}" for i in range(7)]},
    "max_rate": 4,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(Path(tmp_path_factory.mktemp("cli-stack")))
    st.start()
    yield st
    st.stop()


@pytest.fixture(scope="module")
def home(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose contexts file holds the stack's `local` context, written the way
    `make run` writes it (the default path: no HERALD_CONFIG)."""
    home = tmp_path_factory.mktemp("home")
    with mock.patch.dict(os.environ, {"HOME": str(home)}):
        os.environ.pop("XDG_CONFIG_HOME", None)
        os.environ.pop("HERALD_CONFIG", None)
        path, previous = write_local_context(stack, workspace="cli")
    assert path.is_relative_to(home / ".config" / "herald") and previous == ""
    return home


def herald(home: Path, *args: str, extra: dict[str, str] | None = None, timeout: float = 60) -> Screen:
    env = clean_env({"HOME": str(home), **(extra or {})})
    env.pop("XDG_CONFIG_HOME", None)
    return run(list(args), env, timeout=timeout, cwd=home)


def test_the_stacks_context_is_used_with_nothing_exported(home: Path, stack: Stack) -> None:
    assert "HERALD_CAMPAIGNS_ADDR" not in clean_env()
    cur = herald(home, "config", "current-context")
    assert cur.rc == 0 and cur.text.strip() == "local"
    view = herald(home, "--json", "config", "view")
    settings = {s["name"]: s for s in json.loads(view.text)["settings"]}
    assert settings["campaigns"]["value"] == stack.addr("campaigns")
    assert settings["campaigns"]["from"] == "context 'local' (campaigns)"
    kpis = herald(home, "kpis", "--json")
    assert kpis.rc == 0, kpis.text
    assert "totalCampaigns" in json.loads(kpis.text)


def test_import_csv_reports_the_bad_line_and_imports_the_rest(home: Path) -> None:
    assert herald(home, "categories", "create", "cli-vip").rc == 0
    (home / "contacts.csv").write_text(CSV)
    imp = herald(home, "contacts", "import", "contacts.csv")
    assert imp.rc == 2, imp.text  # some rows rejected
    assert re.search(r"contacts\.csv: line 4: phone: .*not-a-phone", imp.text), imp.text
    assert "4 rows, 3 created, 0 updated, 1 rejected" in imp.text
    listed = herald(home, "contacts", "list", "--category", "cli-vip", "--json")
    assert sorted(c["externalId"] for c in json.loads(listed.text)) == ["cli-1", "cli-2", "cli-4"]
    again = herald(home, "--json", "contacts", "import", "contacts.csv")
    report = json.loads(again.text)
    assert (report["created"], report["updated"], report["rejected"]) == (0, 3, 1)
    assert report["errors"][0]["line"] == 4


def test_campaign_from_file_approved_and_watched_to_the_end(home: Path) -> None:
    (home / "campaign.json").write_text(json.dumps(CAMPAIGN))
    created = herald(home, "create", "-f", "campaign.json")
    assert created.rc == 0, created.text
    cid = re.search(rf"created campaign ({UUID}) \(NEW\)", created.text).group(1)

    # At 80 columns the list shows the whole id on one line.
    listed = herald(home, "list", "--all")
    assert listed.rc == 0
    assert any(cid in line and len(line) <= 80 for line in listed.text.splitlines()), listed.text

    approved = herald(home, "approve", cid)
    assert approved.rc == 0 and f"{cid}: PENDING" in approved.text
    watch = herald(home, "watch", cid, "--interval", "0.3", timeout=60)
    assert watch.rc == 0, watch.text
    screen = watch.text
    final = screen.rindex(f"campaign {cid} DONE")
    progress = [(int(a), int(b)) for a, b in re.findall(r"processed (\d+)/(\d+)", screen[:final])]
    assert len({p for p in progress if p[1] == 10}) >= 2, screen  # the counters moved on screen
    assert "processed 10/10, sent 10, delivered 10, failed 0" in screen[final:]
    assert "━" in watch.raw  # the progress bar

    # --json: the resource, the list as an array, watch as one object per line.
    got = json.loads(herald(home, "get", cid, "--json").text)
    assert got["id"] == cid and got["status"] == "CAMPAIGN_STATUS_DONE"
    assert cid in [c["id"] for c in json.loads(herald(home, "--json", "list").text)]
    lines = [json.loads(x) for x in herald(home, "--json", "watch", cid).text.splitlines() if x.strip()]
    assert lines[-1]["final"] is True and lines[-1]["stats"]["delivered"] == "10"
    msgs = json.loads(herald(home, "messages", cid, "--all-pages", "--json").text)
    assert len(msgs) == 10 and {m["status"] for m in msgs} == {"MESSAGE_STATUS_DELIVERED"}

    detail = herald(home, "get", cid).text
    for heading in ("CLI spring sale", "delivered", "tabs: messages 10", "state history", "SENDING"):
        assert heading in detail, detail
    assert cid in detail


def test_an_unreachable_address_prints_where_it_came_from(home: Path) -> None:
    port = free_port()
    bad = f"127.0.0.1:{port}"
    flag = herald(home, "--campaigns-addr", bad, "list")
    assert flag.rc == 1
    assert f"could not reach the campaigns service at {bad}" in flag.text
    assert "address from flag --campaigns-addr" in flag.text
    assert "HERALD_CAMPAIGNS_ADDR=HOST:PORT" in flag.text
    env = herald(home, "list", extra={"HERALD_CAMPAIGNS_ADDR": bad})
    assert "address from env HERALD_CAMPAIGNS_ADDR" in env.text
    assert herald(home, "config", "set-context", "broken", "--campaigns", bad).rc == 0
    ctx = herald(home, "--context", "broken", "list")
    assert ctx.rc == 1 and "address from context 'broken' (campaigns)" in ctx.text
    # the current context is still the stack's
    assert herald(home, "config", "current-context").text.strip() == "local"


def test_version() -> None:
    import importlib.metadata

    out = run(["--version"], clean_env())
    assert out.rc == 0 and out.text.strip() == f"herald {importlib.metadata.version('herald')}"


def test_precedence_flag_env_context_default(tmp_path: Path) -> None:
    cfg = contexts.ConfigFile(tmp_path / "config.json")
    cfg.set_context("prod", {"campaigns": "campaigns.example.com:443", "server": "gw.example.com:443",
                             "token": "t-ctx"}, {"ca_file": "/etc/ca.pem"})
    cfg.current = "prod"
    cfg.save()
    cfg = contexts.ConfigFile.load(cfg.path)
    assert oct(cfg.path.stat().st_mode & 0o777) == "0o600"  # it holds tokens
    r = contexts.resolve({"stats_addr": "127.0.0.1:9"}, {"HERALD_RECIPIENTS_ADDR": "10.0.0.1:1",
                                                          "HERALD_TOKEN": "t-env"}, cfg)
    assert (r.addresses["stats"].value, r.addresses["stats"].origin) == ("127.0.0.1:9", "flag --stats-addr")
    assert r.addresses["recipients"].origin == "env HERALD_RECIPIENTS_ADDR"
    assert r.addresses["campaigns"].value == "campaigns.example.com:443"
    assert r.token.value == "t-env" and r.tls_on and r.tls["ca_file"].value == "/etc/ca.pem"
    empty = contexts.resolve({}, {}, contexts.ConfigFile(tmp_path / "none.json"))
    assert empty.addresses["campaigns"].origin == "default" and not empty.tls_on
    with pytest.raises(contexts.ConfigError, match="no context 'nope'"):
        contexts.resolve({"context": "nope"}, {}, cfg)


async def test_make_run_uses_a_given_smsc_relay_and_tokens_file(stack: Stack, tmp_path: Path) -> None:
    """`make run` with HERALD_SMPP_HOST/PORT, HERALD_SMTP_HOST/PORT and HERALD_TOKENS_FILE:
    the stack sends through them (no simulator or sink of its own) and the demo runs with a
    token from the file. The module's stack plays the external SMSC and relay."""
    from rich.console import Console

    from cli import demo
    from cli.devstack import peer_lines, peers_from_env

    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({
        "tok-viewer": {"workspace": "acme", "roles": ["viewer"]},
        "tok-admin": {"workspace": "acme", "roles": ["admin"], "pii": True, "name": "ops"},
        "tok-services": {"workspace": "herald", "roles": ["service"], "pii": True}}))
    smsc_port = stack.procs["smsc-simulator"].info["smpp_port"]
    smtp_port = stack.procs["smtp-sink"].info["smtp_port"]
    peers = peers_from_env({"HERALD_SMPP_PORT": str(smsc_port), "HERALD_SMTP_HOST": "127.0.0.1",
                            "HERALD_SMTP_PORT": str(smtp_port), "HERALD_TOKENS_FILE": str(tokens)})
    assert (peers.demo_token, peers.demo_workspace, peers.service_token) == ("tok-admin", "acme",
                                                                              "tok-services")
    said = "\n".join(peer_lines(peers))
    assert f"SMSC: 127.0.0.1:{smsc_port} (HERALD_SMPP_HOST/PORT; no simulator started)" in said
    assert f"SMTP relay: 127.0.0.1:{smtp_port}" in said and "no sink started" in said

    other = Stack(tmp_path / "stack", tokens_file=tokens, service_token=peers.service_token,
                  smsc=peers.smsc, smtp=peers.smtp)
    other.start()
    try:
        assert "smsc-simulator" not in other.procs and "smtp-sink" not in other.procs
        mails_before = len(list(stack.sink_dir.rglob("*.eml")))
        result = await demo.run(other, 5, 3, Console(file=io.StringIO()),
                                md=(("authorization", f"Bearer {peers.demo_token}"),),
                                external_smsc=True, external_smtp=True)
        assert result.ok and result.sms.workspace_id == "acme"
        assert result.sms_stats.processed == 5 and result.email_stats.sent == 3
        assert len(list(stack.sink_dir.rglob("*.eml"))) == mails_before + 3  # the given relay
    finally:
        other.stop()
