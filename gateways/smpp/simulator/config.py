"""The simulator's settings (HERALD_SMPP_SIM_* or in process), receipt rules included."""

from __future__ import annotations

from dataclasses import dataclass

from gateways.smpp import pdu, receipts, settings
from shared.metrics import split_addr

ID_STYLES = ("hex", "decimal", "mixed")
RECEIPT_MODES = ("both", "text", "tlv")


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    system_id: str = ""   # empty: any
    password: str = ""    # empty: any
    receipt_delay: float = 0.5
    fail_pattern: str = ""
    fail_stat: str = "UNDELIV"
    fail_part: int = 0  # with a multipart message to a fail_pattern match, fail only this part
    throttle_part: int = 0  # with throttle_pattern: throttle the first submit of this part only
    # (regex over destination_addr, stat, delay or None): first match decides the receipt
    receipt_rules: tuple[tuple[str, str, float | None], ...] = ()
    reject_pattern: str = ""
    reject_status: int = pdu.ESME_RINVDSTADR
    throttle_pattern: str = ""
    throttle_every: int = 0      # every Nth submit_sm answered ESME_RTHROTTLED
    queue_full_every: int = 0    # every Nth submit_sm answered ESME_RMSGQFUL
    syserr_pattern: str = ""     # first syserr_times submits to a match: ESME_RSYSERR
    syserr_times: int = 1
    drop_pattern: str = ""
    id_style: str = "hex"
    receipt_mode: str = "both"   # both, text (Appendix B only), tlv (TLVs only)
    receipt_first: bool = False
    duplicate_receipts: bool = False
    disconnect_after: int = 0    # drop every connection once, on the Nth submit_sm (unanswered)
    receipt_retry_delay: float = 0.2
    receipt_max_attempts: int = 50
    resend_receipts: bool = True  # False: a refused / unanswered receipt is never sent again
    id_start: int = 0             # first message id (0: random, so runs do not collide)
    keep_texts: bool = False      # record each accepted message's text per destination
    hold_receipts: bool = False   # keep receipts until release_receipts() (in process, tests)
    response_timeout: float = 5.0
    stats_file: str = ""

    @classmethod
    def from_env(cls) -> SimulatorConfig:
        host, port = split_addr(settings.SIM_ADDR.get())
        return cls(
            host=host, port=port,
            system_id=settings.SIM_SYSTEM_ID.get(),
            password=settings.SIM_PASSWORD.get(),
            receipt_delay=settings.SIM_RECEIPT_DELAY.get_float(),
            fail_pattern=settings.SIM_FAIL_PATTERN.get(),
            fail_stat=receipts.normalise_stat(settings.SIM_FAIL_STAT.get()),
            receipt_rules=parse_rules(settings.SIM_RECEIPT_RULES.get()),
            reject_pattern=settings.SIM_REJECT_PATTERN.get(),
            reject_status=int(settings.SIM_REJECT_STATUS.get(), 0),
            throttle_pattern=settings.SIM_THROTTLE_PATTERN.get(),
            throttle_every=settings.SIM_THROTTLE_EVERY.get_int(),
            queue_full_every=settings.SIM_QUEUE_FULL_EVERY.get_int(),
            syserr_pattern=settings.SIM_SYSERR_PATTERN.get(),
            drop_pattern=settings.SIM_DROP_PATTERN.get(),
            id_style=settings.SIM_ID_STYLE.get(),
            receipt_mode=settings.SIM_RECEIPT_MODE.get(),
            receipt_first=settings.SIM_RECEIPT_FIRST.get_bool(),
            duplicate_receipts=settings.SIM_DUPLICATE_RECEIPTS.get_bool(),
            disconnect_after=settings.SIM_DISCONNECT_AFTER.get_int(),
            receipt_retry_delay=settings.SIM_RECEIPT_RETRY_DELAY.get_float(),
            receipt_max_attempts=settings.SIM_RECEIPT_MAX_ATTEMPTS.get_int(),
            resend_receipts=settings.SIM_RESEND_RECEIPTS.get_bool(),
            id_start=settings.SIM_ID_START.get_int(),
            keep_texts=settings.SIM_KEEP_TEXTS.get_bool(),
            throttle_part=settings.SIM_THROTTLE_PART.get_int(),
            stats_file=settings.SIM_STATS_FILE.get(),
        )


def parse_rules(text: str) -> tuple[tuple[str, str, float | None], ...]:
    """'900(1|2)$=UNDELIV@2.5;900999$=EXPIRED' -> ((regex, stat, delay or None), ...)."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(";"))):
        pattern, _, rest = item.rpartition("=")
        stat, _, delay = rest.partition("@")
        out.append((pattern, receipts.normalise_stat(stat), float(delay) if delay else None))
    return tuple(out)
