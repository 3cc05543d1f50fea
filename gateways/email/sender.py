"""python -m gateways.email.sender: the email gateway's sender alone (jobs.email -> SMTP
relay). Links in its mails point to HERALD_TRACKING_BASE_URL (the tracking server runs
elsewhere). Ready line: {"service": "email-sender", "grpc_port", "metrics_port",
"tracking_url"}."""

from __future__ import annotations

from gateways.email import roles

NAME = "email-sender"
REQUIREMENTS = roles.SENDER
DRAIN_TIMEOUT = roles.DRAIN_TIMEOUT


def run() -> None:
    roles.run(roles.Roles(NAME, sender=True), REQUIREMENTS)


if __name__ == "__main__":
    run()
