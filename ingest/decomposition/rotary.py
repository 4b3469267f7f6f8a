"""Rotary positions in SAD: the unrotated frame, as pure functions.

With rotary position embeddings (RoPE) the query and key of head h are rotated by their
position before the dot product. For a query input ``x̃_i`` (normalized residual with the
constant coordinate appended, as in :mod:`~ingest.decomposition.sad`) and a key input ``x̃_j``,

    score(i, j) = (R_i Q̃ᵀ x̃_i) · (R_j K̃ᵀ x̃_j) = x̃_iᵀ Q̃ R_iᵀ R_j K̃ᵀ x̃_j,

where ``Q̃ = [W_Q; b_Q]`` and ``K̃ = [W_K; b_K]`` are the (d+1)×r augmented factors and ``R_t``
is orthogonal: block rotations of coordinate pairs by the angles ``t · θ^(−2m/ρ)``,
m = 0 … ρ/2 − 1, on the first ρ ≤ r coordinates (ρ = ``rotary_dim``, r = d_head). The pairing is
the Hugging Face / TransformerLens Llama convention ``rotate_half``: coordinate m is paired with
m + ρ/2 (not with m + 1), i.e. ``R q = q ⊙ cos + rotate_half(q) ⊙ sin`` with
``rotate_half([a; b]) = [−b; a]`` and the angles repeated over both halves.

**The unrotated frame.** One SVD per head of the position-free ``Ω = Q̃ K̃ᵀ = Σ_k σ_k u_k v_kᵀ``
(the same as for absolute positions) and a per-position linear map of each input,

    x̂_i = (Q̃⁺)ᵀ R_i Q̃ᵀ x̃_i    (query side),       x̂_j = (K̃⁺)ᵀ R_j K̃ᵀ x̃_j    (key side),

so that ``x̂_iᵀ Q̃ = x̃_iᵀ Q̃ R_iᵀ`` whenever Q̃ has full column rank r (then ``Q̃⁺ Q̃ = I_r``), and

    x̂_iᵀ Ω x̂_j = score(i, j),        t_k(i, j) = σ_k (x̂_i · u_k)(v_k · x̂_j),   Σ_k t_k = score.

The singular vectors stay one set per head; only the inputs move. The engine never forms x̂:
with the r×r *frame coefficients* ``C_Q = Q̃⁺ U`` (so ``Q̃ C_Q = U``, the u_k lying in Q̃'s
column space), ``x̂_i · u_k = (R_i Q̃ᵀ x̃_i) · C_Q[:, k]``: the model's own rotated query
projected on fixed coefficients (:func:`rotated_projections`). :func:`unrotated_inputs` forms
x̂ explicitly, for the slow reference and tests.

**Upstream writers** go through the same linear map of their position: a writer's output o at
position p enters the head's input as ``[o / s_p; 0]``, so its contribution along a read
direction ``a = Q̃ c`` is ``a · M_p [o/s_p; 0]`` with ``M_p = (Q̃⁺)ᵀ R_p Q̃ᵀ``, i.e. the writer
output is read by the position's direction ``M_pᵀ a = Q̃ R_pᵀ c`` (:func:`directions_at`). The
map is linear, so the contributions of all writers (plus embedding and MLPs) add up to the side
total exactly, as they do without rotation.

**Grouped-query attention.** Query head h reads key/value head ``h // (n_heads / n_kv_heads)``
(Hugging Face's ``repeat_kv``); :func:`expand_kv_heads` repeats the grouped key factors so that
every query head has its own Ω and its own singular vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.runtime import torch_threads


@dataclass(frozen=True)
class Rotary:
    """RoPE of a model: base ``theta`` and the number of rotated coordinates per head."""

    theta: float
    dim: int

    def __post_init__(self) -> None:
        if self.theta <= 0:
            raise ValueError(f"rotary theta must be positive, got {self.theta}")
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"rotary dim must be even and at least 2, got {self.dim}")

    def angles(self, positions: Tensor) -> Float[Tensor, "... half"]:
        """``positions[..., None] · θ^(−2m/ρ)`` in float64 (m = 0 … ρ/2 − 1)."""
        exponents = torch.arange(0, self.dim, 2, dtype=torch.float64, device=positions.device)
        inverse_frequency = 1.0 / (self.theta ** (exponents / self.dim))
        return positions.to(torch.float64)[..., None] * inverse_frequency


def rotate(
    vectors: Float[Tensor, "... pos r"],
    rotary: Rotary,
    positions: Int[Tensor, "... pos"] | None = None,
    *,
    inverse: bool = False,
) -> Float[Tensor, "... pos r"]:
    """``R_t v`` (or ``R_tᵀ v`` with ``inverse``) for each row, ``rotate_half`` pairing.

    ``positions`` default to 0 … pos−1 along the second-to-last axis (right-padded batches).
    Coordinates past ``rotary.dim`` are left alone (partial rotary).
    """
    if positions is None:
        positions = torch.arange(vectors.shape[-2], device=vectors.device)
    r = vectors.shape[-1]
    if rotary.dim > r:
        raise ValueError(f"rotary dim {rotary.dim} exceeds the head dimension {r}")
    angles = rotary.angles(positions)
    if inverse:
        angles = -angles
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(vectors.dtype)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(vectors.dtype)
    rotated, rest = vectors[..., : rotary.dim], vectors[..., rotary.dim :]
    half = rotary.dim // 2
    first, second = rotated[..., :half], rotated[..., half:]
    turned = torch.cat([-second, first], dim=-1)
    return torch.cat([rotated * cos + turned * sin, rest], dim=-1)


def expand_kv_heads(
    grouped: Float[Tensor, "layer kv_head ..."], n_heads: int, dim: int = 1
) -> Float[Tensor, "layer head ..."]:
    """Key/value tensors per query head: query head h reads grouped head ``h // (n_heads / n_kv)``
    (the head axis is ``dim``: 1 for stacked weights, 2 for ``hook_v``'s batch × pos × head)."""
    n_kv = grouped.shape[dim]
    if n_kv == n_heads:
        return grouped
    if n_heads % n_kv:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv} key heads evenly")
    return grouped.repeat_interleave(n_heads // n_kv, dim=dim)


def frame_coefficients(
    factor: Float[Tensor, "... d_aug r"], vectors: Float[Tensor, "... d_aug r"]
) -> Float[Tensor, "... r r"]:
    """``C = F⁺ W``: coordinates of the singular vectors in the factor's column basis."""
    return torch.linalg.pinv(factor.double()) @ vectors.double()


def min_relative_singular_value(factor: Float[Tensor, "... d_aug r"]) -> float:
    """Smallest ``σ_min / σ_max`` of any head's matrix (full column rank makes the frame exact;
    the r×r frame coefficients ``R⁻¹A`` have the same ratio as the factor ``Q̃ = P R``)."""
    singular = torch.linalg.svdvals(factor.double())
    return float((singular[..., -1] / singular[..., 0].clamp_min(1e-300)).min())


def check_full_rank_frame(*coefficients: Float[Tensor, "... r r"]) -> None:
    """Raise ``ValueError`` unless every head's frame coefficients are well conditioned.

    ``σ(C) = 1/σ(R)``: the coefficients' condition is the factor's (r×r, cheap). The unrotated
    frame is exact only for full-rank query/key maps.
    """
    with torch_threads(1):
        worst = min(min_relative_singular_value(c) for c in coefficients)
    if not worst >= 1e-7:  # also catches NaN from a singular triangular factor
        raise ValueError(
            "A head's query or key map is rank-deficient (σ_min/σ_max = "
            f"{worst:.1e}); the unrotated frame is exact only for full-rank maps."
        )


def rotated_projections(
    x_aug: Float[Tensor, "batch pos d_aug"],
    factor: Float[Tensor, "head d_aug r"],
    coefficients: Float[Tensor, "head r r"],
    rotary: Rotary,
) -> Float[Tensor, "batch head pos r"]:
    """``x̂_t · w_k = (R_t Fᵀ x̃_t) · C[:, k]`` for every position and singular vector."""
    pre = torch.einsum("bpd,hdr->bhpr", x_aug, factor)
    return torch.einsum("bhpr,hrk->bhpk", rotate(pre, rotary), coefficients)


def unrotated_inputs(
    x_aug: Float[Tensor, "batch pos d_aug"],
    factor: Float[Tensor, "head d_aug r"],
    rotary: Rotary,
) -> Float[Tensor, "batch head pos d_aug"]:
    """Explicit ``x̂_t = (F⁺)ᵀ R_t Fᵀ x̃_t`` per head (slow path, for checks)."""
    pre = torch.einsum("bpd,hdr->bhpr", x_aug, factor)
    pseudo_inverse = torch.linalg.pinv(factor.double()).to(x_aug.dtype)  # head r d_aug
    return torch.einsum("bhpr,hrd->bhpd", rotate(pre, rotary), pseudo_inverse)


def directions_at(
    coefficients: Float[Tensor, "row r"],
    factor: Float[Tensor, "row d_aug r"] | Float[Tensor, "d_aug r"],
    positions: Int[Tensor, " row"],
    rotary: Rotary,
) -> Float[Tensor, "row d_aug"]:
    """``M_pᵀ a = F R_pᵀ c`` for a read direction ``a = F c``: what a writer at p is read by."""
    back = rotate(coefficients[:, None, :], rotary, positions[:, None], inverse=True)[:, 0]
    if factor.dim() == 2:
        return back @ factor.transpose(0, 1).to(back.dtype)
    return torch.einsum("nr,ndr->nd", back, factor.to(back.dtype))


def outputs_read(
    outputs: Float[Tensor, "row d"],
    factor: Float[Tensor, "d_aug r"],
    coefficients: Float[Tensor, "r r"],
    positions: Int[Tensor, " row"],
    rotary: Rotary,
) -> Float[Tensor, "row r"]:
    """``w_k · M_p [o; 0] = C[:, k] · R_p (W[:d]ᵀ o)``: per-vector reads of outputs at p."""
    d = outputs.shape[-1]
    pre = outputs @ factor[:d].to(outputs.dtype)
    turned = rotate(pre[:, None, :], rotary, positions[:, None])[:, 0]
    return turned @ coefficients.to(outputs.dtype)
