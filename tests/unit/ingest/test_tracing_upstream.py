"""Unit tests of SAD tracing against plain-loop reference computations."""

from __future__ import annotations

import math

import pytest
import torch

from ingest.decomposition.sad import FiringRule, Firings, decompose_layer, qk_svd
from ingest.tracing.upstream import (
    KEY_SIDE,
    QUERY_SIDE,
    signal_directions,
    top_share_edges,
    trace_firings,
)


def reference_contribution(firings, f, svd, output, scale, side) -> float:
    """c(w) = Σ_{k∈S} sign_k √σ_k (w_k[:d] · o) / s, one singular vector at a time."""
    layer, head = int(firings.layer[f]), int(firings.head[f])
    vectors = svd.U[layer, head] if side == QUERY_SIDE else svd.V[layer, head]
    total = 0.0
    for m in range(int(firings.n_svs[f])):
        k = int(firings.sv_order[f, m])
        sign = float(firings.signs[f, m])
        dot = sum(float(vectors[e, k]) * float(output[e]) for e in range(output.shape[0]))
        total += sign * math.sqrt(float(svd.sigma[layer, head, k])) * dot
    return total / float(scale)


def reference_top_share(values: list[float], fraction: float) -> set[int]:
    ranked = sorted(range(len(values)), key=lambda w: (-values[w], w))
    total = sum(values[w] for w in ranked)
    if total <= 0:
        return set()
    running = 0.0
    for position, w in enumerate(ranked):
        running += values[w]
        if running > fraction * total:
            return set(ranked[: position + 1])
    return set(ranked)


@pytest.mark.parametrize(
    ("values", "fraction"),
    [
        ([5.0, 1.0, 1.0, 1.0], 0.7),  # one dominant writer
        ([1.0, 1.0, 1.0, 1.0], 0.7),  # ties: lower index first
        ([3.0, -1.0, 2.0, 0.5], 0.7),
        ([-1.0, -2.0, 0.5, 0.1], 0.7),  # negative total: no edge
        ([2.0, 2.0, 0.0, 0.0], 1.0),  # total reached exactly, never exceeded
    ],
)
def test_top_share_edges_match_reference(values: list[float], fraction: float) -> None:
    keep = top_share_edges(torch.tensor([values], dtype=torch.float64), fraction)
    assert set(keep[0].nonzero().flatten().tolist()) == reference_top_share(values, fraction)


def test_top_share_edges_random_rows() -> None:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(200, 9, generator=g, dtype=torch.float64) + 0.3
    keep = top_share_edges(values, 0.7)
    for row in range(values.shape[0]):
        expected = reference_top_share(values[row].tolist(), 0.7)
        assert set(keep[row].nonzero().flatten().tolist()) == expected


def synthetic_firings(seed: int = 0):
    """A 3-layer, 2-head random model's layer-1 and layer-2 firings plus writer outputs."""
    g = torch.Generator().manual_seed(seed)
    layers, heads, d, r, batch, pos = 3, 2, 8, 4, 2, 6
    svd = qk_svd(
        torch.randn(layers, heads, d, r, generator=g, dtype=torch.float64),
        torch.randn(layers, heads, r, generator=g, dtype=torch.float64),
        torch.randn(layers, heads, d, r, generator=g, dtype=torch.float64),
        torch.randn(layers, heads, r, generator=g, dtype=torch.float64),
    )
    valid = torch.ones(batch, pos, dtype=torch.bool)
    causal = torch.ones(pos, pos, dtype=torch.bool).tril()
    parts = []
    for layer in (1, 2):
        x = torch.randn(batch, pos, d, generator=g, dtype=torch.float64)
        logits = 3 * torch.randn(batch, heads, pos, pos, generator=g, dtype=torch.float64)
        pattern = logits.masked_fill(~causal, float("-inf")).softmax(-1)
        parts.append(decompose_layer(x, pattern, valid, svd, layer, FiringRule(min_attention=0.3)))
    results = [
        torch.randn(batch, pos, heads, d, generator=g, dtype=torch.float64) for _ in range(3)
    ]
    scales = [torch.rand(batch, pos, 1, generator=g, dtype=torch.float64) + 0.5 for _ in range(3)]
    return Firings.concat(parts), svd, results, scales


