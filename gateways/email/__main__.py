"""python -m gateways.email: the email gateway with all three roles in one process.

Consumes jobs.email (durable pull consumer "email", shared by every replica), submits
over SMTP, serves the tracking HTTP endpoints and receives bounces. Ready line
(HERALD_READY_FILE): {"service": "email-gateway", "grpc_port", "metrics_port",
"tracking_port", "tracking_url", "bounce_port"}. Each role also runs alone (roles.py).
"""

from __future__ import annotations

from gateways.email import roles
from gateways.email.roles import DRAIN_TIMEOUT, load_dkim, signing_keys

NAME = "email-gateway"
REQUIREMENTS = roles.ALL

__all__ = ["DRAIN_TIMEOUT", "NAME", "REQUIREMENTS", "load_dkim", "run", "signing_keys"]


def run() -> None:
    roles.run(roles.Roles(NAME, sender=True, tracking=True, bounces=True), REQUIREMENTS)


if __name__ == "__main__":
    run()
