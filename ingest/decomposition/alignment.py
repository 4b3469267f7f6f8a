"""Feature identity across heads: which singular vectors of different heads read the same
residual direction (pure maths: an SVD in, pairs out).

After folding, every head reads the same space ``x̃ = [resid/s; 1]``: head (l, h) scores a pair
through ``(x̃_i · u_k)`` on the query side and ``(v_k · x̃_j)`` on the key side. A *feature* is a
direction of the residual stream, and an upstream head can only write the first d coordinates
(the constant coordinate is nobody's output, see :mod:`ingest.tracing.upstream`). So we compare the
*read directions* restricted to the residual and normalised,

    ŵ = w[:d] / ‖w[:d]‖       for every w ∈ {u_k, v_k} of every head,

by ``|cos| = |ŵ_a · ŵ_b|`` (singular vectors have no sign: u_k, v_k flip together). All four
side combinations count: q–q (two heads query the same feature), k–k (both key on it) and q–k
(one head's query feature is another's key feature: a writer into that direction is read by
both, at whatever positions). Vectors of the same head are never paired.

Kept pairs: ``|cos| ≥ threshold`` and the partner among the ``top_k`` most aligned vectors of
at least one of the two (so a vector has at most ``top_k`` partners it chose itself). Random
unit vectors in R^d have ``E|cos| = sqrt(2/(π d))`` (0.029 for d = 768), and the largest of N
such values is about ``sqrt(2 ln N / d)``; the default threshold is chosen far above that (see
the README's measured distributions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.decomposition.sad import QKSVD
from ingest.sides import KEY_SIDE, QUERY_SIDE

DEFAULT_ALIGN_THRESHOLD = 0.5
DEFAULT_ALIGN_TOP_K = 5


@dataclass(frozen=True)
class ReadDirections:
    """Every head's normalised residual read directions, one row per (layer, head, side, k)."""

    vectors: Float[Tensor, "vector d"]
    layer: Int[Tensor, " vector"]
    head: Int[Tensor, " vector"]
    side: Int[Tensor, " vector"]
    index: Int[Tensor, " vector"]


def read_directions(svd: QKSVD) -> ReadDirections:
    """``ŵ = w[:d] / ‖w[:d]‖`` for w = u_k (query side) and v_k (key side) of every head."""
    layers, heads, d_aug, rank = svd.U.shape
    device = svd.U.device
    blocks, sides = [], []
    for side, basis in ((QUERY_SIDE, svd.U), (KEY_SIDE, svd.V)):
        residual = basis[..., : d_aug - 1, :].transpose(-1, -2).to(torch.float64)
        blocks.append(residual / residual.norm(dim=-1, keepdim=True).clamp_min(1e-30))
        sides.append(torch.full((layers, heads, rank), side, device=device))
    grid = torch.meshgrid(
        *(torch.arange(n, device=device) for n in (layers, heads, rank)), indexing="ij"
    )
    return ReadDirections(
        vectors=torch.stack(blocks, dim=2).reshape(-1, d_aug - 1),  # layer head side k
        layer=torch.stack([grid[0], grid[0]], dim=2).reshape(-1),
        head=torch.stack([grid[1], grid[1]], dim=2).reshape(-1),
        side=torch.stack(sides, dim=2).reshape(-1),
        index=torch.stack([grid[2], grid[2]], dim=2).reshape(-1),
    )


@dataclass(frozen=True)
class AlignedPairs:
    """Pairs of read directions of different heads, ``a < b`` in :class:`ReadDirections` order."""

    a: Int[Tensor, " pair"]
    b: Int[Tensor, " pair"]
    cos: Float[Tensor, " pair"]

    def __len__(self) -> int:
        return int(self.a.shape[0])

    @staticmethod
    def concat(parts: list[AlignedPairs]) -> AlignedPairs:
        return AlignedPairs(
            torch.cat([part.a for part in parts]),
            torch.cat([part.b for part in parts]),
            torch.cat([part.cos for part in parts]),
        )


def aligned_pairs(
    directions: ReadDirections,
    threshold: float = DEFAULT_ALIGN_THRESHOLD,
    top_k: int = DEFAULT_ALIGN_TOP_K,
    chunk: int = 2048,
) -> AlignedPairs:
    """The pairs with ``|cos| ≥ threshold`` that are in the top-k of at least one end.

    Screened in float32, decided in float64. A float32 dot product of two unit vectors in R^d is
    within ``ε = (d + 3)·2⁻²⁴`` of the exact one (rounding the inputs, 2·2⁻²⁴, and summing d
    products, γ_d ≤ (d + 1)·2⁻²⁴), so every pair with exact ``|cos| ≥ threshold`` has a screened
    value ``≥ threshold − ε``. The symmetric |cos| matrix is screened block by block on and above
    the diagonal (``chunk × chunk``, half the products), the pairs that pass are rescored in
    float64, and a vector's top-k among its pairs at or above the threshold is its top-k over
    all vectors cut at the threshold. The result is the float64 computation's, at a quarter of
    its cost (34,560 directions of d = 576 on SmolLM2-135M). Several processes can share the
    work: :func:`row_shares` splits the block rows, :func:`aligned_candidates` screens one share
    and :func:`merge_candidates` joins the shares' candidates into this function's result.
    """
    return merge_candidates(
        [aligned_candidates(directions, threshold, top_k, chunk=chunk)],
        top_k,
        directions.vectors.shape[0],
    )


