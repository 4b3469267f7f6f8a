"""The unrotated frame's pure maths: rotations, grouped key heads, frame map identities."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
    repeat_kv,
)

from ingest.decomposition.rotary import (
    Rotary,
    directions_at,
    expand_kv_heads,
    frame_coefficients,
    outputs_read,
    rotate,
    rotated_projections,
    unrotated_inputs,
)
from ingest.decomposition.sad import augment, qk_svd


def test_rotate_matches_hugging_face_llama() -> None:
    """Same pairing (rotate_half: m with m + ρ/2) and angles as transformers' Llama."""
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=16, rope_theta=12345.0)
    embedding = LlamaRotaryEmbedding(config)
    q = torch.randn(2, 4, 9, 16, dtype=torch.float64)
    positions = torch.arange(9)[None].expand(2, 9)
    cos, sin = embedding(q.float(), positions)
    expected, _ = apply_rotary_pos_emb(q, q, cos.double(), sin.double())
    ours = rotate(q, Rotary(12345.0, 16))
    assert torch.allclose(ours, expected, atol=1e-6)


def test_rotation_is_orthogonal_and_inverse_undoes_it() -> None:
    rotary = Rotary(10_000.0, 8)
    v = torch.randn(5, 7, 12, dtype=torch.float64)  # partial rotary: 8 of 12 coordinates
    turned = rotate(v, rotary)
    assert torch.allclose(turned.norm(dim=-1), v.norm(dim=-1))
    assert torch.equal(turned[..., 8:], v[..., 8:])
    assert torch.allclose(rotate(turned, rotary, inverse=True), v)
    assert torch.allclose(turned[:, 0], v[:, 0])  # position 0 is the unrotated frame


def test_expand_kv_heads_matches_repeat_kv() -> None:
    grouped = torch.randn(3, 2, 10, 4)  # layer kv_head d r
    expanded = expand_kv_heads(grouped, 6)
    # repeat_kv works on (batch, kv_head, seq, r): use layers as batch, d as seq
    assert torch.equal(expanded, repeat_kv(grouped, 3))
    assert torch.equal(expanded[:, 4], grouped[:, 1])
    with pytest.raises(ValueError, match="evenly"):
        expand_kv_heads(grouped, 5)


def _random_head(d: int = 10, r: int = 4, heads: int = 2):
    torch.manual_seed(0)
    W_Q, W_K = torch.randn(1, heads, d, r).double(), torch.randn(1, heads, d, r).double()
    b_Q, b_K = torch.randn(1, heads, r).double(), torch.randn(1, heads, r).double()
    return W_Q, b_Q, W_K, b_K


def test_unrotated_frame_reproduces_rotated_scores_with_biases() -> None:
    """x̂_iᵀ Ω x̂_j = (R_i q_i)·(R_j k_j), and the SVD terms sum to it (affine maps too)."""
    rotary = Rotary(100.0, 4)
    W_Q, b_Q, W_K, b_K = _random_head()
    svd = qk_svd(W_Q, b_Q, W_K, b_K, rotary=rotary)
    x = augment(torch.randn(3, 6, 10, dtype=torch.float64))
    q = torch.einsum("bpd,hdr->bhpr", x, svd.query_factor[0])
    k = torch.einsum("bpd,hdr->bhpr", x, svd.key_factor[0])
    expected = torch.einsum("bhir,bhjr->bhij", rotate(q, rotary), rotate(k, rotary))
    x_query = unrotated_inputs(x, svd.query_factor[0], rotary)
    x_key = unrotated_inputs(x, svd.key_factor[0], rotary)
    omega = svd.query_factor[0] @ svd.key_factor[0].transpose(-1, -2)
    assert torch.allclose(torch.einsum("bhid,hde,bhje->bhij", x_query, omega, x_key), expected)
    query_proj = rotated_projections(x, svd.query_factor[0], svd.query_coef[0], rotary)
    key_proj = rotated_projections(x, svd.key_factor[0], svd.key_coef[0], rotary)
    assert torch.allclose(query_proj, torch.einsum("bhpd,hdk->bhpk", x_query, svd.U[0]))
    terms_sum = torch.einsum("bhir,hr,bhjr->bhij", query_proj, svd.sigma[0], key_proj)
    assert torch.allclose(terms_sum, expected)


def test_directions_at_and_outputs_read_are_the_adjoint_of_the_frame_map() -> None:
    """A writer output o at p: (M_pᵀ a)·[o; 0] = a·M_p [o; 0] = Σ_k c_k (w_k · M_p [o; 0])."""
    rotary = Rotary(50.0, 4)
    W_Q, b_Q, W_K, b_K = _random_head()
    svd = qk_svd(W_Q, b_Q, W_K, b_K, rotary=rotary)
    factor, coef, U = svd.query_factor[0, 1], svd.query_coef[0, 1], svd.U[0, 1]
    weights = torch.randn(5, 4, dtype=torch.float64)
    positions = torch.tensor([0, 1, 3, 7, 20])
    outputs = torch.randn(5, 10, dtype=torch.float64)
    moved = directions_at(weights @ coef.T, factor, positions, rotary)
    by_direction = (moved[:, :10] * outputs).sum(-1)
    padded = torch.cat([outputs, torch.zeros(5, 1, dtype=torch.float64)], dim=-1)
    frame_map = torch.stack(
        [
            unrotated_inputs(padded[n][None, None].expand(1, p + 1, 11), factor[None], rotary)[
                0, 0, p
            ]
            for n, p in enumerate(positions.tolist())
        ]
    )  # M_p [o; 0] per row
    assert torch.allclose(by_direction, ((weights @ U.T) * frame_map).sum(-1))
    reads = outputs_read(outputs, factor, coef, positions, rotary)
    assert torch.allclose(reads, frame_map @ U)
    assert torch.allclose((reads * weights).sum(-1), by_direction)


def test_frame_coefficients_rebuild_the_singular_vectors() -> None:
    W_Q, b_Q, W_K, b_K = _random_head()
    svd = qk_svd(W_Q, b_Q, W_K, b_K, rotary=Rotary(10.0, 4))
    factor = torch.cat([W_Q, b_Q[..., None, :]], dim=-2)
    assert torch.allclose(factor @ frame_coefficients(factor, svd.U), svd.U)


@pytest.mark.parametrize(("theta", "dim"), [(0.0, 4), (10.0, 3)])
def test_rotary_rejects_bad_settings(theta: float, dim: int) -> None:
    with pytest.raises(ValueError):
        Rotary(theta, dim)
