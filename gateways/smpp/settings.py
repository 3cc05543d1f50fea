"""HERALD_SMPP_* settings of the SMPP gateway and of the project's SMSC simulator."""

from __future__ import annotations

from gateways.core.settings import declare
from shared.config import Setting, setting

GW = "smpp gateway"
SIM = "smsc simulator"


def gw(name: str, default: str, doc: str) -> Setting:
    return setting(name, default, doc, GW)


def sim(name: str, default: str, doc: str) -> Setting:
    return setting(name, default, doc, SIM)


# --- gateway (ESME side) -----------------------------------------------------------------
RUNTIME = declare(GW, "SMSC", {
    "batch": ("HERALD_SMPP_FETCH_BATCH", "256"), "durable": ("HERALD_SMPP_CONSUMER", "smpp"),
    "subject": ("HERALD_SMPP_JOBS_SUBJECT", "jobs.sms"),
    "marker_ttl": ("HERALD_SMPP_DEDUP_TTL", "172800"), "in_flight": ("HERALD_SMPP_MAX_IN_FLIGHT", "0"),
    "holder_ttl": ("HERALD_SMPP_HOLDER_TTL", "15"),
    "record_retry_for": ("HERALD_SMPP_RECORD_RETRY_FOR", "60")}, {
    "batch": "Two requests are kept ahead of the gateway.",
    "in_flight": "0: four times the sum of the routes' windows, at least 64; when every route has "
                 "a throughput limit, at most a quarter of the jobs' ack wait at that rate.",
    "holder_ttl": "The key: herald:smpp:holder:<process>."})
FETCH_BATCH, CONSUMER, JOBS_SUBJECT = RUNTIME["batch"], RUNTIME["durable"], RUNTIME["subject"]
DEDUP_TTL, MAX_IN_FLIGHT, HOLDER_TTL = RUNTIME["marker_ttl"], RUNTIME["in_flight"], RUNTIME["holder_ttl"]
RECORD_RETRY_FOR = RUNTIME["record_retry_for"]
RECEIPT_RETRY_FOR = gw(
    "HERALD_SMPP_RECEIPT_RETRY_FOR", "4",
    "Seconds the gateway keeps retrying (Redis/NATS trouble) to record and publish a delivery "
    "receipt or reply before it answers the SMSC ESME_RX_T_APPN (many SMSCs never resend a "
    "refused receipt). Keep it above the stalls of a loaded machine and below the SMSC's "
    "response timeout for deliver_sm (often 5 to 30 s).",
)
HOST = gw("HERALD_SMPP_HOST", "127.0.0.1", "SMSC host the gateway connects to.")
PORT = gw("HERALD_SMPP_PORT", "2775", "SMSC TCP port the gateway connects to.")
SYSTEM_ID = gw("HERALD_SMPP_SYSTEM_ID", "herald", "system_id sent in bind_transceiver.")
PASSWORD = gw(
    "HERALD_SMPP_PASSWORD", "", "Password sent in bind_transceiver (at most 8 characters; keep it in a secret)."
)
SYSTEM_TYPE = gw("HERALD_SMPP_SYSTEM_TYPE", "", "system_type sent in bind_transceiver (often empty).")
WINDOW = gw(
    "HERALD_SMPP_WINDOW", "100",
    "Most submit_sm PDUs awaiting their submit_sm_resp at once (the SMPP window).",
)
RESPONSE_TIMEOUT = gw(
    "HERALD_SMPP_RESPONSE_TIMEOUT", "10",
    "Seconds to wait for the response to one PDU; a submit_sm without an answer by then is "
    "failed as outcome unknown (never resubmitted, to avoid a duplicate SMS).",
)
ENQUIRE_LINK_INTERVAL = gw(
    "HERALD_SMPP_ENQUIRE_LINK_INTERVAL", "30",
    "Seconds between enquire_link keep-alives; an unanswered one drops and re-opens the bind.",
)
RECONNECT_MIN = gw(
    "HERALD_SMPP_RECONNECT_MIN_DELAY", "0.5",
    "First delay (seconds) before re-connecting after a lost or refused bind; doubles up to the maximum.",
)
RECONNECT_MAX = gw(
    "HERALD_SMPP_RECONNECT_MAX_DELAY", "30", "Longest delay (seconds) between re-connect attempts."
)
DLR_MAPPING_TTL = gw(
    "HERALD_SMPP_DLR_MAPPING_TTL", "259200",
    "Seconds the SMSC message id -> Herald message mapping is kept in Redis for matching "
    "delivery receipts (receipts arriving later are unmatched).",
)
DEFAULT_SENDER = gw(
    "HERALD_SMPP_DEFAULT_SENDER", "HERALD",
    "source_addr used when a job carries no sender (alphanumeric, or digits for a number).",
)
THROTTLE_DELAY = gw(
    "HERALD_SMPP_THROTTLE_DELAY", "1.0",
    "Seconds before a job refused with ESME_RTHROTTLED / ESME_RMSGQFUL is redelivered.",
)
REDIS_MAX_CONNECTIONS = gw(
    "HERALD_SMPP_REDIS_MAX_CONNECTIONS", "64",
    "Redis connections the gateway opens at most; callers beyond that wait for a free one.",
)

