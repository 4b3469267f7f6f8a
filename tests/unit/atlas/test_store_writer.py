"""The ingestion writer's helpers that need no server (its end-to-end runs: tests/acceptance)."""

from __future__ import annotations

import gc

import pytest

from atlas.store.writer import rare_gc_passes


def test_rare_gc_passes_raises_the_first_threshold_and_restores_all() -> None:
    before = gc.get_threshold()
    with rare_gc_passes(12_345):
        assert gc.get_threshold() == (12_345, *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), rare_gc_passes():
        raise RuntimeError("the thresholds come back after an error too")
    assert gc.get_threshold() == before
