"""Attention-causal communication (ACC): relative attention split per side, pure tensor maths.

ACC (Franco & Crovella, NeurIPS 2025) explains *relative* attention instead of the raw score.
For head (l, h) with folded query/key maps ``q = xᵀW_Q + b_Q``, ``k = xᵀW_K + b_K`` the
unscaled score is ``s(i, j) = q_i · k_j = √r · hook_attn_scores[i, j]``. Softmax is
shift-invariant, so what decides ``A(i, j)`` against its rivals is

    RA(i, j) = s(i, j) − mean_{j' ∈ N(i, j)} s(i, j'),   N(i, j) = {j' ≤ i, j' ≠ j},

(|N| = i: every causal source the softmax normalises over, padding included, which for
right-padded batches never lies before a real token). RA is only defined for i ≥ 1.

Derivation (both sides). Write ``Δ_j = x_j − mean_{j'∈N} x_j'`` (key-side inputs) and expand

    s(i, j) = x_iᵀW_QW_Kᵀx_j + x_iᵀW_Q b_K + b_Qᵀ W_Kᵀ x_j + b_Q·b_K.

The 2nd and 4th terms do not depend on j and cancel in RA, so, exactly,

    RA(i, j) = x_iᵀ W_Q W_Kᵀ Δ_j + b_Qᵀ W_Kᵀ Δ_j = q_i · (k_j − mean_{j'∈N} k_j').

* Source side: ``Ω_s = [W_Q; b_Q] W_Kᵀ`` ((d+1)×d). ``S(i, j) = x̃_iᵀ Ω_s Δ_j = RA(i, j)``
  exactly; the query bias enters through the constant coordinate of ``x̃_i``, the part
  ``β(i, j) = b_Qᵀ W_Kᵀ Δ_j`` (the *query-bias term*, :attr:`AccFirings.query_bias`).
* Destination side: ``Ω_d = W_Q [W_K; b_K]ᵀ`` (d×(d+1)). Its key input is the mean-subtracted
  augmented key ``x̃_j − mean x̃_j' = [Δ_j; 0]``: the constant coordinate subtracts to 0, so
  ``b_K`` contributes nothing to any total (it only shapes the SVD basis), and
  ``D(i, j) = x_iᵀ Ω_d [Δ_j; 0] = x_iᵀ W_Q W_Kᵀ Δ_j = RA(i, j) − β(i, j)``.

So the sides are not a split of RA: the bilinear part ``x_iᵀ W_Q W_Kᵀ Δ_j`` belongs to *both*
totals (each side credits it to its own input with the other side held fixed; adding the
sides double counts it, ``D + S = 2 RA − β``); ``β`` belongs to the source side only (no
component written at i carries it); ``x_iᵀW_Q b_K`` and ``b_Q·b_K`` belong to neither.

Terms. Each side has its own SVD ``Ω = Σ_k σ_k u_k v_kᵀ`` (rank ≤ r, through the factors) and
terms ``t_k = σ_k (a·u_k)(v_k·b)`` for its pair ``(a, b)``: ``(x_i, [Δ_j; 0])`` on the
destination side, ``(x̃_i, Δ_j)`` on the source side; ``Σ_k t_k`` is the side's total. A side
is traced only when its total is ≥ 0; its sparse set is the smallest prefix of its terms in
descending order whose running sum *reaches* (≥) ``sparse_fraction · total`` (SAD's rule asks
to *exceed*). Each side reads a vector without a constant coordinate (x_i on the destination
side, Δ_j on the source side), so every upstream component, and nothing else, writes into it:
the *side direction* ``w_D = Σ_k σ_k (v_k·[Δ_j; 0]) u_k`` (``w_S = Σ_k σ_k (x̃_i·u_k) v_k``)
gives ``D = w_D·x_i`` (``S = w_S·Δ_j``); see :mod:`ingest.tracing.components`.

A firing (:class:`AccFiringRule`) is a pair attended above uniform, ``A(i, j) ≥ 1/(i+1)``.
By Jensen, ``A(i, j) ≥ 1/(i+1) ⇔ e^{s_j} ≥ mean_{j'≤i} e^{s_j'} ≥ e^{mean_{j'≤i} s_j'}``, hence
``s_j ≥ mean_{j'≤i} s_j'`` and ``RA(i, j) ≥ 0``: every firing's source side is traced; only
the destination side (through −β) can come out negative.

Rotary positions (Llama family: RoPE, grouped-query attention, no biases). The model rotates
query and key by their positions, ``q̂_i = R_i q_i``, ``k̂_j = R_j k_j`` (R orthogonal, see
:mod:`~ingest.decomposition.rotary`), and softmax's shift-invariance is unchanged, so

    RA(i, j) = q̂_i · (k̂_j − mean_{j'∈N(i,j)} k̂_j').

With bias-free maps (``q_i = W_Qᵀx_i``, ``k_j = W_Kᵀx_j``; W_K of the query head's key group)
and the unrotated frame ``x̂_i = (W_Q⁺)ᵀ R_i W_Qᵀ x_i``, ``x̌_j = (W_K⁺)ᵀ R_j W_Kᵀ x_j`` (exact
for full-rank W: ``W_Qᵀ x̂_i = q̂_i``, ``W_Kᵀ x̌_j = k̂_j``),

    RA(i, j) = x̂_iᵀ W_Q W_Kᵀ Δ̌_j,    Δ̌_j = x̌_j − mean_{j'∈N} x̌_j',

each key-side input mapped by its *own* position's map before the mean is taken (the mean of
mapped inputs, not the map of the mean). Ω_d and Ω_s are then both ``W_Q W_Kᵀ`` (padded with a
zero row/column), β = 0, and ``D = S = RA``: the same SVDs, terms and sparse sets as above
with x̂_i and Δ̌_j for x_i and Δ_j. The engine never forms x̂: ``x̂_p · w_k = (R_p Fᵀx_p)·C[:, k]``
with F the side's factor and ``C = F⁺W`` its frame coefficients (:func:`input_projections`).
Without rotation (GPT-2) the frame map is the identity and the same code reads ``x_p · w_k``.
With rotary positions *and* query/key biases, ``R_j b_K`` no longer cancels in RA and ``R_i b_Q``
is not a constant coordinate; such models are refused (:func:`acc_svd`).

Wiring into records (a later step). A ``TracedBatch`` would carry ACC output as:
firings rows from :class:`AccFirings` with ``method = "acc"`` on the firing, its
``relative`` attention and per-side ``total``/sparse set/``traced`` (the side index replaces
SAD's q/k: 0 = destination, 1 = source); edges from
:class:`ingest.tracing.components.ComponentEdges`, whose writer is either a head, which keeps
the source position ``t`` it read (node key (layer, head, t)), or a leaf ``Component`` node of
kind ``mlp`` / ``attn_bias`` (per layer) or ``embed``; the answer's seeds
(:class:`ingest.tracing.components.AnswerSeeds`) hang below a ``Component`` node of kind
``logit_direction`` (IO − S), from which tracing starts.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ingest.decomposition.rotary import Rotary, rotated_projections
from ingest.decomposition.sad import (
    KEY_SIDE,
    QKSVD,
    QUERY_SIDE,
    augmented_factors,
    factored_svd,
)

DEST_SIDE = 0
SOURCE_SIDE = 1
ACC_SIDE_NAMES = {DEST_SIDE: "dest", SOURCE_SIDE: "source"}


@dataclass(frozen=True)
class AccFiringRule:
    """When a (dest, src) pair is an attention decision ACC explains.

    A pair fires when ``A[i, j] ≥ attention_over_uniform / (i + 1)`` (at or above uniform
    attention over its causal window by default), ``i ≥ 1`` (RA needs a rival source),
    ``j ≥ min_src`` (0: the first token is allowed) and the layer is ``≥ min_layer`` (0: layer 0
    heads are traced to the embedding). Each side's sparse set is the smallest descending
    prefix of its terms reaching ``sparse_fraction · total``.
    """

    attention_over_uniform: float = 1.0
    min_src: int = 0
    min_layer: int = 0
    sparse_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.attention_over_uniform <= 0.0:
            raise ValueError(
                f"attention_over_uniform must be positive, got {self.attention_over_uniform}"
            )
        if not 0.0 < self.sparse_fraction <= 1.0:
            raise ValueError(f"sparse_fraction must lie in (0, 1], got {self.sparse_fraction}")
        if self.min_src < 0 or self.min_layer < 0:
            raise ValueError("min_src and min_layer must be non-negative")


@dataclass(frozen=True)
class AccSVD:
    """Both sides' SVDs of every head.

    ``dest``: ``Ω_d = W_Q [W_K; b_K]ᵀ`` with ``U`` of shape (layer, head, d, r) and ``V`` of
    shape (layer, head, d+1, r). ``source``: ``Ω_s = [W_Q; b_Q] W_Kᵀ`` with ``U`` of shape
    (layer, head, d+1, r) and ``V`` of shape (layer, head, d, r). With rotary positions each
    side also carries its factors and their frame coefficients (``QKSVD.frame``).
    """

    dest: QKSVD
    source: QKSVD

    @property
    def rotary(self) -> Rotary | None:
        return self.dest.rotary

    def side(self, side: int) -> QKSVD:
        return self.dest if side == DEST_SIDE else self.source

    def side_factor(self, side: int) -> Float[Tensor, "layer head d_aug r"]:
        """The factor F of the side's own input (``W_Q`` of Ω_d, ``W_K`` of Ω_s); rotary only."""
        return _side_frame(self, side)[0]

    def to(self, dtype: torch.dtype) -> AccSVD:
        return AccSVD(self.dest.to(dtype), self.source.to(dtype))