# --- SMSC simulator (tests, `make run`) -----------------------------------------------
SIM_ADDR = sim(
    "HERALD_SMPP_SIM_ADDR", "127.0.0.1:0",
    "host:port the SMSC simulator listens on (port 0 picks a free one; see its ready line).",
)
SIM_SYSTEM_ID = sim(
    "HERALD_SMPP_SIM_SYSTEM_ID", "", "system_id the simulator accepts (empty: any)."
)
SIM_PASSWORD = sim(
    "HERALD_SMPP_SIM_PASSWORD", "", "Password the simulator accepts (empty: any)."
)
SIM_RECEIPT_DELAY = sim(
    "HERALD_SMPP_SIM_RECEIPT_DELAY", "0.5",
    "Seconds between a submit_sm_resp and its delivery receipt (deliver_sm).",
)
SIM_FAIL_PATTERN = sim(
    "HERALD_SMPP_SIM_FAIL_PATTERN", "",
    "Regex searched in destination_addr (digits, no '+'): matching messages are accepted but "
    "their receipt says HERALD_SMPP_SIM_FAIL_STAT.",
)
SIM_FAIL_STAT = sim(
    "HERALD_SMPP_SIM_FAIL_STAT", "UNDELIV",
    "Receipt stat for HERALD_SMPP_SIM_FAIL_PATTERN matches (UNDELIV, REJECTD, EXPIRED, ...).",
)
SIM_REJECT_PATTERN = sim(
    "HERALD_SMPP_SIM_REJECT_PATTERN", "",
    "Regex searched in destination_addr: matching submit_sm are refused with "
    "HERALD_SMPP_SIM_REJECT_STATUS (no receipt).",
)
SIM_REJECT_STATUS = sim(
    "HERALD_SMPP_SIM_REJECT_STATUS", "0x0B",
    "command_status for HERALD_SMPP_SIM_REJECT_PATTERN matches (default ESME_RINVDSTADR).",
)
SIM_THROTTLE_PATTERN = sim(
    "HERALD_SMPP_SIM_THROTTLE_PATTERN", "",
    "Regex searched in destination_addr: the first submit_sm to each matching destination is "
    "answered ESME_RTHROTTLED, later ones are accepted.",
)
SIM_DROP_PATTERN = sim(
    "HERALD_SMPP_SIM_DROP_PATTERN", "",
    "Regex searched in destination_addr: matching submit_sm get no response at all "
    "(exercises the gateway's response timeout).",
)
SIM_ID_STYLE = sim(
    "HERALD_SMPP_SIM_ID_STYLE", "hex",
    "Message id style: hex (8 upper-case hex digits), decimal (10 zero-padded digits), or "
    "mixed (hex in submit_sm_resp, decimal in the receipt, as some real SMSCs do).",
)
SIM_RECEIPT_FIRST = sim(
    "HERALD_SMPP_SIM_RECEIPT_FIRST", "false",
    "Send each receipt before its submit_sm_resp (a receipt racing ahead of the id mapping).",
)
SIM_DUPLICATE_RECEIPTS = sim(
    "HERALD_SMPP_SIM_DUPLICATE_RECEIPTS", "false",
    "Send every receipt a second time after it was acknowledged.",
)
SIM_RECEIPT_RETRY_DELAY = sim(
    "HERALD_SMPP_SIM_RECEIPT_RETRY_DELAY", "0.2",
    "First delay (seconds) before a receipt is sent again after a non-zero deliver_sm_resp, a "
    "timeout, or while no receiver is bound; doubles per attempt up to 5 s.",
)
SIM_RECEIPT_MAX_ATTEMPTS = sim(
    "HERALD_SMPP_SIM_RECEIPT_MAX_ATTEMPTS", "50",
    "Attempts per receipt before the simulator gives it up (counted as receipts_dropped).",
)
SIM_STATS_FILE = sim(
    "HERALD_SMPP_SIM_STATS_FILE", "",
    "If set, the simulator keeps its ground truth in two JSON files: its counters here "
    "(submits accepted and refused, receipts sent/acked/retried, binds; rewritten within 50 ms "
    "of a change) and the per-destination maps (accepted submits and submit_sm per "
    "destination) beside it with `.maps` appended. Past 10,000 destinations the maps are "
    "written every 5 s while submits come and 0.5 s after they pause; both files carry "
    "`maps_version`, so a reader knows whether the maps include every submit the counters count.",
)

