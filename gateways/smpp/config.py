"""The gateway process's settings, read once at start."""

from __future__ import annotations

from dataclasses import dataclass

from gateways.smpp import settings
from gateways.smpp.mo import fold
from shared import bus


@dataclass(frozen=True)
class GatewayConfig:
    subject: str = bus.SUBJECT_SMS_JOBS
    consumer: str = "smpp"
    default_sender: str = "HERALD"
    throttle_delay: float = 1.0
    mapping_ttl: int = 259200
    dedup_ttl: int = 172800
    max_parts: int = 6
    udh16: bool = False
    record_retry_for: float = 20.0
    syserr_retries: int = 5
    holder_ttl: float = 15.0
    opt_out_keywords: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "ARRET")
    mo_link_ttl: int = 604800
    max_in_flight: int = 0
    fetch_batch: int = 256
    receipt_match_wait: float = 10.0
    receipt_retry_for: float = 4.0

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        return cls(
            subject=settings.JOBS_SUBJECT.get(),
            consumer=settings.CONSUMER.get(),
            default_sender=settings.DEFAULT_SENDER.get(),
            throttle_delay=settings.THROTTLE_DELAY.get_float(),
            mapping_ttl=settings.DLR_MAPPING_TTL.get_int(),
            dedup_ttl=settings.DEDUP_TTL.get_int(),
            max_parts=settings.MAX_PARTS.get_int(),
            udh16=settings.UDH_16BIT.get_bool(),
            record_retry_for=settings.RECORD_RETRY_FOR.get_float(),
            syserr_retries=settings.SYSERR_RETRIES.get_int(),
            holder_ttl=settings.HOLDER_TTL.get_float(),
            opt_out_keywords=tuple(fold(w.strip()) for w in settings.OPT_OUT_KEYWORDS.get().split(",")
                                   if w.strip()),
            mo_link_ttl=settings.MO_LINK_TTL.get_int(),
            max_in_flight=settings.MAX_IN_FLIGHT.get_int(),
            fetch_batch=settings.FETCH_BATCH.get_int(),
            receipt_match_wait=settings.RECEIPT_MATCH_WAIT.get_float(),
            receipt_retry_for=settings.RECEIPT_RETRY_FOR.get_float(),
        )
