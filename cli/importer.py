"""Contacts from a CSV file, streamed through RecipientService.ImportContacts (one call for
the whole file, so the service writes in large transactions and paces the reading), with
every rejected row reported by its line number in the file and the field at fault.

Columns (header row, any order, case-insensitive): phone, email, first_name, last_name,
external_id, language, categories (names or ids separated by ';'). Every other column is a
custom field of the contact (empty cells are left out).

Counts: created, updated (rows that matched an existing contact, as UpsertContacts counted
them), of which unchanged (the row changed nothing), rejected (rows refused here or by the
service)."""

from __future__ import annotations

import csv
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald.v1 import recipients_pb2 as rpb

BUILTIN = ("phone", "email", "first_name", "last_name", "external_id", "language")
ALIASES = {"firstname": "first_name", "first name": "first_name", "lastname": "last_name",
           "last name": "last_name", "mobile": "phone", "msisdn": "phone", "category": "categories",
           "e-mail": "email"}


@dataclass
class RowError:
    line: int
    error: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    batches: int = 0  # messages of the import stream
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "rejected": self.rejected, "batches": self.batches,
                "errors": [{"line": e.line, "error": e.error} for e in self.errors]}


def rows(path: Path) -> Iterator[tuple[int, dict[str, str] | str]]:
    """(line number where the row starts, its cells by column name, or why it is unreadable)."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            return
        names = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
        if not {"phone", "email", "external_id"} & set(names):
            raise ValueError(f"{path}: line 1: the header needs a phone, email or external_id "
                             f"column (found: {', '.join(header)})")
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            if not any(x.strip() for x in cells):
                continue
            if len(cells) != len(names):
                yield start, f"{len(cells)} cells where the header has {len(names)}"
                continue
            yield start, dict(zip(names, (x.strip() for x in cells), strict=True))


def contact(cells: dict[str, str], categories: dict[str, str], extra: list[str]) -> rpb.Contact | str:
    ct = rpb.Contact(**{k: cells[k] for k in BUILTIN if cells.get(k)})
    for name, value in cells.items():
        if name not in BUILTIN and name != "categories" and value:
            ct.fields[name] = value
    for name in [*(x.strip() for x in cells.get("categories", "").split(";") if x.strip()), *extra]:
        if name not in categories:
            return f"categories: no category {name!r} in the workspace"
        ct.category_ids.append(categories[name])
    return ct


async def import_csv(path: Path, import_contacts: Callable[..., Any], categories: dict[str, str],
                     extra: list[str], batch_size: int,
                     progress: Callable[[ImportReport], None] | None = None,
                     request_id: str = "") -> ImportReport:
    """Streams the file through ImportContacts: at most batch_size contacts are held at once.
    extra: category ids every contact is added to. A run with the request_id of an
    interrupted one continues after the rows the service already committed."""
    report = ImportReport()
    local: list[RowError] = []
    options = rpb.ImportContactsOptions(request_id=request_id or f"import-{uuid.uuid4().hex}",
                                        categories=extra)

    source = rows(path)
    head = next(source, None)  # an unreadable file or header fails before the call
    failure: list[Exception] = []

    async def requests() -> AsyncIterator[rpb.ImportContactsRequest]:
        yield rpb.ImportContactsRequest(options=options)
        msg = rpb.ImportContactsRequest()
        try:
            async for item in _rows_from(head, source):
                msg = _add(item, msg)
                if len(msg.contacts) >= batch_size:
                    report.batches += 1
                    yield msg
                    msg = rpb.ImportContactsRequest()
                    if progress:
                        progress(report)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            failure.append(exc)  # the rows before it are imported; the error is reported
        if msg.contacts:
            report.batches += 1
            yield msg

    def _add(item: tuple[int, dict[str, str] | str],
                   msg: rpb.ImportContactsRequest) -> rpb.ImportContactsRequest:
        line, cells = item
        report.rows += 1
        ct = cells if isinstance(cells, str) else contact(cells, categories, [])
        if isinstance(ct, str):
            report.rejected += 1
            local.append(RowError(line, ct))
        else:
            msg.contacts.append(ct)
            msg.lines.append(line)
        return msg

    resp = await import_contacts(requests(), timeout=None)
    if failure:
        raise failure[0]
    report.created = resp.created
    report.updated = resp.updated + resp.unchanged
    report.unchanged = resp.unchanged
    report.rejected += resp.rejected
    report.errors = sorted([*local, *(RowError(e.line, f"{e.field}: {e.description}")
                                      for e in resp.errors)], key=lambda e: e.line)
    return report


async def _rows_from(head: tuple[int, dict[str, str] | str] | None,
                     rest: Iterator[tuple[int, dict[str, str] | str]]
                     ) -> AsyncIterator[tuple[int, dict[str, str] | str]]:
    if head is None:
        return
    yield head
    for item in rest:
        yield item
