"""Group commit: what callers hand in while a flush runs (or in the same loop pass) goes
together into the next flush, at most `concurrency` flushes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """`add(items)` answers with a future; `put(item)` with `done(items, exc)`, called once
    per flush with the items flushed together (exc None when it succeeded): no future per
    item on a hot path."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[object]], max_size: int = 1024,
                 concurrency: int = 4,
                 done: Callable[[list[T], Exception | None], None] | None = None) -> None:
        self.flush = flush
        self.max_size = max_size
        self.concurrency = concurrency
        self.done = done
        self._items: list[T] = []  # waiting, in order
        self._groups: list[tuple[int, int, asyncio.Future[None]]] = []  # add()s: start, end
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, items: Sequence[T]) -> asyncio.Future[None]:
        """Done once `items` were flushed (its exception if their flush raised). A group is
        never split between two flushes."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        start = len(self._items)
        self._items.extend(items)
        self._groups.append((start, len(self._items), fut))
        self._schedule()
        return fut

    def put(self, item: T) -> None:
        """One item, flushed with the next group (see `done`)."""
        self._items.append(item)
        if not self._scheduled and self._running < self.concurrency:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _schedule(self) -> None:
        if not self._scheduled and self._running < self.concurrency:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._scheduled = False
        while self._items and self._running < self.concurrency:
            items = self._items
            k = min(len(items), self.max_size)
            groups = self._groups
            taken: list[asyncio.Future[None]] = []
            if groups:
                for start, end, _ in groups:  # an add()'s items go in one flush
                    if start < k < end:
                        k = start if start > 0 else end
                        break
                left = []
                for start, end, fut in groups:
                    if end <= k:
                        taken.append(fut)
                    else:
                        left.append((start - k, end - k, fut))
                self._groups = left
            if k == len(items):
                chunk, self._items = items, []
            else:
                chunk, self._items = items[:k], items[k:]
            self._running += 1
            task = asyncio.create_task(self._run(chunk, taken))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, items: list[T], futs: list[asyncio.Future[None]]) -> None:
        try:
            await self.flush(items)
        except BaseException as exc:
            err = exc if isinstance(exc, Exception) else RuntimeError(f"flush interrupted: {exc!r}")
            for fut in futs:
                if not fut.done():
                    fut.set_exception(err)
                    fut.exception()  # retrieved: a caller that stopped waiting logs nothing
            if self.done is not None:
                self.done(items, err)
            if not isinstance(exc, Exception):
                raise
        else:
            for fut in futs:
                if not fut.done():
                    fut.set_result(None)
            if self.done is not None:
                self.done(items, None)
        finally:
            self._running -= 1
            if self._items:
                self._kick()
