"""Campaigns settings live in shared.config (the CLI and devstack read them too)."""

from shared.config import DISPATCH_BATCH, JOB_TTL, RECIPIENTS_ADDR, SCHEDULER_INTERVAL

__all__ = ["DISPATCH_BATCH", "JOB_TTL", "RECIPIENTS_ADDR", "SCHEDULER_INTERVAL"]