def acc_svd(
    W_Q: Float[Tensor, "layer head d r"],
    b_Q: Float[Tensor, "layer head r"],
    W_K: Float[Tensor, "layer head d r"],
    b_K: Float[Tensor, "layer head r"],
    rotary: Rotary | None = None,
) -> AccSVD:
    """SVDs of ``Ω_d = W_Q [W_K; b_K]ᵀ`` and ``Ω_s = [W_Q; b_Q] W_Kᵀ`` of every head (float64).

    ``W_K``/``b_K`` per query head (grouped heads expanded). With ``rotary`` the query/key maps
    must be bias-free (see the module notes) and each side gets its frame coefficients.
    """
    if rotary is not None and (bool(b_Q.any()) or bool(b_K.any())):
        raise ValueError("ACC's rotary frame needs bias-free query and key maps")
    dest = factored_svd(W_Q, augmented_factors(W_K, b_K), rotary)
    source = factored_svd(augmented_factors(W_Q, b_Q), W_K, rotary)
    return AccSVD(dest=dest, source=source)


def relative_attention(
    scores: Float[Tensor, "batch head dest src"],
) -> Float[Tensor, "batch head dest src"]:
    """``RA(i, j) = s(i, j) − mean_{j' ≤ i, j' ≠ j} s(i, j')`` for causal pairs, i ≥ 1.

    Entries with ``j > i`` or ``i = 0`` are 0. ``scores`` may be scaled or not (RA is linear).
    """
    n_pos = scores.shape[-1]
    positions = torch.arange(n_pos, device=scores.device)
    causal = positions[:, None] >= positions[None, :]
    row_sum = torch.where(causal, scores, torch.zeros_like(scores)).sum(-1, keepdim=True)
    n_rivals = positions.to(scores.dtype)[:, None]  # |N(i, j)| = i
    ra = scores - (row_sum - scores) / n_rivals.clamp(min=1)
    defined = causal & (positions[:, None] >= 1)
    return torch.where(defined, ra, torch.zeros_like(ra))


