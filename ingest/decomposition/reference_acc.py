"""A slow, obviously-correct ACC: plain loops, one (prompt, head, dest, src) pair at a time.

It shares no code with :mod:`ingest.decomposition.acc` or :mod:`ingest.tracing.components`
beyond the SVD factors it is handed, so the vectorized engine can be checked against it. For
pair (i, j) of head h it forms ``Δ_j = x_j − mean_{j' ≤ i, j' ≠ j} x_j'`` with a loop, the
destination terms ``σ^d_k (x_i·u^d_k)(v^d_k·[Δ_j; 0])`` and source terms
``σ^s_k ([x_i; 1]·u^s_k)(v^s_k·Δ_j)`` one dot product at a time, and each side's sparse set
as the smallest descending prefix whose running sum reaches ``fraction · total`` (none when
the total is negative). :func:`reference_component_contributions` credits a linear read of
the residual stream to each component with explicit loops over positions, layers, heads and
source tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor


@dataclass(frozen=True)
class ReferenceAccFiring:
    prompt: int
    head: int
    dest: int
    src: int
    dest_total: float
    source_total: float
    query_bias: float
    dest_set: tuple[int, ...]
    source_set: tuple[int, ...]


def reference_reaching_set(terms: list[float], fraction: float) -> tuple[int, ...]:
    """Indices of the smallest descending prefix whose running sum reaches fraction · total."""
    total = 0.0
    for term in terms:
        total += term
    if total < 0:
        return ()
    ranked = sorted(range(len(terms)), key=lambda k: (-terms[k], k))
    running = 0.0
    for position, k in enumerate(ranked):
        running += terms[k]
        if running >= fraction * total:
            return tuple(ranked[: position + 1])
    return tuple(ranked)


def reference_acc_firings(
    x_query: Float[Tensor, "batch pos d"],
    x_key: Float[Tensor, "batch pos d"],
    pattern: Float[Tensor, "batch head dest src"],
    valid: Bool[Tensor, "batch pos"],
    dest_svd: tuple[Tensor, Tensor, Tensor],
    source_svd: tuple[Tensor, Tensor, Tensor],
    *,
    attention_over_uniform: float = 1.0,
    min_src: int = 0,
    fraction: float = 1.0,
) -> list[ReferenceAccFiring]:
    """ACC records of one layer's firings; the SVDs are ``(U, σ, V)`` of that layer's heads."""
    U_d, sigma_d, V_d = dest_svd
    U_s, sigma_s, V_s = source_svd
    batch, n_pos, d = x_query.shape
    n_heads, _, rank = U_d.shape
    found: list[ReferenceAccFiring] = []
    for b in range(batch):
        for h in range(n_heads):
            for i in range(1, n_pos):
                for j in range(i + 1):
                    if not (valid[b, i] and valid[b, j]) or j < min_src:
                        continue
                    if pattern[b, h, i, j] < attention_over_uniform / (i + 1):
                        continue
                    rivals = [jp for jp in range(i + 1) if jp != j]
                    mean = torch.zeros(d, dtype=x_key.dtype)
                    for jp in rivals:
                        mean = mean + x_key[b, jp]
                    delta = x_key[b, j] - mean / len(rivals)
                    delta_aug = torch.cat([delta, torch.zeros(1, dtype=delta.dtype)])
                    xi_aug = torch.cat([x_query[b, i], torch.ones(1, dtype=x_query.dtype)])
                    dest_terms, source_terms, beta = [], [], 0.0
                    for k in range(rank):
                        left = float(torch.dot(x_query[b, i], U_d[h, :, k]))
                        right = float(torch.dot(V_d[h, :, k], delta_aug))
                        dest_terms.append(float(sigma_d[h, k]) * left * right)
                        left = float(torch.dot(xi_aug, U_s[h, :, k]))
                        right = float(torch.dot(V_s[h, :, k], delta))
                        source_terms.append(float(sigma_s[h, k]) * left * right)
                        beta += float(sigma_s[h, k]) * float(U_s[h, d, k]) * right
                    found.append(
                        ReferenceAccFiring(
                            prompt=b,
                            head=h,
                            dest=i,
                            src=j,
                            dest_total=sum(dest_terms),
                            source_total=sum(source_terms),
                            query_bias=beta,
                            dest_set=reference_reaching_set(dest_terms, fraction),
                            source_set=reference_reaching_set(source_terms, fraction),
                        )
                    )
    return found


def reference_component_contributions(
    direction: Float[Tensor, " d"] | Float[Tensor, "pos d"],
    reading: dict[int, float],
    scale: Float[Tensor, "pos 1"],
    embed: Float[Tensor, "pos d"],
    patterns: list[Float[Tensor, "head dest src"]],
    values: list[Float[Tensor, "src kv_head d_head"]],
    W_O: Float[Tensor, "layer head d_head d"],
    b_O: Float[Tensor, "layer d"],
    mlp_out: list[Float[Tensor, "pos d"]],
    n_upstream: int,
    centred: bool = True,
) -> dict[tuple[int, ...], float]:
    """``Σ_p ρ_p (C w_p)·o_c(p) / s_p`` per component of one prompt, one loop step at a time.

    ``reading`` maps position p to ρ_p. ``direction`` is the read direction, one for every
    position, or one per position (``w_p = M_pᵀ w`` in a rotary frame). C subtracts the mean
    when ``centred`` (LayerNorm), else is the identity (RMSNorm). ``values`` may have fewer
    (grouped) heads than ``W_O``: query head h reads value head ``h // (n_heads / n_kv)``.
    Keys: ``("embed",)`` → ``(0,)``, ``(1, m)`` attention bias of layer m, ``(2, m)`` MLP of
    layer m, ``(3, m, h, t)`` head (m, h) via source t (the kind codes of
    :mod:`ingest.tracing.components`).
    """
    found: dict[tuple[int, ...], float] = {}
    n_heads = W_O.shape[1]

    def add(key: tuple[int, ...], value: float) -> None:
        found[key] = found.get(key, 0.0) + value

    for p, rho in reading.items():
        w = direction if direction.dim() == 1 else direction[p]
        if centred:
            w = w - w.mean()
        weight = rho / float(scale[p, 0])
        add((0,), weight * float(torch.dot(embed[p], w)))
        for m in range(n_upstream):
            add((1, m), weight * float(torch.dot(b_O[m], w)))
            add((2, m), weight * float(torch.dot(mlp_out[m][p], w)))
            group = n_heads // values[m].shape[1]
            for h in range(n_heads):
                for t in range(p + 1):
                    value = values[m][t, h // group]
                    written = float(patterns[m][h, p, t]) * (value @ W_O[m, h])
                    add((3, m, h, t), weight * float(torch.dot(written, w)))
    return found
