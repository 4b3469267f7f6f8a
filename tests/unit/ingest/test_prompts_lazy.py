"""Prompts are drawn lazily, batch by batch: the same seeded prompts as the list, and a run of
any size holds only the batch it works on."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest

from ingest.pipeline import chunks
from ingest.prompts.ioi import generate_prompts, iter_prompts


@pytest.mark.parametrize("prompt_type", ["mixed", "ABBA", "BABA"])
def test_lazy_prompts_are_the_listed_prompts(prompt_type: str) -> None:
    assert list(iter_prompts(300, prompt_type, seed=3)) == generate_prompts(300, prompt_type, 3)


def test_arguments_are_checked_before_the_first_prompt() -> None:
    with pytest.raises(ValueError, match="unknown prompt type"):
        iter_prompts(10, "XYZ")


def test_batches_of_a_huge_run_come_at_once() -> None:
    batches = chunks(iter_prompts(10**12, seed=0), 32)
    first, second = next(batches), next(batches)
    assert [len(first), len(second)] == [32, 32]
    assert [*first, *second] == generate_prompts(64, seed=0)


def test_chunks_keep_the_last_short_batch() -> None:
    assert [len(c) for c in chunks(range(70), 32)] == [32, 32, 6]  # type: ignore[arg-type]


def peak_bytes(n_prompts: int) -> int:
    tracemalloc.start()
    for _ in chunks(iter_prompts(n_prompts, seed=0), 32):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_does_not_grow_with_the_number_of_prompts() -> None:
    small, large = peak_bytes(256), peak_bytes(16_384)
    assert large < 1.1 * small + 64_000, (small, large)
    assert next(itertools.islice(iter_prompts(5), 4, None)) == generate_prompts(5)[4]