def rival_mean_delta(
    key_proj: Float[Tensor, "batch head pos r"],
    prompt: Int[Tensor, " firing"],
    head: Int[Tensor, " firing"],
    dest: Int[Tensor, " firing"],
    src: Int[Tensor, " firing"],
) -> Float[Tensor, "firing r"]:
    """``p_j − mean_{j' ≤ i, j' ≠ j} p_j'`` of a per-position projection, per firing (i ≥ 1)."""
    prefix = key_proj.cumsum(dim=2)[prompt, head, dest]
    at_src = key_proj[prompt, head, src]
    n_rivals = dest.to(key_proj.dtype)[:, None]
    return at_src - (prefix - at_src) / n_rivals


def acc_firing_mask(
    pattern: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    layer: int,
    rule: AccFiringRule,
) -> Bool[Tensor, "batch head dest src"]:
    """Pairs of one layer with ``A(i, j) ≥ factor/(i+1)``, causal, i ≥ 1, real tokens."""
    n_pos = pattern.shape[-1]
    if layer < rule.min_layer:
        return torch.zeros_like(pattern, dtype=torch.bool)
    positions = torch.arange(n_pos, device=pattern.device)
    causal = (positions[:, None] >= positions[None, :]) & (positions[:, None] >= 1)
    src_allowed = positions >= rule.min_src
    real_pair = valid[:, :, None] & valid[:, None, :] & causal & src_allowed[None, None, :]
    uniform = rule.attention_over_uniform / (positions + 1).to(pattern.dtype)
    return (pattern >= uniform[:, None]) & real_pair[:, None]


