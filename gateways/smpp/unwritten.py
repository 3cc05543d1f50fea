"""Jobs this process handed back without writing a byte of them: (message id, attempt) ->
the delivery count then. If Redis loses its data meanwhile, the very next delivery (count +
1: nobody else had it in between) is known unsent and goes out cleanly instead of ABANDONED
(e.g. claimed, then the write gate failed during the outage)."""

from __future__ import annotations

from collections import OrderedDict

from gateways.smpp.store import Mapping
from shared import jsfast

UNWRITTEN_MAX = 100_000  # jobs remembered as handed back unwritten (~100 bytes each)


class UnwrittenJobs:
    def __init__(self, limit: int = UNWRITTEN_MAX) -> None:
        self.limit = limit
        self._jobs: OrderedDict[tuple[str, int], int] = OrderedDict()

    def handed_back(self, ident: Mapping, msg: jsfast.JsMsg) -> None:
        try:
            delivered = int(msg.metadata.num_delivered or 0)
        except ValueError:  # not a JetStream delivery (tests)
            return
        key = (ident.message_id, ident.attempt)
        self._jobs[key] = delivered
        self._jobs.move_to_end(key)
        while len(self._jobs) > self.limit:
            self._jobs.popitem(last=False)

    def known(self, ident: Mapping, msg: jsfast.JsMsg) -> bool:
        """This process handed the job's previous delivery back unwritten."""
        before = self._jobs.pop((ident.message_id, ident.attempt), None)
        if before is None:
            return False
        try:
            return int(msg.metadata.num_delivered or 0) == before + 1
        except ValueError:
            return False