# --- routes, encoding, status handling, receipts, replies ------------------------
ROUTES = gw(
    "HERALD_SMPP_ROUTES", "",
    "Routes as JSON (or @/path/to/file.json): a list of SMSC accounts, each with host, port, "
    "system_id, password, binds, bind_mode (transceiver or pair), window, throughput (msg/s "
    "per bind, 0 = unlimited), senders / prefixes (the rules that pick the route), id_format "
    "(auto, or <submit_sm_resp>:<receipt> with hex, decimal or string). Empty: one route "
    "built from HERALD_SMPP_HOST/PORT/SYSTEM_ID/... (see gateways/smpp/README.md).",
)
BINDS = gw("HERALD_SMPP_BINDS", "1", "Binds (TCP sessions) of the default route.")
BIND_MODE = gw(
    "HERALD_SMPP_BIND_MODE", "transceiver",
    "Default route's bind mode: transceiver (one session) or pair (a transmitter plus a "
    "receiver session per bind).",
)
THROUGHPUT = gw(
    "HERALD_SMPP_THROUGHPUT", "0",
    "Default route's submit_sm per second per bind (token bucket; 0 = unlimited).",
)
ID_FORMAT = gw(
    "HERALD_SMPP_ID_FORMAT", "auto",
    "Default route's message id formats: auto (store the mapping under every reading of the "
    "id: hex, decimal, case, leading zeros) or <resp>:<receipt>, e.g. hex:decimal.",
)
MAX_PARTS = gw(
    "HERALD_SMPP_MAX_PARTS", "6", "Most concatenated parts one SMS may be split into."
)
UDH_16BIT = gw(
    "HERALD_SMPP_UDH_16BIT", "false",
    "Use the 16-bit reference concatenation UDH (IEI 0x08) instead of the 8-bit one.",
)
SYSERR_RETRIES = gw(
    "HERALD_SMPP_SYSERR_RETRIES", "5",
    "Times a submit refused with ESME_RSYSERR is retried (exponential backoff from "
    "HERALD_SMPP_THROTTLE_DELAY) before the message is FAILED.",
)
OPT_OUT_KEYWORDS = gw(
    "HERALD_SMPP_OPT_OUT_KEYWORDS", "STOP,STOPALL,UNSUBSCRIBE,ARRET,CANCEL,END,QUIT",
    "Comma-separated reply keywords (first word, any case and accents) that opt the sender "
    "out: events.contact.opted_out.",
)
MO_LINK_TTL = gw(
    "HERALD_SMPP_MO_LINK_TTL", "604800",
    "Seconds a (sender, recipient) -> last message link is kept for attributing replies.",
)
RECEIPT_MATCH_WAIT = gw(
    "HERALD_SMPP_RECEIPT_MATCH_WAIT", "10",
    "Seconds a delivery receipt whose id mapping is not visible yet (its submit_sm_resp still "
    "on its way, or another replica storing it) waits in memory for it before it is counted "
    "unmatched (herald_smpp_receipts_unmatched_total); a final one is then published on "
    "events.receipt.unmatched (the campaigns ledger matches it) and answered OK once stored.",
)
SIM_RECEIPT_RULES = sim(
    "HERALD_SMPP_SIM_RECEIPT_RULES", "",
    "Receipt outcome and delay by destination: 'regex=STAT[@seconds];...' (first match wins; "
    "others get DELIVRD after HERALD_SMPP_SIM_RECEIPT_DELAY).",
)
SIM_THROTTLE_EVERY = sim(
    "HERALD_SMPP_SIM_THROTTLE_EVERY", "0", "Answer every Nth submit_sm ESME_RTHROTTLED (0: never)."
)
SIM_QUEUE_FULL_EVERY = sim(
    "HERALD_SMPP_SIM_QUEUE_FULL_EVERY", "0", "Answer every Nth submit_sm ESME_RMSGQFUL (0: never)."
)
SIM_SYSERR_PATTERN = sim(
    "HERALD_SMPP_SIM_SYSERR_PATTERN", "",
    "Regex over destination_addr: the first submit_sm to each match is answered ESME_RSYSERR.",
)
SIM_RECEIPT_MODE = sim(
    "HERALD_SMPP_SIM_RECEIPT_MODE", "both",
    "Receipt form: both (Appendix-B text and TLVs), text (text only) or tlv (TLVs only).",
)
SIM_DISCONNECT_AFTER = sim(
    "HERALD_SMPP_SIM_DISCONNECT_AFTER", "0",
    "Drop every connection (no unbind) once, on the Nth submit_sm, leaving it unanswered (0: never).",
)
SIM_RESEND_RECEIPTS = sim(
    "HERALD_SMPP_SIM_RESEND_RECEIPTS", "true",
    "true: a receipt the ESME refuses (non-zero deliver_sm_resp) or does not answer in time is "
    "sent again (up to HERALD_SMPP_SIM_RECEIPT_MAX_ATTEMPTS); false: it is never sent again, as "
    "many real SMSCs do (counted as refused and dropped). Receipts are always retried while no "
    "receiver is bound.",
)
SIM_ID_START = sim(
    "HERALD_SMPP_SIM_ID_START", "0",
    "First message id the simulator hands out (0: a random start). A fixed start makes a "
    "restarted simulator reissue the ids of its previous run for new messages, as an SMSC "
    "that restarts its id counter does.",
)
SIM_THROTTLE_PART = sim(
    "HERALD_SMPP_SIM_THROTTLE_PART", "0",
    "With HERALD_SMPP_SIM_THROTTLE_PATTERN: throttle the first submit_sm of this part number of "
    "a multipart message only (e.g. 2: part 1 is accepted and its receipt sent while part 2 "
    "waits; 0: whichever submit comes first).",
)
SIM_KEEP_TEXTS = sim(
    "HERALD_SMPP_SIM_KEEP_TEXTS", "false",
    "Keep the decoded text of every accepted message per destination (multipart messages "
    "reassembled) in the ground truth (`texts` in the stats file's maps).",
)