@dataclass(frozen=True)
class AccSparseSets:
    """Per row: indices by descending term, the sorted terms, and the sparse set's size."""

    order: Int[Tensor, "row r"]
    sorted_terms: Float[Tensor, "row r"]
    size: Int[Tensor, " row"]


def reaching_sparse_sets(terms: Float[Tensor, "row r"], fraction: float = 1.0) -> AccSparseSets:
    """Smallest prefix of descending terms whose running sum reaches ``fraction · Σ_k t_k``.

    The total is the last running sum itself, so the prefix always exists when the total is
    ≥ 0; rows with a negative total (not traced) get size 0. Ties: the lower index first.
    """
    sorted_terms, order = torch.sort(terms, dim=-1, descending=True, stable=True)
    cumulative = sorted_terms.cumsum(dim=-1)
    total = cumulative[:, -1:]
    reaches = cumulative >= fraction * total
    size = reaches.int().argmax(dim=-1) + 1
    size = torch.where(total[:, 0] >= 0, size, torch.zeros_like(size))
    return AccSparseSets(order=order, sorted_terms=sorted_terms, size=size)


@dataclass(frozen=True)
class AccFirings:
    """Columnar ACC records: one row per (prompt, head, dest, src), both sides side by side.

    Side axis: 0 = destination (``D = x_iᵀΩ_d[Δ_j; 0]``), 1 = source (``S = x̃_iᵀΩ_sΔ_j``).
    ``relative`` is RA (unscaled, = ``total[:, 1]``); ``query_bias`` is β, so that
    ``total[:, 0] + query_bias = relative``. ``coefficients[f, s, k]`` is σ_k times the
    *other* input's projection (``σ_k v_k·[Δ_j; 0]`` on the destination side, ``σ_k x̃_i·u_k``
    on the source side), in singular-vector order, so ``t_k = coefficients · own projection``
    and the side direction is ``Σ_k coefficients[k] · basis_k``. The sparse set of side s is
    ``sv_order[f, s, :n_svs[f, s]]`` (empty when not ``traced``, i.e. total < 0).
    """

    prompt: Int[Tensor, " firing"]
    layer: Int[Tensor, " firing"]
    head: Int[Tensor, " firing"]
    dest: Int[Tensor, " firing"]
    src: Int[Tensor, " firing"]
    attention: Float[Tensor, " firing"]
    relative: Float[Tensor, " firing"]
    query_bias: Float[Tensor, " firing"]
    total: Float[Tensor, "firing side"]
    traced: Bool[Tensor, "firing side"]
    coefficients: Float[Tensor, "firing side r"]
    sv_order: Int[Tensor, "firing side r"]
    sorted_terms: Float[Tensor, "firing side r"]
    n_svs: Int[Tensor, "firing side"]

    def __len__(self) -> int:
        return int(self.prompt.shape[0])

    def to(self, device: torch.device | str) -> AccFirings:
        return AccFirings(**{f.name: getattr(self, f.name).to(device) for f in fields(AccFirings)})

    def select(self, rows: Int[Tensor, " row"] | Bool[Tensor, " firing"]) -> AccFirings:
        return AccFirings(**{f.name: getattr(self, f.name)[rows] for f in fields(AccFirings)})

    @staticmethod
    def concat(parts: list[AccFirings]) -> AccFirings:
        columns = {
            f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(AccFirings)
        }
        return AccFirings(**columns)


def input_projections(
    x: Float[Tensor, "batch pos d"], side_svd: QKSVD, layer: int, factor_side: int
) -> Float[Tensor, "batch head pos r"]:
    """``x_p · w_k[:d]`` for every position and singular vector of one side's Ω (``w = u`` on
    the query factor's side, ``v`` on the key factor's), the constant coordinate left out.

    In a rotary frame the input is first mapped by its position's map, ``x̂_p = (F⁺)ᵀ R_p Fᵀ x_p``
    with F the factor on that side, and ``x̂_p · w_k = (R_p Fᵀ x_p) · C[:, k]`` (``C = F⁺W``,
    the frame coefficients): the model's own rotated query/key read on fixed coefficients.
    """
    d = x.shape[-1]
    if side_svd.rotary is None:
        vectors = side_svd.U if factor_side == QUERY_SIDE else side_svd.V
        return torch.einsum("bpd,hdr->bhpr", x, vectors[layer, :, :d].to(x.dtype))
    factor, coefficients = side_svd.frame(factor_side)
    return rotated_projections(
        x,
        factor[layer, :, :d].to(x.dtype),
        coefficients[layer].to(x.dtype),
        side_svd.rotary,
    )


