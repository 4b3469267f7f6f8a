"""Unit tests of the SAD maths against dense matrices and the loop reference."""

from __future__ import annotations

import pytest
import torch

from ingest.decomposition.reference import reference_firings, reference_sparse_set
from ingest.decomposition.sad import (
    QKSVD,
    FiringRule,
    Firings,
    augment,
    augmented_omega,
    decompose_layer,
    pair_scores,
    pair_terms,
    qk_svd,
    singular_projections,
    sparse_sets,
)


def random_heads(seed: int, layers: int = 2, heads: int = 3, d: int = 10, r: int = 4):
    g = torch.Generator().manual_seed(seed)
    shape = (layers, heads)
    return (
        torch.randn(*shape, d, r, generator=g, dtype=torch.float64),
        torch.randn(*shape, r, generator=g, dtype=torch.float64),
        torch.randn(*shape, d, r, generator=g, dtype=torch.float64),
        torch.randn(*shape, r, generator=g, dtype=torch.float64),
    )


def test_svd_through_factors_reconstructs_omega() -> None:
    W_Q, b_Q, W_K, b_K = random_heads(0)
    svd = qk_svd(W_Q, b_Q, W_K, b_K)
    rebuilt = torch.einsum("lhdr,lhr,lher->lhde", svd.U, svd.sigma, svd.V)
    omega = augmented_omega(W_Q, b_Q, W_K, b_K)
    torch.testing.assert_close(rebuilt, omega, rtol=1e-10, atol=1e-10)
    # Same spectrum as a dense SVD of Ω, descending, with orthonormal singular vectors.
    dense_sigma = torch.linalg.svdvals(omega)[..., : svd.sigma.shape[-1]]
    torch.testing.assert_close(svd.sigma, dense_sigma, rtol=1e-10, atol=1e-10)
    assert (svd.sigma[..., :-1] >= svd.sigma[..., 1:]).all()
    eye = torch.eye(svd.U.shape[-1], dtype=torch.float64)
    torch.testing.assert_close(
        svd.U.transpose(-1, -2) @ svd.U, eye.expand_as(svd.sigma[..., None] * eye)
    )
    torch.testing.assert_close(
        svd.V.transpose(-1, -2) @ svd.V, eye.expand_as(svd.sigma[..., None] * eye)
    )


def test_terms_sum_to_bilinear_score() -> None:
    W_Q, b_Q, W_K, b_K = random_heads(1, layers=1)
    svd = qk_svd(W_Q, b_Q, W_K, b_K)
    x = torch.randn(2, 5, 10, dtype=torch.float64)
    q = singular_projections(augment(x), svd.U[0])
    k = singular_projections(augment(x), svd.V[0])
    direct = torch.einsum("bid,hdr,hr->bhir", x, W_Q[0], torch.ones(3, 4, dtype=torch.float64))
    direct = direct + b_Q[0][None, :, None, :]
    keys = torch.einsum("bjd,hdr->bhjr", x, W_K[0]) + b_K[0][None, :, None, :]
    expected = torch.einsum("bhir,bhjr->bhij", direct, keys)
    torch.testing.assert_close(pair_terms(q, k, svd.sigma[0]).sum(-1), expected)
    torch.testing.assert_close(pair_scores(q, k, svd.sigma[0]), expected)


@pytest.mark.parametrize(
    "terms",
    [
        [3.0, -2.0, 1.0, 0.5],  # ordinary
        [2.0, 2.0, 2.0, -1.0],  # ties inside the prefix
        [1.0, 3.0, 3.0, -4.0, 1.0],  # tie at the boundary: lower index first
        [3.0, 2.0, 0.0, 0.0],  # no negative term: all positive terms
        [0.25, 0.25, 0.25, 0.25],  # all equal and positive
        [-1.0, -2.0, 5.0, -0.5],  # one dominant term
    ],
)
def test_sparse_sets_match_reference_on_constructed_cases(terms: list[float]) -> None:
    sets = sparse_sets(torch.tensor([terms], dtype=torch.float64))
    assert tuple(sets.order[0, : sets.size[0]].tolist()) == reference_sparse_set(terms, 1.0)


def test_sparse_set_exceeds_score_and_is_smallest() -> None:
    g = torch.Generator().manual_seed(3)
    terms = torch.randn(500, 16, generator=g, dtype=torch.float64)
    terms[::7] = terms[::7].abs()  # some all-positive rows
    terms = terms[terms.sum(-1) >= 0]  # firings have non-negative scores
    sets = sparse_sets(terms)
    for row, size, total in zip(sets.sorted_terms, sets.size, terms.sum(-1), strict=True):
        kept = row[:size].sum()
        if (row < 0).any():
            assert kept > total
            assert row[: size - 1].sum() <= total
        else:
            assert size == (row > 0).sum()


