"""HERALD_SMPP_* settings of the SMPP gateway and of the project's SMSC simulator."""

from __future__ import annotations

from gateways.core.settings import declare
from shared.config import setting

GW = "smpp gateway"
SIM = "smsc simulator"

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
RECEIPT_RETRY_FOR = setting(
    "HERALD_SMPP_RECEIPT_RETRY_FOR", "4",
    "Seconds the gateway keeps retrying (Redis/NATS trouble) to record and publish a delivery "
    "receipt or reply before it answers the SMSC ESME_RX_T_APPN (many SMSCs never resend a "
    "refused receipt). Keep it above the stalls of a loaded machine and below the SMSC's "
    "response timeout for deliver_sm (often 5 to 30 s).", GW,
)
HOST = setting("HERALD_SMPP_HOST", "127.0.0.1", "SMSC host the gateway connects to.", GW)
PORT = setting("HERALD_SMPP_PORT", "2775", "SMSC TCP port the gateway connects to.", GW)
SYSTEM_ID = setting("HERALD_SMPP_SYSTEM_ID", "herald", "system_id sent in bind_transceiver.", GW)
PASSWORD = setting(
    "HERALD_SMPP_PASSWORD", "", "Password sent in bind_transceiver (at most 8 characters; keep it in a secret).", GW
)
SYSTEM_TYPE = setting("HERALD_SMPP_SYSTEM_TYPE", "", "system_type sent in bind_transceiver (often empty).", GW)
WINDOW = setting(
    "HERALD_SMPP_WINDOW", "100",
    "Most submit_sm PDUs awaiting their submit_sm_resp at once (the SMPP window).", GW,
)
RESPONSE_TIMEOUT = setting(
    "HERALD_SMPP_RESPONSE_TIMEOUT", "10",
    "Seconds to wait for the response to one PDU; a submit_sm without an answer by then is "
    "failed as outcome unknown (never resubmitted, to avoid a duplicate SMS).", GW,
)
ENQUIRE_LINK_INTERVAL = setting(
    "HERALD_SMPP_ENQUIRE_LINK_INTERVAL", "30",
    "Seconds between enquire_link keep-alives; an unanswered one drops and re-opens the bind.", GW,
)
RECONNECT_MIN = setting(
    "HERALD_SMPP_RECONNECT_MIN_DELAY", "0.5",
    "First delay (seconds) before re-connecting after a lost or refused bind; doubles up to the maximum.", GW,
)
RECONNECT_MAX = setting(
    "HERALD_SMPP_RECONNECT_MAX_DELAY", "30", "Longest delay (seconds) between re-connect attempts.", GW
)
DLR_MAPPING_TTL = setting(
    "HERALD_SMPP_DLR_MAPPING_TTL", "259200",
    "Seconds the SMSC message id -> Herald message mapping is kept in Redis for matching "
    "delivery receipts (receipts arriving later are unmatched).", GW,
)
DEFAULT_SENDER = setting(
    "HERALD_SMPP_DEFAULT_SENDER", "HERALD",
    "source_addr used when a job carries no sender (alphanumeric, or digits for a number).", GW,
)
THROTTLE_DELAY = setting(
    "HERALD_SMPP_THROTTLE_DELAY", "1.0",
    "Seconds before a job refused with ESME_RTHROTTLED / ESME_RMSGQFUL is redelivered.", GW,
)
REDIS_MAX_CONNECTIONS = setting(
    "HERALD_SMPP_REDIS_MAX_CONNECTIONS", "64",
    "Redis connections the gateway opens at most; callers beyond that wait for a free one.", GW,
)

