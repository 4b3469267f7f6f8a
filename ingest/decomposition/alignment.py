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

from ingest.decomposition.sad import KEY_SIDE, QKSVD, QUERY_SIDE

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


def aligned_pairs(
    directions: ReadDirections,
    threshold: float = DEFAULT_ALIGN_THRESHOLD,
    top_k: int = DEFAULT_ALIGN_TOP_K,
    chunk: int = 2048,
) -> AlignedPairs:
    """The pairs with ``|cos| ≥ threshold`` that are in the top-k of at least one end.

    The |cos| matrix is computed ``chunk`` rows at a time (memory ``chunk × vectors``).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"alignment threshold must lie in (0, 1], got {threshold}")
    if top_k < 1:
        raise ValueError(f"alignment top-k must be at least 1, got {top_k}")
    vectors = directions.vectors
    head_id = directions.layer * (int(directions.head.max()) + 1) + directions.head
    values: dict[tuple[int, int], float] = {}  # (a, b) with a < b → |cos|
    for start in range(0, vectors.shape[0], chunk):
        rows = torch.arange(start, min(start + chunk, vectors.shape[0]), device=vectors.device)
        cos = (vectors[rows] @ vectors.T).abs()
        cos[head_id[rows][:, None] == head_id[None, :]] = 0.0
        best, partner = cos.topk(min(top_k, cos.shape[1]), dim=-1)
        keep = best >= threshold
        for row, col, value in zip(
            rows[:, None].expand_as(partner)[keep].tolist(),
            partner[keep].tolist(),
            best[keep].tolist(),
            strict=True,
        ):
            values[min(row, col), max(row, col)] = value
    ordered = sorted(values)
    return AlignedPairs(
        a=torch.tensor([a for a, _ in ordered], dtype=torch.long),
        b=torch.tensor([b for _, b in ordered], dtype=torch.long),
        cos=torch.tensor([values[key] for key in ordered], dtype=torch.float64),
    )
