"""python -m gateways.email.tracking_server: the public open/click/unsubscribe HTTP server
alone (HERALD_TRACKING_ADDR; events to NATS, no Redis). Ready line: {"service":
"email-tracking", "grpc_port", "metrics_port", "tracking_port", "tracking_url"}."""

from __future__ import annotations

from gateways.email import roles

NAME = "email-tracking"
REQUIREMENTS = roles.TRACKING


def run() -> None:
    roles.run(roles.Roles(NAME, tracking=True), REQUIREMENTS)


if __name__ == "__main__":
    run()
