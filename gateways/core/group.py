"""Group commit: what callers hand in while a flush runs (or in the same loop pass) goes
together into the next flush, at most `concurrency` flushes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """`add(items)` answers with a future; `put(item)` with `done(items, exc)`, called once
    per flush for the items put into it (exc None when it succeeded): no future per item on
    a hot path."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[object]], max_size: int = 1024,
                 concurrency: int = 4,
                 done: Callable[[list[T], Exception | None], None] | None = None) -> None:
        self.flush = flush
        self.max_size = max_size
        self.concurrency = concurrency
        self.done = done
        self._waiting: list[tuple[Sequence[T], asyncio.Future[None] | None]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, items: Sequence[T]) -> asyncio.Future[None]:
        """Done once `items` were flushed (its exception if their flush raised). A group is
        never split between two flushes."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((items, fut))
        self._schedule()
        return fut

    def put(self, item: T) -> None:
        """One item, flushed with the next group (see `done`)."""
        self._waiting.append(((item,), None))
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self._running < self.concurrency:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        while self._waiting and self._running < self.concurrency:
            take, size = 0, 0
            while take < len(self._waiting) and (take == 0 or size + len(
                    self._waiting[take][0]) <= self.max_size):
                size += len(self._waiting[take][0])
                take += 1
            groups, self._waiting = self._waiting[:take], self._waiting[take:]
            self._running += 1
            task = asyncio.create_task(self._run(groups))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, groups: list[tuple[Sequence[T], asyncio.Future[None] | None]]) -> None:
        items = [item for group, _ in groups for item in group]
        try:
            await self.flush(items)
        except BaseException as exc:
            err = exc if isinstance(exc, Exception) else RuntimeError(f"flush interrupted: {exc!r}")
            for _, fut in groups:
                if fut is not None and not fut.done():
                    fut.set_exception(err)
                    fut.exception()  # retrieved: a caller that stopped waiting logs nothing
            self._tell(groups, err)
            if not isinstance(exc, Exception):
                raise
        else:
            for _, fut in groups:
                if fut is not None and not fut.done():
                    fut.set_result(None)
            self._tell(groups, None)
        finally:
            self._running -= 1
            if self._waiting:
                self._kick()

    def _tell(self, groups: list[tuple[Sequence[T], asyncio.Future[None] | None]],
              exc: Exception | None) -> None:
        if self.done is not None:
            put = [item for group, fut in groups if fut is None for item in group]
            if put:
                self.done(put, exc)