def test_signal_directions_project_to_absolute_weighted_terms() -> None:
    """a_q · u_k = sign_k √σ_k on the sparse set, so a_q·x̃_i = Σ_{k∈S} √σ_k |x̃_i·u_k|."""
    firings, svd, _, _ = synthetic_firings()
    a_query, a_key = signal_directions(firings, svd)
    for f in range(len(firings)):
        layer, head = int(firings.layer[f]), int(firings.head[f])
        size = int(firings.n_svs[f])
        chosen = firings.sv_order[f, :size]
        expected = firings.signs[f, :size] * svd.sigma[layer, head, chosen].sqrt()
        torch.testing.assert_close(a_query[f] @ svd.U[layer, head][:, chosen], expected)
        torch.testing.assert_close(a_key[f] @ svd.V[layer, head][:, chosen], expected)


def test_trace_firings_match_loop_reference() -> None:
    firings, svd, results, scales = synthetic_firings()
    assert len(firings) > 4
    edges = trace_firings(firings, svd, results, scales, edge_fraction=0.7)
    heads = results[0].shape[2]
    found = {
        (int(f), int(s), int(wl) * heads + int(wh)): float(w)
        for f, s, wl, wh, w in zip(
            edges.firing,
            edges.side,
            edges.writer_layer,
            edges.writer_head,
            edges.weight,
            strict=True,
        )
    }
    expected = {}
    for f in range(len(firings)):
        layer, b = int(firings.layer[f]), int(firings.prompt[f])
        for side, pos in ((QUERY_SIDE, int(firings.dest[f])), (KEY_SIDE, int(firings.src[f]))):
            values = [
                reference_contribution(
                    firings, f, svd, results[wl][b, pos, wh], scales[layer][b, pos], side
                )
                for wl in range(layer)
                for wh in range(heads)
            ]
            for writer in reference_top_share(values, 0.7):
                expected[(f, side, writer)] = values[writer]
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-9, abs=1e-12)
    # Edges point only at earlier layers and at the written position.
    assert (edges.writer_layer < firings.layer[edges.firing]).all()
    query = edges.side == QUERY_SIDE
    assert (edges.pos[query] == firings.dest[edges.firing[query]]).all()
    assert (edges.pos[~query] == firings.src[edges.firing[~query]]).all()


def test_edge_fraction_validated() -> None:
    with pytest.raises(ValueError, match="edge fraction"):
        top_share_edges(torch.ones(1, 3), 0.0)


def test_edge_parts_are_the_per_vector_terms_and_sum_to_the_weight() -> None:
    """parts[m] = sign_m √σ_k (w_k[:d] · o) / s for k = sv_order[m], one vector at a time."""
    firings, svd, results, scales = synthetic_firings()
    edges = trace_firings(firings, svd, results, scales, edge_fraction=0.7)
    assert len(edges) > 4
    for e in range(len(edges)):
        f, side = int(edges.firing[e]), int(edges.side[e])
        layer, head = int(firings.layer[f]), int(firings.head[f])
        b, pos = int(firings.prompt[f]), int(edges.pos[e])
        output = results[int(edges.writer_layer[e])][b, pos, int(edges.writer_head[e])]
        vectors = svd.U[layer, head] if side == QUERY_SIDE else svd.V[layer, head]
        size = int(firings.n_svs[f])
        expected = []
        for m in range(size):
            k = int(firings.sv_order[f, m])
            dot = float(output @ vectors[: output.shape[0], k])
            sign = float(firings.signs[f, m])
            expected.append(sign * math.sqrt(float(svd.sigma[layer, head, k])) * dot)
        expected_parts = torch.tensor(expected, dtype=torch.float64) / float(scales[layer][b, pos])
        torch.testing.assert_close(edges.parts[e, :size], expected_parts)
        assert (edges.parts[e, size:] == 0).all()
        assert float(edges.parts[e].sum()) == pytest.approx(float(edges.weight[e]), rel=1e-9)
