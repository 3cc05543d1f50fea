"""The new contacts' ids of an import (store_import.new_ids): UUID version 7 text, ascending
within a batch, the same text as formatting each 128-bit value whole."""

from __future__ import annotations

import uuid

import pytest

from services.recipients.store_import import new_ids, uuid7_texts


def whole(ms: int, start: int, n: int) -> list[str]:
    out = []
    for k in range(n):
        v = start + k
        x = (ms << 80) | (7 << 76) | ((v >> 62) & 0xFFF) << 64 | (2 << 62) | (v & (2**62 - 1))
        h = f"{x:032x}"
        out.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


@pytest.mark.parametrize(
    "start", [0, 12345, 2**48 - 2, 3 * 2**48 - 1, 2**62 - 3, 5 * 2**62 - 1, 2**72 - 2, 2**72 - 1]
)
def test_same_text_as_the_whole_value(start: int) -> None:
    ms = 1_764_547_200_123
    assert uuid7_texts(ms, start, 6) == whole(ms, start, 6)


def test_new_ids_are_ascending_uuid7() -> None:
    ids = new_ids(3000)
    assert ids == sorted(ids) and len(set(ids)) == 3000
    for text in ids[:10]:
        u = uuid.UUID(text)
        assert (u.version, u.variant, str(u)) == (7, uuid.RFC_4122, text)
