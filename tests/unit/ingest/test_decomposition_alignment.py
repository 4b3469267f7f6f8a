"""ALIGNED singular vectors: |cos| of residual read directions, against a direct numpy loop."""

from __future__ import annotations

import pytest

from ingest.decomposition.alignment import (
    aligned_candidates,
    aligned_pairs,
    merge_candidates,
    read_directions,
    row_shares,
)
from ingest.records.build import aligned_records
from tests.fixtures.alignment import numpy_pairs, pairs_by_key, planted_svd


@pytest.mark.parametrize(("threshold", "top_k"), [(0.5, 2), (0.3, 1), (0.05, 3)])
def test_aligned_pairs_match_numpy(threshold: float, top_k: int) -> None:
    svd = planted_svd()
    directions = read_directions(svd)
    found = pairs_by_key(directions, aligned_pairs(directions, threshold, top_k, chunk=7))
    expected = numpy_pairs(svd, threshold, top_k)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("n_shares", [1, 2, 3, 5])
def test_shares_of_the_block_rows_merge_into_the_same_pairs(n_shares: int) -> None:
    """Candidates screened share by share (as several processes do) merge into the pairs of
    the direct loop: 48 directions in blocks of 5, so 10 block rows."""
    svd = planted_svd(seed=2)
    directions = read_directions(svd)
    shares = row_shares(len(directions.vectors), n_shares, chunk=5)
    candidates = [aligned_candidates(directions, 0.05, 2, rows, chunk=5) for rows in shares]
    merged = merge_candidates(candidates, 2, len(directions.vectors))
    expected = numpy_pairs(svd, 0.05, 2)
    found = pairs_by_key(directions, merged)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-12)
    order = (merged.a * len(directions.vectors) + merged.b).tolist()
    assert order == sorted(order)


@pytest.mark.parametrize(("n_vectors", "n_shares"), [(10, 1), (48, 2), (48, 3), (100, 4), (7, 3)])
def test_row_shares_cover_every_block_row_once_with_even_work(
    n_vectors: int, n_shares: int
) -> None:
    chunk = 5
    n_blocks = -(-n_vectors // chunk)
    shares = row_shares(n_vectors, n_shares, chunk)
    assert [row for share in shares for row in share] == list(range(n_blocks))
    assert len(shares) == min(n_shares, n_blocks)
    work = [sum(n_blocks - row for row in share) for share in shares]
    # each share is within one block row's work (at most n_blocks) of an even split
    assert max(work) - sum(work) / len(work) <= n_blocks


def test_a_pair_exactly_at_the_threshold_is_kept() -> None:
    """The float32 screen must not lose a pair whose float64 |cos| is at the threshold (its
    float32 value falls below it about half the time): ten such thresholds, each 1e-12 under a
    pair's |cos| (far below float32's resolution; float64 sums in another order differ by ulps)."""
    svd = planted_svd(seed=1)
    directions = read_directions(svd)
    values = sorted(set(numpy_pairs(svd, 0.05, 3).values()), reverse=True)[:10]
    for threshold in (value - 1e-12 for value in values):
        found = pairs_by_key(directions, aligned_pairs(directions, threshold, 3, chunk=7))
        assert found.keys() == numpy_pairs(svd, threshold, 3).keys()


def test_planted_shared_direction_is_found_and_recorded() -> None:
    svd = planted_svd()
    directions = read_directions(svd)
    records = aligned_records("m", directions, aligned_pairs(directions, 0.9, 2))
    found = {((r.a[:2], r.side_a), (r.b[:2], r.side_b)) for r in records}
    assert found == {
        (((0, 1), "q"), ((1, 0), "k")),
        (((0, 1), "q"), ((1, 2), "q")),
        (((1, 0), "k"), ((1, 2), "q")),
    }
    assert all(r.cos > 0.99 and r.a[:2] < r.b[:2] for r in records)


def test_alignment_options_validated() -> None:
    directions = read_directions(planted_svd())
    with pytest.raises(ValueError, match="threshold"):
        aligned_pairs(directions, 0.0)
    with pytest.raises(ValueError, match="top-k"):
        aligned_pairs(directions, 0.5, 0)
