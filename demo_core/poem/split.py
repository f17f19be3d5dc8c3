"""Which split a poem belongs to: one rule for training, the examples and the tests."""

from __future__ import annotations

import hashlib

TEST_PERCENT, VAL_PERCENT = 15, 15


def split_of(poem_id: str) -> str:
    """'test', 'val' or 'train', fixed by a hash of the poem's id (the same on every machine)."""
    h = int(hashlib.sha1(poem_id.encode()).hexdigest(), 16) % 100
    return "test" if h < TEST_PERCENT else "val" if h < TEST_PERCENT + VAL_PERCENT else "train"
