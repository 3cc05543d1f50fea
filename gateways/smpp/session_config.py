"""One bind's settings: where the SMSC is, how to bind, window, timeouts, pacing."""

from __future__ import annotations

from dataclasses import dataclass

from gateways.smpp import settings


@dataclass(frozen=True)
class ClientConfig:
    host: str
    port: int
    system_id: str
    password: str = ""
    system_type: str = ""
    bind_mode: str = "transceiver"  # transceiver, pair (transmitter + receiver), transmitter
    window: int = 100
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throughput: float = 0.0  # submit_sm per second, 0 = unlimited
    name: str = ""           # route/bind label for metrics and logs

    @classmethod
    def from_settings(cls) -> ClientConfig:
        return cls(
            host=settings.HOST.get(),
            port=settings.PORT.get_int(),
            system_id=settings.SYSTEM_ID.get(),
            password=settings.PASSWORD.get(),
            system_type=settings.SYSTEM_TYPE.get(),
            window=settings.WINDOW.get_int(),
            response_timeout=settings.RESPONSE_TIMEOUT.get_float(),
            enquire_link_interval=settings.ENQUIRE_LINK_INTERVAL.get_float(),
            reconnect_min=settings.RECONNECT_MIN.get_float(),
            reconnect_max=settings.RECONNECT_MAX.get_float(),
        )
