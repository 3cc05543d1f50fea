"""What this process knows about its own jobs that Redis may not (bounded, oldest dropped)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from gateways.core.outcome import Outcome

V = TypeVar("V")
JobKey = tuple[str, int]  # (message_id, attempt)


class Bounded(Generic[V]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[JobKey, V] = OrderedDict()

    def put(self, key: JobKey, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def pop(self, key: JobKey) -> V | None:
        return self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Unrecorded(Bounded[Outcome]):
    """Outcomes of jobs this process sent but could not record (Redis down): its own
    "held"/"written" markers are resolved from here when the jobs come back, instead of
    ABANDONED."""


class HandedBack(Bounded[int]):
    """Jobs this process handed back without writing a byte of them: (message id, attempt)
    -> the delivery count then. If Redis loses its data meanwhile, the very next delivery
    (count + 1: nobody else had it in between) is known unsent and goes out cleanly instead
    of ABANDONED (e.g. claimed, then the write gate failed during the outage)."""

    def known_unwritten(self, key: JobKey, delivery: int) -> bool:
        before = self.pop(key)
        return before is not None and delivery == before + 1
