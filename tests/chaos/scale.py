"""How big the chaos suite runs: HERALD_CHAOS_SCALE=reduced (default, part of `make test`:
~1,000 SMS / 200 mails per fault, 5 s outages) or full (`make chaos`: 20,000 SMS / 2,000
mails per fault, 30 s outages, 60 s of SMTP 4xx)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    name: str
    sms: int               # SMS per fault
    email: int             # mails per fault
    outage: float          # seconds NATS / Redis / the SMSC stay down
    smtp_defer: float      # seconds the SMTP relay answers 4xx
    sms_rate: float        # campaign max_rate: sending lasts long enough to inject mid-way
    email_rate: float
    assumed_after: int     # HERALD_SMPP_ASSUMED_DELIVERED_AFTER: receipts lost with the SMSC
    final_timeout: float   # bound on "campaign final" after the fault healed


REDUCED = Scale("reduced", sms=1000, email=200, outage=5.0, smtp_defer=10.0, sms_rate=400.0,
                email_rate=50.0, assumed_after=10, final_timeout=120.0)
FULL = Scale("full", sms=20000, email=2000, outage=30.0, smtp_defer=60.0, sms_rate=800.0,
             email_rate=100.0, assumed_after=30, final_timeout=900.0)


def current() -> Scale:
    return FULL if os.environ.get("HERALD_CHAOS_SCALE", "reduced") == "full" else REDUCED
