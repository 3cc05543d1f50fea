"""Contacts from a CSV file, sent in batches through RecipientService.UpsertContacts, with
every rejected row reported by its line number in the file.

Columns (header row, any order, case-insensitive): phone, email, first_name, last_name,
external_id, language, categories (names or ids separated by ';'). Every other column is a
custom field of the contact (empty cells are left out)."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterator
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
    rejected: int = 0
    batches: int = 0
    errors: list[RowError] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "created": self.created, "updated": self.updated,
                "rejected": self.rejected, "batches": self.batches,
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


async def import_csv(path: Path, upsert: Callable[[rpb.UpsertContactsRequest], Any],
                     categories: dict[str, str], extra: list[str], batch_size: int,
                     progress: Callable[[ImportReport], None] | None = None) -> ImportReport:
    """Streams the file: at most batch_size contacts are held at once."""
    report = ImportReport()
    run = uuid.uuid4().hex[:12]
    batch: list[tuple[int, rpb.Contact]] = []

    async def flush() -> None:
        if not batch:
            return
        report.batches += 1
        resp = await upsert(rpb.UpsertContactsRequest(
            contacts=[ct for _, ct in batch], request_id=f"import-{run}-{report.batches}"))
        report.created += resp.created
        report.updated += resp.updated
        report.rejected += resp.rejected
        for res in resp.results:
            if res.error:
                report.errors.append(RowError(batch[res.index][0], res.error))
        batch.clear()
        if progress:
            progress(report)

    for line, cells in rows(path):
        report.rows += 1
        ct = cells if isinstance(cells, str) else contact(cells, categories, extra)
        if isinstance(ct, str):
            report.rejected += 1
            report.errors.append(RowError(line, ct))
            continue
        batch.append((line, ct))
        if len(batch) >= batch_size:
            await flush()
    await flush()
    report.errors.sort(key=lambda e: e.line)
    return report