# --- SMSC simulator (tests, `make run`) -----------------------------------------------
SIM_ADDR = setting(
    "HERALD_SMPP_SIM_ADDR", "127.0.0.1:0",
    "host:port the SMSC simulator listens on (port 0 picks a free one; see its ready line).", SIM,
)
SIM_SYSTEM_ID = setting(
    "HERALD_SMPP_SIM_SYSTEM_ID", "", "system_id the simulator accepts (empty: any).", SIM
)
SIM_PASSWORD = setting(
    "HERALD_SMPP_SIM_PASSWORD", "", "Password the simulator accepts (empty: any).", SIM
)
SIM_RECEIPT_DELAY = setting(
    "HERALD_SMPP_SIM_RECEIPT_DELAY", "0.5",
    "Seconds between a submit_sm_resp and its delivery receipt (deliver_sm).", SIM,
)
SIM_FAIL_PATTERN = setting(
    "HERALD_SMPP_SIM_FAIL_PATTERN", "",
    "Regex searched in destination_addr (digits, no '+'): matching messages are accepted but "
    "their receipt says HERALD_SMPP_SIM_FAIL_STAT.", SIM,
)
SIM_FAIL_STAT = setting(
    "HERALD_SMPP_SIM_FAIL_STAT", "UNDELIV",
    "Receipt stat for HERALD_SMPP_SIM_FAIL_PATTERN matches (UNDELIV, REJECTD, EXPIRED, ...).", SIM,
)
SIM_REJECT_PATTERN = setting(
    "HERALD_SMPP_SIM_REJECT_PATTERN", "",
    "Regex searched in destination_addr: matching submit_sm are refused with "
    "HERALD_SMPP_SIM_REJECT_STATUS (no receipt).", SIM,
)
SIM_REJECT_STATUS = setting(
    "HERALD_SMPP_SIM_REJECT_STATUS", "0x0B",
    "command_status for HERALD_SMPP_SIM_REJECT_PATTERN matches (default ESME_RINVDSTADR).", SIM,
)
SIM_THROTTLE_PATTERN = setting(
    "HERALD_SMPP_SIM_THROTTLE_PATTERN", "",
    "Regex searched in destination_addr: the first submit_sm to each matching destination is "
    "answered ESME_RTHROTTLED, later ones are accepted.", SIM,
)
SIM_DROP_PATTERN = setting(
    "HERALD_SMPP_SIM_DROP_PATTERN", "",
    "Regex searched in destination_addr: matching submit_sm get no response at all "
    "(exercises the gateway's response timeout).", SIM,
)
SIM_ID_STYLE = setting(
    "HERALD_SMPP_SIM_ID_STYLE", "hex",
    "Message id style: hex (8 upper-case hex digits), decimal (10 zero-padded digits), or "
    "mixed (hex in submit_sm_resp, decimal in the receipt, as some real SMSCs do).", SIM,
)
SIM_RECEIPT_FIRST = setting(
    "HERALD_SMPP_SIM_RECEIPT_FIRST", "false",
    "Send each receipt before its submit_sm_resp (a receipt racing ahead of the id mapping).", SIM,
)
SIM_DUPLICATE_RECEIPTS = setting(
    "HERALD_SMPP_SIM_DUPLICATE_RECEIPTS", "false",
    "Send every receipt a second time after it was acknowledged.", SIM,
)
SIM_RECEIPT_RETRY_DELAY = setting(
    "HERALD_SMPP_SIM_RECEIPT_RETRY_DELAY", "0.2",
    "First delay (seconds) before a receipt is sent again after a non-zero deliver_sm_resp, a "
    "timeout, or while no receiver is bound; doubles per attempt up to 5 s.", SIM,
)
SIM_RECEIPT_MAX_ATTEMPTS = setting(
    "HERALD_SMPP_SIM_RECEIPT_MAX_ATTEMPTS", "50",
    "Attempts per receipt before the simulator gives it up (counted as receipts_dropped).", SIM,
)
SIM_STATS_FILE = setting(
    "HERALD_SMPP_SIM_STATS_FILE", "",
    "If set, the simulator keeps a JSON file of its ground-truth counters here (accepted "
    "submits per destination, receipts sent/acked/retried, binds).", SIM,
)