@pytest.mark.parametrize("fraction", [1.0, 0.7])
def test_sparse_sets_match_reference_on_random_rows(fraction: float) -> None:
    g = torch.Generator().manual_seed(4)
    terms = torch.randn(300, 12, generator=g, dtype=torch.float64)
    terms[::5] = terms[::5].abs()
    terms[1::9, 3] = terms[1::9, 4]  # ties
    sets = sparse_sets(terms, fraction)
    for f in range(terms.shape[0]):
        expected = reference_sparse_set(terms[f].tolist(), fraction)
        assert tuple(sets.order[f, : sets.size[f]].tolist()) == expected


def random_layer_inputs(seed: int, batch: int = 3, pos: int = 7, heads: int = 3, d: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, pos, d, generator=g, dtype=torch.float64)
    logits = 3 * torch.randn(batch, heads, pos, pos, generator=g, dtype=torch.float64)
    causal = torch.ones(pos, pos, dtype=torch.bool).tril()
    pattern = logits.masked_fill(~causal, float("-inf")).softmax(-1)
    valid = torch.ones(batch, pos, dtype=torch.bool)
    valid[1, 5:] = False  # a shorter, right-padded prompt
    return x, pattern, valid


def firing_rows(firings: Firings) -> list[tuple]:
    rows = []
    for f in range(len(firings)):
        size = int(firings.n_svs[f])
        rows.append(
            (
                int(firings.prompt[f]),
                int(firings.head[f]),
                int(firings.dest[f]),
                int(firings.src[f]),
                tuple(firings.sv_order[f, :size].tolist()),
                tuple(firings.signs[f, :size].tolist()),
            )
        )
    return sorted(rows)


@pytest.mark.parametrize(
    "rule",
    [FiringRule(), FiringRule(min_attention=0.3, sparse_fraction=0.8), FiringRule(min_src=0)],
)
def test_vectorized_firings_match_loop_reference(rule: FiringRule) -> None:
    W_Q, b_Q, W_K, b_K = random_heads(5, layers=2, heads=3, d=10, r=4)
    svd = qk_svd(W_Q, b_Q, W_K, b_K)
    x, pattern, valid = random_layer_inputs(6)
    engine = decompose_layer(x, pattern, valid, svd, layer=1, rule=rule)
    reference = reference_firings(
        x,
        pattern,
        valid,
        svd.U[1],
        svd.sigma[1],
        svd.V[1],
        layer=1,
        min_attention=rule.min_attention,
        min_src=rule.min_src,
        fraction=rule.sparse_fraction,
    )
    assert len(reference) > 5
    assert firing_rows(engine) == sorted(
        (r.prompt, r.head, r.dest, r.src, r.sparse_set, r.signs) for r in reference
    )
    # Term values of the sparse set agree too.
    by_key = {(r.prompt, r.head, r.dest, r.src): r.terms for r in reference}
    for f in range(len(engine)):
        key = (int(engine.prompt[f]), int(engine.head[f]), int(engine.dest[f]), int(engine.src[f]))
        size = int(engine.n_svs[f])
        torch.testing.assert_close(
            engine.sorted_terms[f, :size], torch.tensor(by_key[key], dtype=torch.float64)
        )


def test_padding_and_layer_rule_exclude_pairs() -> None:
    W_Q, b_Q, W_K, b_K = random_heads(7, layers=2)
    svd = qk_svd(W_Q, b_Q, W_K, b_K)
    x, pattern, valid = random_layer_inputs(8)
    assert len(decompose_layer(x, pattern, valid, svd, layer=0, rule=FiringRule())) == 0
    firings = decompose_layer(x, pattern, valid, svd, layer=1, rule=FiringRule(min_attention=0.01))
    padded = (firings.prompt == 1) & ((firings.dest >= 5) | (firings.src >= 5))
    assert not padded.any()
    assert (firings.src >= 1).all() and (firings.src <= firings.dest).all()


def test_firing_rule_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="min_attention"):
        FiringRule(min_attention=1.5)
    with pytest.raises(ValueError, match="sparse_fraction"):
        FiringRule(sparse_fraction=0.0)


def test_qksvd_cast() -> None:
    W_Q, b_Q, W_K, b_K = random_heads(9)
    svd: QKSVD = qk_svd(W_Q, b_Q, W_K, b_K).to(torch.float32)
    assert svd.U.dtype == svd.sigma.dtype == svd.V.dtype == torch.float32
