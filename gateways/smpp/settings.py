"""HERALD_SMPP_* settings of the SMPP gateway and of the project's SMSC simulator."""

from __future__ import annotations

from shared.config import setting

GW = "smpp gateway"
SIM = "smsc simulator"

# --- gateway (ESME side) -----------------------------------------------------------------
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
DEDUP_TTL = setting(
    "HERALD_SMPP_DEDUP_TTL", "172800",
    "Seconds the per-job send marker (message_id:attempt) is kept in Redis so a redelivered "
    "job is never submitted twice.", GW,
)
JOBS_SUBJECT = setting(
    "HERALD_SMPP_JOBS_SUBJECT", "jobs.sms", "JOBS subject the gateway consumes MessageJobs from.", GW
)
CONSUMER = setting(
    "HERALD_SMPP_CONSUMER", "smpp",
    "Durable pull consumer name on the JOBS stream (every gateway replica shares it).", GW,
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
RECORD_RETRY_FOR = setting(
    "HERALD_SMPP_RECORD_RETRY_FOR", "20",
    "Seconds the gateway keeps retrying (Redis/NATS trouble) to record a submit the SMSC has "
    "already answered, before leaving the job to redelivery.", GW,
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
