"""HERALD_* settings of the email gateway and of the development SMTP sink."""

from __future__ import annotations

from gateways.core.settings import declare
from shared.config import setting

GW = "email gateway"
SINK = "email sink"

RUNTIME = declare(GW, "relay", {
    "batch": ("HERALD_EMAIL_BATCH", "128"), "ack_wait": ("HERALD_EMAIL_ACK_WAIT", "30"),
    "marker_ttl": ("HERALD_EMAIL_DEDUP_TTL", "604800"),
    "max_attempts": ("HERALD_SMTP_MAX_ATTEMPTS", "5"), "retry_base": ("HERALD_SMTP_RETRY_BASE", "60"),
    "retry_max": ("HERALD_SMTP_RETRY_MAX", "3600")},
    {"batch": "Three batches are in flight; lowered automatically under HERALD_SMTP_RATE so a "
              "batch finishes well within the ack wait."})
EMAIL_BATCH, EMAIL_ACK_WAIT, DEDUP_TTL = RUNTIME["batch"], RUNTIME["ack_wait"], RUNTIME["marker_ttl"]
SMTP_MAX_ATTEMPTS, SMTP_RETRY_BASE, SMTP_RETRY_MAX = (
    RUNTIME["max_attempts"], RUNTIME["retry_base"], RUNTIME["retry_max"])

