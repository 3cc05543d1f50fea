"""Validation of ImportContacts rows in worker processes: address normalisation
(libphonenumber, email-validator) costs ~30 µs a row, more than everything else an import
does, so chunks of the stream are validated on other cores while the service writes.

A chunk travels as a serialised ImportContactsRequest and comes back as plain tuples (cheap to
pickle): a good row is Good, a bad one (line, [(field, reason)])."""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any, NamedTuple

from herald.v1 import recipients_pb2 as pb

from services.recipients import settings
from services.recipients.contact_check import check_contact
from services.recipients.store import ContactRow
from shared.masking import mask_text


class Good(NamedTuple):
    line: int
    external_id: str | None
    phone: str | None
    email: str | None
    first_name: str
    last_name: str
    fields: dict[str, str]
    category_ids: list[str]
    language: str


Checked = Good | tuple[int, list[tuple[str, str]]]


def validate_chunk(data: bytes, region: str, pii: bool) -> list[Checked]:
    """Rows of one serialised ImportContactsRequest (lines filled in), in order."""
    msg = pb.ImportContactsRequest.FromString(data)
    out: list[Checked] = []
    for line, ct in zip(msg.lines, msg.contacts, strict=True):
        row = check_contact(ct, line, region)
        if isinstance(row, ContactRow):
            out.append(Good(line, row.external_id, row.phone, row.email, row.first_name,
                            row.last_name, row.fields, row.category_ids, row.language))
        else:
            out.append((line, row if pii else [(f, mask_text(why)) for f, why in row]))
    return out


_POOL: Executor | None = None
_WORKERS = 1


def _pool() -> Executor | None:
    """The service's validation workers, started at the first import (None: validate in a
    thread of the service itself)."""
    global _POOL, _WORKERS
    workers = settings.IMPORT_WORKERS.get_int()
    if workers < 0:
        workers = min(os.cpu_count() or 1, 4)
    if workers == 0:
        return None
    if _POOL is None:
        # spawn: the service's threads (gRPC, database drivers) must not be forked.
        _POOL = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        _WORKERS = workers
        atexit.register(_POOL.shutdown, wait=False, cancel_futures=True)
    return _POOL


def worker_count() -> int:
    """Chunks worth validating at once."""
    return _WORKERS if _pool() is not None else 1


async def validate(data: bytes, region: str, pii: bool) -> list[Checked]:
    pool = _pool()
    loop = asyncio.get_running_loop()
    if pool is None:
        return await asyncio.to_thread(validate_chunk, data, region, pii)
    result: list[Any] = await loop.run_in_executor(pool, validate_chunk, data, region, pii)
    return result
