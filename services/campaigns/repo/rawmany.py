"""One compiled statement run as the driver's executemany over many rows, its parameters
laid out positionally once per statement instead of by SQLAlchemy for every row.

SQLAlchemy's per-row parameter handling (construct_params, bind processors, the compiled
cache lookup) cost the ledger and the build more CPU than SQLite's own work on their
executemany batches. Used on SQLite only (qmark parameters); other databases keep the
ordinary path. The statement is the same SQLAlchemy construct, compiled by the dialect, so
the SQL sent is the one SQLAlchemy would send."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ClauseElement

Slot = Callable[[dict[str, Any]], Any]


class RawMany:
    """`await RawMany(stmt).run(conn, rows)` -> rows changed (the driver's rowcount)."""

    def __init__(self, stmt: ClauseElement) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[str, tuple[str, ...]], tuple[str, list[Slot]]] = {}

    @staticmethod
    def usable(conn: AsyncConnection) -> bool:
        return conn.dialect.name == "sqlite"

    def _plan(self, dialect: Dialect, keys: tuple[str, ...]) -> tuple[str, list[Slot]]:
        got = self._plans.get((dialect.name, keys))
        if got is not None:
            return got
        compiled = self.stmt.compile(dialect=dialect, column_keys=list(keys))
        procs = compiled._bind_processors  # noqa: SLF001 (the processors SQLAlchemy would apply)
        slots: list[Slot] = []
        for name in compiled.positiontup or ():
            proc = procs.get(name)
            if name in keys:
                slots.append(_from_row(name, proc))
            else:  # a constant of the statement (e.g. the '' of a CASE)
                value = compiled.binds[name].effective_value
                value = proc(value) if proc is not None else value
                slots.append(lambda _row, v=value: v)
        plan = (compiled.string, slots)
        self._plans[(dialect.name, keys)] = plan
        return plan

    async def run(self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
        if not rows:
            return 0
        sql, slots = self._plan(conn.dialect, tuple(rows[0]))
        params = [tuple([slot(r) for slot in slots]) for r in rows]
        res = await conn.exec_driver_sql(sql, params)
        return int(res.rowcount)


def _from_row(name: str, proc: Callable[[Any], Any] | None) -> Slot:
    if proc is None:
        return lambda row: row[name]
    return lambda row: proc(row[name])
