"""The message state order in SQL, generated from shared.states.RANK (never restated here):
the ledger's forward-only guard compares ranks computed by this CASE."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, case, literal_column

from shared import states


def _int(n: int) -> Any:
    # Inline constants: the statement runs as executemany per event batch, and bound
    # constants would add 2 parameters per state to every row.
    return literal_column(str(int(n)), Integer)


def rank_of(status: Any) -> Any:
    """CASE status WHEN <status> THEN <rank> ... END, one branch per entry of states.RANK;
    an unknown status ranks below every known one."""
    lowest = min(states.RANK.values()) - 1
    return case(*((_int(st), _int(rank)) for st, rank in sorted(states.RANK.items())),
                value=status, else_=_int(lowest))