def side_terms(
    x_query: Float[Tensor, "batch pos d"],
    x_key: Float[Tensor, "batch pos d"],
    svd: AccSVD,
    layer: int,
    prompt: Int[Tensor, " firing"],
    head: Int[Tensor, " firing"],
    dest: Int[Tensor, " firing"],
    src: Int[Tensor, " firing"],
) -> tuple[
    Float[Tensor, "firing side r"], Float[Tensor, "firing side r"], Float[Tensor, " firing"]
]:
    """``(terms, coefficients, β)`` of the given pairs (all with ``dest ≥ 1``).

    ``terms[:, 0, k] = σ^d_k (x_i·u^d_k)(v^d_k[:d]·Δ_j)`` (the constant coordinate of
    ``[Δ_j; 0]`` is 0, so ``v^d_k[d]`` is never read), ``terms[:, 1, k] = σ^s_k (x̃_i·u^s_k)
    (v^s_k·Δ_j)`` and ``β = Σ_k σ^s_k u^s_k[d] (v^s_k·Δ_j)``, the source terms' part through
    the constant coordinate of ``x̃_i``. In a rotary frame x_i and every x_j' read as their
    mapped x̂ (:func:`input_projections`); Δ_j is then the mean of *mapped* inputs.
    """
    d = x_query.shape[-1]
    dtype = x_query.dtype
    dest_svd, source_svd = svd.dest, svd.source
    # destination side: query input x_i (not augmented), key Δ_j through v[:d]
    s_d = dest_svd.sigma[layer].to(dtype)
    q_proj_d = input_projections(x_query, dest_svd, layer, QUERY_SIDE)
    k_proj_d = input_projections(x_key, dest_svd, layer, KEY_SIDE)
    coef_d = s_d[head] * rival_mean_delta(k_proj_d, prompt, head, dest, src)
    terms_d = coef_d * q_proj_d[prompt, head, dest]
    # source side: query x̃_i (augmented: its constant coordinate reads u[d]), key Δ_j
    s_s = source_svd.sigma[layer].to(dtype)
    u_constant = source_svd.U[layer, :, d].to(dtype)  # head r
    q_proj_s = input_projections(x_query, source_svd, layer, QUERY_SIDE) + u_constant[:, None]
    k_proj_s = input_projections(x_key, source_svd, layer, KEY_SIDE)
    delta_s = rival_mean_delta(k_proj_s, prompt, head, dest, src)
    coef_s = s_s[head] * q_proj_s[prompt, head, dest]
    terms_s = coef_s * delta_s
    beta = (s_s[head] * u_constant[head] * delta_s).sum(-1)
    return torch.stack([terms_d, terms_s], 1), torch.stack([coef_d, coef_s], 1), beta


def decompose_pairs(
    x_query: Float[Tensor, "batch pos d"],
    x_key: Float[Tensor, "batch pos d"],
    pattern: Float[Tensor, "batch head dest src"],
    svd: AccSVD,
    layer: int,
    prompt: Int[Tensor, " firing"],
    head: Int[Tensor, " firing"],
    dest: Int[Tensor, " firing"],
    src: Int[Tensor, " firing"],
    sparse_fraction: float = 1.0,
) -> AccFirings:
    """ACC records of the given pairs of one layer (rule firings or answer seeds; dest ≥ 1)."""
    if bool((dest < 1).any()) or bool((src > dest).any()):
        raise ValueError("ACC pairs need 1 ≤ dest and src ≤ dest")
    terms, coefficients, beta = side_terms(x_query, x_key, svd, layer, prompt, head, dest, src)
    n, rank = terms.shape[0], terms.shape[-1]
    sets = reaching_sparse_sets(terms.reshape(n * 2, rank), sparse_fraction)
    total = terms.sum(-1)
    return AccFirings(
        prompt=prompt,
        layer=torch.full_like(prompt, layer),
        head=head,
        dest=dest,
        src=src,
        attention=pattern[prompt, head, dest, src],
        relative=total[:, SOURCE_SIDE],
        query_bias=beta,
        total=total,
        traced=total >= 0,
        coefficients=coefficients,
        sv_order=sets.order.reshape(n, 2, rank),
        sorted_terms=sets.sorted_terms.reshape(n, 2, rank),
        n_svs=sets.size.reshape(n, 2),
    )