SMTP_HOST = setting("HERALD_SMTP_HOST", "127.0.0.1", "SMTP relay the email gateway submits to.", GW)
SMTP_PORT = setting("HERALD_SMTP_PORT", "25", "Port of the SMTP relay.", GW)
SMTP_POOL_SIZE = setting(
    "HERALD_SMTP_POOL_SIZE", "4",
    "Reused SMTP connections per gateway process (SMTP does not pipeline; throughput comes "
    "from several connections).", GW,
)
SMTP_TIMEOUT = setting("HERALD_SMTP_TIMEOUT", "30", "Seconds to wait for each SMTP reply.", GW)
SMTP_USERNAME = setting("HERALD_SMTP_USERNAME", "", "SMTP AUTH user (empty = no AUTH).", GW)
SMTP_PASSWORD = setting("HERALD_SMTP_PASSWORD", "", "SMTP AUTH password.", GW)
SMTP_STARTTLS = setting(
    "HERALD_SMTP_STARTTLS", "auto",
    "STARTTLS to the relay: auto (when offered), always, never.", GW,
)
SMTP_TLS = setting(
    "HERALD_SMTP_TLS", "false",
    "Implicit TLS to the relay from the first byte (port 465 style); STARTTLS is then unused.", GW,
)
SMTP_TLS_VERIFY = setting(
    "HERALD_SMTP_TLS_VERIFY", "true",
    "Verify the relay's TLS certificate and name (turn off only for a test relay).", GW,
)
SMTP_RATE = setting(
    "HERALD_SMTP_RATE", "0",
    "Messages per second this gateway process submits to the relay at most (0 = no limit); "
    "with N replicas the relay sees up to N times this.", GW,
)
SMTP_MAX_PER_CONNECTION = setting(
    "HERALD_SMTP_MAX_PER_CONNECTION", "0",
    "Messages per SMTP session before it is closed and a new one opened (0 = no limit).", GW,
)
EMAIL_CONSUMER = setting(
    "HERALD_EMAIL_CONSUMER", "jsfast",
    "How jobs are pulled from JetStream: jsfast (shared.jsfast: batched pull requests on "
    "one reply subscription, prefetched; less client CPU per job) or nats (nats-py's "
    "pull_subscribe/fetch).", GW,
)
VERP = setting(
    "HERALD_EMAIL_VERP", "true",
    "Per-message VERP return path b-<message>-<attempt>-<signature>@<HERALD_VERP_DOMAIN>, so "
    "bounces name the message they are about.", GW,
)
VERP_DOMAIN = setting(
    "HERALD_VERP_DOMAIN", "",
    "Domain of the VERP return paths; its MX must reach HERALD_BOUNCE_ADDR "
    "(empty = the sender's own domain).", GW,
)
DKIM_SELECTOR = setting("HERALD_DKIM_SELECTOR", "herald", "DKIM selector (s=).", GW)
DKIM_DOMAIN = setting(
    "HERALD_DKIM_DOMAIN", "", "DKIM signing domain d= (empty = each message's From domain).", GW
)
DKIM_KEY_FILE = setting(
    "HERALD_DKIM_KEY_FILE", "",
    "PEM file (RSA or Ed25519 private key, e.g. a mounted secret) to DKIM-sign with; "
    "empty and no HERALD_DKIM_PRIVATE_KEY = no signature.", GW,
)
DKIM_PRIVATE_KEY = setting(
    "HERALD_DKIM_PRIVATE_KEY", "", "The DKIM private key as PEM text (instead of a file).", GW
)
BOUNCE_ADDR = setting(
    "HERALD_BOUNCE_ADDR", "127.0.0.1:0",
    "host:port of the inbound SMTP server for bounces (DSN) and complaints (ARF) to the VERP "
    "domain (port 0 picks a free one; empty = no bounce server).", GW,
)
BOUNCE_MAX_SIZE = setting(
    "HERALD_BOUNCE_MAX_SIZE", "10485760", "Largest inbound bounce/complaint message in bytes.", GW
)
# Generous per-IP limits: image proxies (GoogleImageProxy) and corporate NATs fetch the
# pixels of many recipients from a few addresses; the limit only stops a single abuser.
TRACKING_RATE = setting(
    "HERALD_TRACKING_RATE", "1000",
    "Tracking requests per second per client IP before 429 (0 = no limit).", GW,
)
TRACKING_BURST = setting(
    "HERALD_TRACKING_BURST", "2000", "Requests one client IP may burst above HERALD_TRACKING_RATE.", GW
)
TRACKING_MAX_BODY = setting(
    "HERALD_TRACKING_MAX_BODY", "16384", "Largest request body the tracking server reads (bytes).", GW
)
UVLOOP = setting(
    "HERALD_EMAIL_UVLOOP", "true", "Run the gateway on uvloop (faster event loop) when installed.", GW
)
SMTP_HELO = setting("HERALD_SMTP_HELO", "", "Name sent in EHLO (empty = this host's name).", GW)
UNSUBSCRIBE_MAILTO = setting(
    "HERALD_EMAIL_UNSUBSCRIBE_MAILTO", "",
    "Mailbox of the List-Unsubscribe mailto: URI (empty = unsubscribe@<sender's domain>).", GW,
)
TRACKING_KEYS = setting(
    "HERALD_TRACKING_KEYS", "",
    "Comma-separated secret keys for the tracking/unsubscribe link tokens and VERP bounce "
    "addresses: the first signs, all verify (rotate by prepending a new key, drop the old "
    "one after the links age out). Required: without it (or with a key published in "
    "Herald's sources) the gateway refuses to start, except in development mode "
    "(HERALD_DEV_MODE=1), where a random key kept in HERALD_TRACKING_DEV_KEY_FILE is used.", GW,
)
TRACKING_DEV_KEY_FILE = setting(
    "HERALD_TRACKING_DEV_KEY_FILE", "var/email-tracking-dev.key",
    "Development mode without HERALD_TRACKING_KEYS only: file holding a random signing key, "
    "made on the first start and reused after, so links in mails already sent keep working "
    "across restarts of the local stack (relative to the working directory).", GW,
)
TRACKING_ADDR = setting(
    "HERALD_TRACKING_ADDR", "127.0.0.1:0",
    "host:port of the open/click/unsubscribe HTTP server (port 0 picks a free one).", GW,
)
TRACKING_BASE_URL = setting(
    "HERALD_TRACKING_BASE_URL", "",
    "Public base URL of the tracking server put into emails, e.g. https://t.example.com "
    "(empty = http://<bound host>:<bound port>, for development).", GW,
)
TRACKING_TRUST_FORWARDED = setting(
    "HERALD_TRACKING_TRUST_FORWARDED", "false",
    "Take the client IP of opens/clicks from X-Forwarded-For (only behind a trusted proxy).", GW,
)

SINK_DIR = setting(
    "HERALD_SINK_DIR", "var/email-sink",
    "Directory where the development SMTP sink writes every accepted message as .eml.", SINK,
)
SINK_ADDR = setting(
    "HERALD_SINK_ADDR", "127.0.0.1:0", "host:port the development SMTP sink binds.", SINK
)
SINK_TEMPFAIL_FILE = setting(
    "HERALD_SINK_TEMPFAIL_FILE", "",
    "Fault mode of the development SMTP sink: while this file exists, every recipient is "
    "answered 451 4.3.0 (a relay refusing mail for a while); empty = never.", SINK,
)
SINK_TEMPFAIL_UNTIL = setting(
    "HERALD_SINK_TEMPFAIL_UNTIL", "0",
    "Fault mode of the development SMTP sink: until this Unix time every recipient is "
    "answered 451 4.3.0; 0 = never.", SINK,
)
SINK_HOLD_FILE = setting(
    "HERALD_SINK_HOLD_FILE", "",
    "Fault mode of the development SMTP sink: a message to a hold-...@ recipient is stored "
    "when its DATA ends, but the 250 is held back while this file exists (a relay that took "
    "the message and whose answer is late or lost); empty = never.", SINK,
)
