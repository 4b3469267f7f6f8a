"""A slow, obviously-correct SAD: plain loops, one (prompt, head, dest, src) pair at a time.

It shares no code with :mod:`ingest.decomposition.sad` beyond the SVD factors it is handed, so the
vectorized engine can be checked against it (the tests do; ``circuit-atlas bench`` also times
both on the same input). For pair (i, j) of head h it forms ``x̃ = [x; 1]``, the terms
``t_k = σ_k (x̃_i · u_k)(v_k · x̃_j)`` one dot product at a time, and the sparse set as the
smallest descending prefix whose running sum exceeds ``fraction · Σ_k t_k``.

Rotary models: pass the explicit unrotated-frame inputs ``x̂`` per head
(:func:`~ingest.decomposition.rotary.unrotated_inputs`, already augmented) as ``x_query`` and
``x_key``; the loop then reads ``x̂_i`` and ``x̂_j`` instead of ``[x; 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass(frozen=True)
class ReferenceFiring:
    prompt: int
    head: int
    dest: int
    src: int
    sparse_set: tuple[int, ...]
    terms: tuple[float, ...]  # of the sparse set, in set order
    signs: tuple[float, ...]


def reference_sparse_set(terms: list[float], fraction: float) -> tuple[int, ...]:
    """Indices of the smallest descending prefix whose running sum exceeds fraction · total."""
    ranked = sorted(range(len(terms)), key=lambda k: (-terms[k], k))
    total = 0.0
    for k in ranked:
        total += terms[k]
    running = 0.0
    for position, k in enumerate(ranked):
        running += terms[k]
        if running > fraction * total:
            return tuple(ranked[: position + 1])
    return tuple(k for k in ranked if terms[k] > 0)


def reference_firings(
    x: Float[Tensor, "batch pos d"],
    pattern: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    U: Float[Tensor, "head d_aug r"],
    sigma: Float[Tensor, "head r"],
    V: Float[Tensor, "head d_aug r"],
    layer: int,
    *,
    min_attention: float = 0.5,
    min_score: float = 0.0,
    min_src: int = 1,
    min_layer: int = 1,
    fraction: float = 1.0,
    x_query: Float[Tensor, "batch head pos d_aug"] | None = None,
    x_key: Float[Tensor, "batch head pos d_aug"] | None = None,
) -> list[ReferenceFiring]:
    firings: list[ReferenceFiring] = []
    if layer < min_layer:
        return firings
    batch, n_pos, _ = x.shape
    n_heads, _, rank = U.shape
    for b in range(batch):
        for h in range(n_heads):
            for i in range(n_pos):
                for j in range(i + 1):
                    if not (valid[b, i] and valid[b, j]) or j < min_src:
                        continue
                    if pattern[b, h, i, j] < min_attention:
                        continue
                    xi = torch.cat([x[b, i], torch.ones(1, dtype=x.dtype)])
                    xj = torch.cat([x[b, j], torch.ones(1, dtype=x.dtype)])
                    if x_query is not None and x_key is not None:
                        xi, xj = x_query[b, h, i], x_key[b, h, j]
                    query = [float(torch.dot(xi, U[h, :, k])) for k in range(rank)]
                    key = [float(torch.dot(V[h, :, k], xj)) for k in range(rank)]
                    terms = [float(sigma[h, k]) * query[k] * key[k] for k in range(rank)]
                    if sum(terms) < min_score:
                        continue
                    chosen = reference_sparse_set(terms, fraction)
                    firings.append(
                        ReferenceFiring(
                            prompt=b,
                            head=h,
                            dest=i,
                            src=j,
                            sparse_set=chosen,
                            terms=tuple(terms[k] for k in chosen),
                            signs=tuple(float(torch.sign(torch.tensor(query[k]))) for k in chosen),
                        )
                    )
    return firings