def decompose_layer_acc(
    x_query: Float[Tensor, "batch pos d"],
    x_key: Float[Tensor, "batch pos d"],
    pattern: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    svd: AccSVD,
    layer: int,
    rule: AccFiringRule,
) -> AccFirings:
    """ACC records of every firing of every head of ``layer`` under ``rule``."""
    prompt, head, dest, src = acc_firing_mask(pattern, valid, layer, rule).nonzero(as_tuple=True)
    return decompose_pairs(
        x_query, x_key, pattern, svd, layer, prompt, head, dest, src, rule.sparse_fraction
    )


def side_weights(firings: AccFirings, side: int, sparse: bool = False) -> Float[Tensor, "firing r"]:
    """``a_k``, the weight of each singular vector in the side's direction (``coefficients``),
    with ``sparse`` set to 0 outside the side's sparse set (all 0 for an untraced side)."""
    weights = firings.coefficients[:, side]
    if not sparse:
        return weights
    rank = weights.shape[-1]
    ranks = torch.arange(rank, device=weights.device)[None, :]
    in_set_ranked = ranks < firings.n_svs[:, side, None]
    in_set = torch.zeros_like(in_set_ranked).scatter(-1, firings.sv_order[:, side], in_set_ranked)
    return weights * in_set


def side_directions(
    firings: AccFirings, svd: AccSVD, side: int, sparse: bool = False
) -> Float[Tensor, "firing d"]:
    """The vector each side's total is linear in: ``D = w_D·x_i`` and ``S = w_S·Δ_j``.

    ``w_D = Σ_k σ^d_k (v^d_k·[Δ_j; 0]) u^d_k`` and ``w_S = Σ_k σ^s_k (x̃_i·u^s_k) v^s_k``,
    both in the frame of the (unaugmented) head input, the unrotated one for rotary positions
    (there ``D = w_D·x̂_i``, ``S = w_S·Δ̂_j``). With ``sparse`` the sum runs over the side's
    sparse set only, so ``w·input = Σ_{k∈S} t_k`` (0 for an untraced side).
    """
    return _per_head_matmul(firings, side_weights(firings, side, sparse), _side_basis(svd, side))


def side_frame_coefficients(
    firings: AccFirings, svd: AccSVD, side: int, sparse: bool = False
) -> Float[Tensor, "firing r"]:
    """``c = C a`` with ``w = F c`` (rotary frame): the side direction in its factor's basis.

    F is the factor the side's own input is read through (``W_Q`` on the destination side,
    ``W_K`` on the source side) and ``C = F⁺ W`` its frame coefficients, so a component's
    output o written at p is read as ``w · M_p o = c · R_p Fᵀ o``.
    """
    _, coefficients = _side_frame(svd, side)
    weights = side_weights(firings, side, sparse)
    return _per_head_matmul(firings, weights, coefficients)


def _side_basis(svd: AccSVD, side: int) -> Float[Tensor, "layer head d r"]:
    """The singular vectors a side's own input is read by: ``U^d`` or ``V^s``."""
    return svd.dest.U if side == DEST_SIDE else svd.source.V


def _side_frame(svd: AccSVD, side: int) -> tuple[Tensor, Tensor]:
    """``(factor, coefficients)`` of the side's own input (query factor on the destination
    side, key factor on the source side)."""
    return svd.side(side).frame(QUERY_SIDE if side == DEST_SIDE else KEY_SIDE)


def _per_head_matmul(
    firings: AccFirings,
    weights: Float[Tensor, "firing r"],
    matrices: Float[Tensor, "layer head n r"],
) -> Float[Tensor, "firing n"]:
    """``matrices[layer, head] @ weights[f]`` for each firing's head."""
    n_heads = matrices.shape[1]
    out = weights.new_zeros((len(firings), matrices.shape[-2]))
    head_id = firings.layer * n_heads + firings.head
    for flat in torch.unique(head_id).tolist():
        rows = head_id == flat
        out[rows] = weights[rows] @ matrices[divmod(flat, n_heads)].to(weights.dtype).T
    return out
