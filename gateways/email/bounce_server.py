"""python -m gateways.email.bounce_server: the inbound SMTP server for bounces (DSN) and
complaints (ARF) alone (HERALD_BOUNCE_ADDR; reads the messages' refs from Redis). Ready
line: {"service": "email-bounces", "grpc_port", "metrics_port", "bounce_port"}."""

from __future__ import annotations

from gateways.email import roles

NAME = "email-bounces"
REQUIREMENTS = roles.BOUNCES


def run() -> None:
    roles.run(roles.Roles(NAME, bounces=True), REQUIREMENTS)


if __name__ == "__main__":
    run()