def row_shares(n_vectors: int, n_shares: int, chunk: int = 2048) -> list[range]:
    """Contiguous ranges of block rows, in order, of about equal work (block row ``i`` of ``n``
    screens the ``n − i`` blocks on and above the diagonal); at most one range per block row."""
    n_blocks = -(-n_vectors // chunk)
    total = n_blocks * (n_blocks + 1) // 2
    shares: list[range] = []
    start, done = 0, 0
    for row in range(n_blocks):
        done += n_blocks - row
        if done * n_shares >= total * (len(shares) + 1) or row == n_blocks - 1:
            shares.append(range(start, row + 1))
            start = row + 1
    return shares


def aligned_candidates(
    directions: ReadDirections,
    threshold: float = DEFAULT_ALIGN_THRESHOLD,
    top_k: int = DEFAULT_ALIGN_TOP_K,
    rows: range | None = None,
    chunk: int = 2048,
) -> AlignedPairs:
    """The candidate pairs whose first end lies in the block rows ``rows`` (all when None):
    every pair with ``|cos| ≥ threshold`` there, less those outside the top-k of both ends among
    them. A pair outside the top-k of both its ends never re-enters as more pairs are found, so
    such pairs are dropped whenever many have gathered (memory stays near ``2·top_k`` pairs per
    vector) and the shares' candidates merge into the whole computation's pairs."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"alignment threshold must lie in (0, 1], got {threshold}")
    if top_k < 1:
        raise ValueError(f"alignment top-k must be at least 1, got {top_k}")
    vectors = directions.vectors.to(torch.float64)
    screen = vectors.to(torch.float32)
    n_vectors, d = vectors.shape
    screen_floor = threshold - (d + 3) * 2.0**-24
    head_id = directions.layer * (int(directions.head.max()) + 1) + directions.head
    parts: list[AlignedPairs] = []
    blocks = torch.arange(n_vectors, device=vectors.device).split(chunk)
    for i in rows if rows is not None else range(len(blocks)):
        row = blocks[i]
        for columns in blocks[i:]:
            hit = ((screen[row] @ screen[columns].T).abs_() >= screen_floor).nonzero()
            a, b = row[hit[:, 0]], columns[hit[:, 1]]
            other = (a < b) & (head_id[a] != head_id[b])
            a, b = a[other], b[other]
            cos = (vectors[a] * vectors[b]).sum(dim=-1).abs_()
            kept = cos >= threshold
            parts.append(AlignedPairs(a[kept], b[kept], cos[kept]))
            if sum(map(len, parts)) > 4 * top_k * n_vectors:
                parts = [_in_top_k_of_an_end(AlignedPairs.concat(parts), top_k, n_vectors)]
    if not parts:
        empty = torch.empty(0, dtype=torch.long, device=vectors.device)
        return AlignedPairs(empty, empty, torch.empty(0, dtype=torch.float64))
    return _in_top_k_of_an_end(AlignedPairs.concat(parts), top_k, n_vectors)


def merge_candidates(parts: list[AlignedPairs], top_k: int, n_vectors: int) -> AlignedPairs:
    """The ALIGNED pairs from the candidates of shares that cover every block row once, in the
    order of their rows: each pair in the top-k of an end, ordered by ``(a, b)``."""
    found = _in_top_k_of_an_end(AlignedPairs.concat(parts), top_k, n_vectors)
    order = torch.argsort(found.a * n_vectors + found.b)
    return AlignedPairs(found.a[order], found.b[order], found.cos[order])


def _in_top_k_of_an_end(pairs: AlignedPairs, top_k: int, n_vectors: int) -> AlignedPairs:
    """The pairs among the ``top_k`` largest |cos| of ``a`` or of ``b`` (within ``pairs``)."""
    ends = torch.cat([pairs.a, pairs.b])
    by_value = torch.argsort(torch.cat([pairs.cos, pairs.cos]), descending=True, stable=True)
    order = by_value[torch.argsort(ends[by_value], stable=True)]  # by end, best first
    counts = torch.bincount(ends, minlength=n_vectors)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device) - starts[ends[order]]
    n_pairs = len(pairs)
    keep = (rank[:n_pairs] < top_k) | (rank[n_pairs:] < top_k)
    return AlignedPairs(pairs.a[keep], pairs.b[keep], pairs.cos[keep])
