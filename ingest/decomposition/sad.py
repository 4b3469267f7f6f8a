"""Sparse attention decomposition (SAD) of every strong attention decision: pure tensor maths.

For head (l, h) with folded query/key maps, append a constant coordinate to the head's input
``x̃ = [x; 1] ∈ R^{d+1}`` and form the augmented bilinear matrix

    Ω = Q̃ K̃ᵀ,   Q̃ = [W_Q; b_Q] ∈ R^{(d+1)×r},   K̃ = [W_K; b_K] ∈ R^{(d+1)×r},

so that the unscaled attention score is ``x̃_iᵀ Ω x̃_j = √r · hook_attn_scores[i, j]``. With the
SVD ``Ω = Σ_k σ_k u_k v_kᵀ`` (rank ≤ r, computed through the factors), every score is an exact
sum of r terms

    t_k(i, j) = σ_k (x̃_i · u_k)(v_k · x̃_j),   Σ_k t_k(i, j) = x̃_iᵀ Ω x̃_j.

A pair *fires* when its attention is strong (:class:`FiringRule`); its *sparse set* is the
smallest prefix of its terms, sorted in descending order, whose sum exceeds the score.

Rotary positions (Llama family): the same SVD of the position-free Ω, with each position's
input mapped into the unrotated frame ``x̂_t`` (:mod:`~ingest.decomposition.rotary`), so
``x̃_i`` above reads ``x̂_i`` and the terms again sum exactly to the score. A :class:`QKSVD`
built with ``rotary`` carries the factors and frame coefficients that map needs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ingest.decomposition.rotary import Rotary, rotated_projections
from ingest.runtime import torch_threads
from ingest.sides import KEY_SIDE, QUERY_SIDE


@dataclass(frozen=True)
class FiringRule:
    """When a (dest, src) pair counts as an attention decision worth explaining (SAD defaults).

    A pair fires when ``A[i, j] ≥ min_attention``, its score is ``≥ min_score``, ``j ≥ min_src``
    (position 0 is the attention sink) and the head's layer is ``≥ min_layer``. The sparse set
    is the smallest descending prefix of terms whose sum exceeds ``sparse_fraction · score``.
    """

    min_attention: float = 0.5
    min_score: float = 0.0
    min_src: int = 1
    min_layer: int = 1
    sparse_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_attention <= 1.0:
            raise ValueError(f"min_attention must lie in (0, 1], got {self.min_attention}")
        if not 0.0 < self.sparse_fraction <= 1.0:
            raise ValueError(f"sparse_fraction must lie in (0, 1], got {self.sparse_fraction}")
        if self.min_src < 0 or self.min_layer < 0:
            raise ValueError("min_src and min_layer must be non-negative")


@dataclass(frozen=True)
class QKSVD:
    """SVD of every head's augmented bilinear matrix: ``Ω[l, h] = U diag(σ) Vᵀ``.

    With rotary positions, also Ω's factors (SAD: the augmented ``Q̃``, ``K̃``, per query head;
    ACC: each side's own pair) and the frame coefficients ``C_Q = Q̃⁺U``, ``C_K = K̃⁺V`` (see
    :mod:`~ingest.decomposition.rotary`).
    """

    U: Float[Tensor, "layer head d_aug r"]
    sigma: Float[Tensor, "layer head r"]
    V: Float[Tensor, "layer head d_aug r"]
    rotary: Rotary | None = None
    query_factor: Float[Tensor, "layer head d_aug r"] | None = None
    key_factor: Float[Tensor, "layer head d_aug r"] | None = None
    query_coef: Float[Tensor, "layer head r r"] | None = None
    key_coef: Float[Tensor, "layer head r r"] | None = None

    def to(self, dtype: torch.dtype) -> QKSVD:
        def cast(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(dtype)

        return QKSVD(
            self.U.to(dtype),
            self.sigma.to(dtype),
            self.V.to(dtype),
            self.rotary,
            cast(self.query_factor),
            cast(self.key_factor),
            cast(self.query_coef),
            cast(self.key_coef),
        )

    def frame(self, side: int) -> tuple[Tensor, Tensor]:
        """``(factor, coefficients)`` of one side; only for a rotary SVD."""
        factor, coef = (
            (self.query_factor, self.query_coef)
            if side == QUERY_SIDE
            else (self.key_factor, self.key_coef)
        )
        if self.rotary is None or factor is None or coef is None:
            raise ValueError("this SVD has no rotary frame")
        return factor, coef


def augmented_factors(
    W: Float[Tensor, "... d r"], b: Float[Tensor, "... r"]
) -> Float[Tensor, "... d_aug r"]:
    """``[W; b]``: the map ``x̃ ↦ x̃ᵀ [W; b] = xᵀW + b`` on inputs with an appended 1."""
    return torch.cat([W, b.unsqueeze(-2)], dim=-2)


def augmented_omega(
    W_Q: Float[Tensor, "... d r"],
    b_Q: Float[Tensor, "... r"],
    W_K: Float[Tensor, "... d r"],
    b_K: Float[Tensor, "... r"],
) -> Float[Tensor, "... d_aug d_aug"]:
    """``Ω = [W_Q; b_Q] [W_K; b_K]ᵀ`` (dense; for checks, the engine never forms it)."""
    return augmented_factors(W_Q, b_Q) @ augmented_factors(W_K, b_K).transpose(-1, -2)


def factored_svd(
    left: Float[Tensor, "... m r"],
    right: Float[Tensor, "... n r"],
    rotary: Rotary | None = None,
) -> QKSVD:
    """SVD of ``Ω = left rightᵀ`` through its factors, in float64 (with ``rotary``: and the frame
    coefficients of both factors).

    With thin QR factorisations ``left = P_l R_l`` and ``right = P_r R_r``,
    ``Ω = P_l (R_l R_rᵀ) P_rᵀ``; the SVD ``R_l R_rᵀ = A diag(σ) Bᵀ`` of the small r×r core gives
    ``U = P_l A``, ``V = P_r B``. Singular values come in descending order; index k is the
    singular vector's identity. The frame coefficients are ``left⁺ U = R_l⁻¹ A`` and
    ``right⁺ V = R_r⁻¹ B`` (exact for full-rank factors, and far cheaper than a pseudo-inverse).
    """
    left, right = left.double(), right.double()
    with torch_threads(1):
        p_left, r_left = torch.linalg.qr(left)
        p_right, r_right = torch.linalg.qr(right)
        core_left, sigma, core_right_t = torch.linalg.svd(r_left @ r_right.transpose(-1, -2))
        core_right = core_right_t.transpose(-1, -2)
        U, V = p_left @ core_left, p_right @ core_right
        if rotary is None:
            return QKSVD(U=U, sigma=sigma, V=V)
        query_coef = torch.linalg.solve_triangular(r_left, core_left, upper=True)
        key_coef = torch.linalg.solve_triangular(r_right, core_right, upper=True)
    return QKSVD(
        U=U,
        sigma=sigma,
        V=V,
        rotary=rotary,
        query_factor=left,
        key_factor=right,
        query_coef=query_coef,
        key_coef=key_coef,
    )


def qk_svd(
    W_Q: Float[Tensor, "layer head d r"],
    b_Q: Float[Tensor, "layer head r"],
    W_K: Float[Tensor, "layer head d r"],
    b_K: Float[Tensor, "layer head r"],
    rotary: Rotary | None = None,
) -> QKSVD:
    """SVD of ``Ω = Q̃ K̃ᵀ`` of every head (:func:`factored_svd` of the augmented factors)."""
    return factored_svd(augmented_factors(W_Q, b_Q), augmented_factors(W_K, b_K), rotary)


def augment(x: Float[Tensor, "... d"]) -> Float[Tensor, "... d_aug"]:
    """``x̃ = [x; 1]``."""
    return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def singular_projections(
    x_aug: Float[Tensor, "batch pos d_aug"], vectors: Float[Tensor, "head d_aug r"]
) -> Float[Tensor, "batch head pos r"]:
    """``x̃_t · u_k`` (or ``v_k · x̃_t``) for every position and singular vector of each head."""
    return torch.einsum("bpd,hdr->bhpr", x_aug, vectors)


def pair_terms(
    query_proj: Float[Tensor, "batch head dest r"],
    key_proj: Float[Tensor, "batch head src r"],
    sigma: Float[Tensor, "head r"],
) -> Float[Tensor, "batch head dest src r"]:
    """All terms ``t_k(i, j) = σ_k (x̃_i·u_k)(v_k·x̃_j)`` (memory ∝ pos²·r; for checks)."""
    scaled_query = query_proj * sigma[None, :, None, :]
    return scaled_query[:, :, :, None, :] * key_proj[:, :, None, :, :]


def pair_scores(
    query_proj: Float[Tensor, "batch head dest r"],
    key_proj: Float[Tensor, "batch head src r"],
    sigma: Float[Tensor, "head r"],
) -> Float[Tensor, "batch head dest src"]:
    """``Σ_k t_k(i, j)``: the unscaled score, without materialising the terms."""
    return torch.einsum("bhir,hr,bhjr->bhij", query_proj, sigma, key_proj)


def layer_projections(
    x_aug: Float[Tensor, "batch pos d_aug"], svd: QKSVD, layer: int
) -> tuple[Float[Tensor, "batch head pos r"], Float[Tensor, "batch head pos r"]]:
    """Query- and key-side projections ``x̃·u_k``, ``v_k·x̃`` (x̂ for rotary) of one layer."""
    if svd.rotary is None:
        U = svd.U[layer].to(x_aug.dtype)
        V = svd.V[layer].to(x_aug.dtype)
        return singular_projections(x_aug, U), singular_projections(x_aug, V)
    sides = []
    for side in (QUERY_SIDE, KEY_SIDE):
        factor, coef = svd.frame(side)
        sides.append(
            rotated_projections(
                x_aug, factor[layer].to(x_aug.dtype), coef[layer].to(x_aug.dtype), svd.rotary
            )
        )
    return sides[0], sides[1]


@dataclass(frozen=True)
class SparseSets:
    """Per firing: singular-vector indices by descending term, the terms, and the set size.

    The sparse set of firing f is ``order[f, :size[f]]``; ties are broken by the lower index.
    """

    order: Int[Tensor, "firing r"]
    sorted_terms: Float[Tensor, "firing r"]
    size: Int[Tensor, " firing"]


def sparse_sets(terms: Float[Tensor, "firing r"], fraction: float = 1.0) -> SparseSets:
    """Smallest prefix of descending terms whose cumulative sum exceeds ``fraction · Σ_k t_k``.

    The total is the last cumulative sum itself, so an all-non-negative row never exceeds it
    at ``fraction = 1`` (floating-point addition of non-negative numbers is monotone); such a
    row takes all its positive terms instead.
    """
    sorted_terms, order = torch.sort(terms, dim=-1, descending=True, stable=True)
    cumulative = sorted_terms.cumsum(dim=-1)
    target = fraction * cumulative[:, -1:]
    exceeds = cumulative > target
    has_prefix = exceeds.any(dim=-1)
    prefix_size = exceeds.int().argmax(dim=-1) + 1
    n_positive = (sorted_terms > 0).sum(dim=-1)
    size = torch.where(has_prefix, prefix_size, n_positive)
    return SparseSets(order=order, sorted_terms=sorted_terms, size=size)


def firing_mask(
    pattern: Float[Tensor, "batch head dest src"],
    scores: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    layer: int,
    rule: FiringRule,
) -> Bool[Tensor, "batch head dest src"]:
    """Pairs of one layer that fire under ``rule`` (causal, both positions real tokens)."""
    n_pos = pattern.shape[-1]
    if layer < rule.min_layer:
        return torch.zeros_like(pattern, dtype=torch.bool)
    positions = torch.arange(n_pos, device=pattern.device)
    causal = positions[:, None] >= positions[None, :]
    src_allowed = positions >= rule.min_src
    real_pair = valid[:, :, None] & valid[:, None, :] & causal & src_allowed[None, None, :]
    return (pattern >= rule.min_attention) & (scores >= rule.min_score) & real_pair[:, None]


@dataclass(frozen=True)
class Firings:
    """Columnar records of every firing in a batch: one row per (prompt, head, dest, src).

    ``score`` is the unscaled score ``Σ_k t_k``; ``signs[f, m] = sign(x̃_i · u_k)`` for the
    singular vector ``k = sv_order[f, m]``. The sparse set is ``sv_order[f, :n_svs[f]]``.
    """

    prompt: Int[Tensor, " firing"]
    layer: Int[Tensor, " firing"]
    head: Int[Tensor, " firing"]
    dest: Int[Tensor, " firing"]
    src: Int[Tensor, " firing"]
    attention: Float[Tensor, " firing"]
    score: Float[Tensor, " firing"]
    sv_order: Int[Tensor, "firing r"]
    sorted_terms: Float[Tensor, "firing r"]
    signs: Float[Tensor, "firing r"]
    n_svs: Int[Tensor, " firing"]

    def __len__(self) -> int:
        return int(self.prompt.shape[0])

    def to(self, device: torch.device | str) -> Firings:
        return Firings(**{f.name: getattr(self, f.name).to(device) for f in fields(Firings)})

    @staticmethod
    def concat(parts: list[Firings]) -> Firings:
        """Row-wise concatenation (e.g. of the layers of one batch)."""
        columns = {f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Firings)}
        return Firings(**columns)


def decompose_layer(
    x: Float[Tensor, "batch pos d"],
    pattern: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    svd: QKSVD,
    layer: int,
    rule: FiringRule,
) -> Firings:
    """Firings of every head of ``layer`` with their SAD sparse sets.

    ``x`` is the layer's normalized input (``ln1.hook_normalized``), ``pattern`` its attention
    probabilities, ``valid`` marks real (non-padding) tokens. With a rotary ``svd`` the
    projections are those of the unrotated-frame inputs ``x̂_t`` (positions 0 … pos−1).
    """
    sigma = svd.sigma[layer].to(x.dtype)
    x_aug = augment(x)
    query_proj, key_proj = layer_projections(x_aug, svd, layer)
    scores = pair_scores(query_proj, key_proj, sigma)
    prompt, head, dest, src = firing_mask(pattern, scores, valid, layer, rule).nonzero(
        as_tuple=True
    )
    firing_query = query_proj[prompt, head, dest]
    terms = sigma[head] * firing_query * key_proj[prompt, head, src]
    sets = sparse_sets(terms, rule.sparse_fraction)
    return Firings(
        prompt=prompt,
        layer=torch.full_like(prompt, layer),
        head=head,
        dest=dest,
        src=src,
        attention=pattern[prompt, head, dest, src],
        score=scores[prompt, head, dest, src],
        sv_order=sets.order,
        sorted_terms=sets.sorted_terms,
        signs=torch.sign(firing_query.gather(-1, sets.order)),
        n_svs=sets.size,
    )