# --- routes, encoding, status handling, receipts, replies ------------------------
ROUTES = setting(
    "HERALD_SMPP_ROUTES", "",
    "Routes as JSON (or @/path/to/file.json): a list of SMSC accounts, each with host, port, "
    "system_id, password, binds, bind_mode (transceiver or pair), window, throughput (msg/s "
    "per bind, 0 = unlimited), senders / prefixes (the rules that pick the route), id_format "
    "(auto, or <submit_sm_resp>:<receipt> with hex, decimal or string). Empty: one route "
    "built from HERALD_SMPP_HOST/PORT/SYSTEM_ID/... (see gateways/smpp/README.md).", GW,
)
BINDS = setting("HERALD_SMPP_BINDS", "1", "Binds (TCP sessions) of the default route.", GW)
BIND_MODE = setting(
    "HERALD_SMPP_BIND_MODE", "transceiver",
    "Default route's bind mode: transceiver (one session) or pair (a transmitter plus a "
    "receiver session per bind).", GW,
)
THROUGHPUT = setting(
    "HERALD_SMPP_THROUGHPUT", "0",
    "Default route's submit_sm per second per bind (token bucket; 0 = unlimited).", GW,
)
ID_FORMAT = setting(
    "HERALD_SMPP_ID_FORMAT", "auto",
    "Default route's message id formats: auto (store the mapping under every reading of the "
    "id: hex, decimal, case, leading zeros) or <resp>:<receipt>, e.g. hex:decimal.", GW,
)
MAX_PARTS = setting(
    "HERALD_SMPP_MAX_PARTS", "6", "Most concatenated parts one SMS may be split into.", GW
)
UDH_16BIT = setting(
    "HERALD_SMPP_UDH_16BIT", "false",
    "Use the 16-bit reference concatenation UDH (IEI 0x08) instead of the 8-bit one.", GW,
)
SYSERR_RETRIES = setting(
    "HERALD_SMPP_SYSERR_RETRIES", "5",
    "Times a submit refused with ESME_RSYSERR is retried (exponential backoff from "
    "HERALD_SMPP_THROTTLE_DELAY) before the message is FAILED.", GW,
)
OPT_OUT_KEYWORDS = setting(
    "HERALD_SMPP_OPT_OUT_KEYWORDS", "STOP,STOPALL,UNSUBSCRIBE,ARRET,CANCEL,END,QUIT",
    "Comma-separated reply keywords (first word, any case and accents) that opt the sender "
    "out: events.contact.opted_out.", GW,
)
MO_LINK_TTL = setting(
    "HERALD_SMPP_MO_LINK_TTL", "604800",
    "Seconds a (sender, recipient) -> last message link is kept for attributing replies.", GW,
)
RECEIPT_MATCH_WAIT = setting(
    "HERALD_SMPP_RECEIPT_MATCH_WAIT", "10",
    "Seconds a delivery receipt whose id mapping is not visible yet (its submit_sm_resp still "
    "on its way, or another replica storing it) waits in memory for it before it is counted "
    "unmatched (herald_smpp_receipts_unmatched_total); a final one is then published on "
    "events.receipt.unmatched (the campaigns ledger matches it) and answered OK once stored.", GW,
)
SIM_RECEIPT_RULES = setting(
    "HERALD_SMPP_SIM_RECEIPT_RULES", "",
    "Receipt outcome and delay by destination: 'regex=STAT[@seconds];...' (first match wins; "
    "others get DELIVRD after HERALD_SMPP_SIM_RECEIPT_DELAY).", SIM,
)
SIM_THROTTLE_EVERY = setting(
    "HERALD_SMPP_SIM_THROTTLE_EVERY", "0", "Answer every Nth submit_sm ESME_RTHROTTLED (0: never).", SIM
)
SIM_QUEUE_FULL_EVERY = setting(
    "HERALD_SMPP_SIM_QUEUE_FULL_EVERY", "0", "Answer every Nth submit_sm ESME_RMSGQFUL (0: never).", SIM
)
SIM_SYSERR_PATTERN = setting(
    "HERALD_SMPP_SIM_SYSERR_PATTERN", "",
    "Regex over destination_addr: the first submit_sm to each match is answered ESME_RSYSERR.", SIM,
)
SIM_RECEIPT_MODE = setting(
    "HERALD_SMPP_SIM_RECEIPT_MODE", "both",
    "Receipt form: both (Appendix-B text and TLVs), text (text only) or tlv (TLVs only).", SIM,
)
SIM_DISCONNECT_AFTER = setting(
    "HERALD_SMPP_SIM_DISCONNECT_AFTER", "0",
    "Drop every connection (no unbind) once, on the Nth submit_sm, leaving it unanswered (0: never).", SIM,
)
SIM_RESEND_RECEIPTS = setting(
    "HERALD_SMPP_SIM_RESEND_RECEIPTS", "true",
    "true: a receipt the ESME refuses (non-zero deliver_sm_resp) or does not answer in time is "
    "sent again (up to HERALD_SMPP_SIM_RECEIPT_MAX_ATTEMPTS); false: it is never sent again, as "
    "many real SMSCs do (counted as refused and dropped). Receipts are always retried while no "
    "receiver is bound.", SIM,
)
SIM_ID_START = setting(
    "HERALD_SMPP_SIM_ID_START", "0",
    "First message id the simulator hands out (0: a random start). A fixed start makes a "
    "restarted simulator reissue the ids of its previous run for new messages, as an SMSC "
    "that restarts its id counter does.", SIM,
)
SIM_THROTTLE_PART = setting(
    "HERALD_SMPP_SIM_THROTTLE_PART", "0",
    "With HERALD_SMPP_SIM_THROTTLE_PATTERN: throttle the first submit_sm of this part number of "
    "a multipart message only (e.g. 2: part 1 is accepted and its receipt sent while part 2 "
    "waits; 0: whichever submit comes first).", SIM,
)
SIM_KEEP_TEXTS = setting(
    "HERALD_SMPP_SIM_KEEP_TEXTS", "false",
    "Keep the decoded text of every accepted message per destination (multipart messages "
    "reassembled) in the ground truth (`texts` in the stats file).", SIM,
)
