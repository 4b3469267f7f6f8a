"""ALIGNED singular vectors: |cos| of residual read directions, against a direct numpy loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ingest.decomposition.alignment import aligned_pairs, read_directions
from ingest.decomposition.sad import qk_svd
from ingest.records.build import aligned_records

LAYERS, HEADS, D, R = 2, 3, 16, 4


def planted_svd(seed: int = 0):
    """Random heads, except that 1.2 queries (and 1.0 keys on) 0.1's query direction."""
    g = torch.Generator().manual_seed(seed)
    w_q = torch.randn(LAYERS, HEADS, D, R, generator=g, dtype=torch.float64)
    w_k = torch.randn(LAYERS, HEADS, D, R, generator=g, dtype=torch.float64)
    shared = torch.randn(D, generator=g, dtype=torch.float64)
    for layer, head, w in ((0, 1, w_q), (1, 2, w_q), (1, 0, w_k)):
        w[layer, head] = 0.05 * w[layer, head]
        w[layer, head, :, 0] += 10 * shared  # a rank-one-dominant read direction
    zeros = torch.zeros(LAYERS, HEADS, R, dtype=torch.float64)
    return qk_svd(w_q, zeros, w_k, zeros)


def numpy_pairs(svd, threshold: float, top_k: int) -> dict[tuple, float]:
    """Every (layer, head, side, k) read direction, all pairs, top-k of either end."""
    keys, vectors = [], []
    for layer in range(LAYERS):
        for head in range(HEADS):
            for side, basis in (("q", svd.U), ("k", svd.V)):
                for k in range(R):
                    w = basis[layer, head, :D, k].numpy()
                    keys.append((layer, head, side, k))
                    vectors.append(w / np.linalg.norm(w))
    cos = np.abs(np.array(vectors) @ np.array(vectors).T)
    kept = {}
    for i, a in enumerate(keys):
        candidates = [j for j, b in enumerate(keys) if b[:2] != a[:2]]
        best = sorted(candidates, key=lambda j: -cos[i, j])[:top_k]
        for j in best:
            if cos[i, j] >= threshold:
                pair = tuple(sorted((keys[i], keys[j])))
                kept[pair] = cos[i, j]
    return kept


def pairs_by_key(directions, pairs) -> dict[tuple, float]:
    found = {}
    for a, b, cos in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.cos.tolist(), strict=True):
        ends = [
            (
                int(directions.layer[i]),
                int(directions.head[i]),
                "q" if int(directions.side[i]) == 0 else "k",
                int(directions.index[i]),
            )
            for i in (a, b)
        ]
        found[tuple(sorted(ends))] = cos
    return found


@pytest.mark.parametrize(("threshold", "top_k"), [(0.5, 2), (0.3, 1), (0.05, 3)])
def test_aligned_pairs_match_numpy(threshold: float, top_k: int) -> None:
    svd = planted_svd()
    directions = read_directions(svd)
    found = pairs_by_key(directions, aligned_pairs(directions, threshold, top_k, chunk=7))
    expected = numpy_pairs(svd, threshold, top_k)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, abs=1e-12)


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
