"""A job that cannot be sent as given (address, sender, text, route): FAILED at once,
nothing claimed or written."""

from __future__ import annotations


class JobRejected(Exception):
    def __init__(self, code: str, description: str, category: int) -> None:
        super().__init__(description)
        self.code = code
        self.category = category
