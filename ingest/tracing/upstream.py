"""Credit every firing's signal to the upstream heads that wrote it (SAD tracing): pure maths.

For a firing of head (l, h) at (i, j) with sparse set S and ``sign_k = sign(x̃_i · u_k)``,
upstream head w (layer < l) writes ``o_w(t)`` (``hook_result``) into the residual stream; the
head reads ``x_t = resid_t / s_t``. Its contributions to the two sides of the signal are

    query side:  c_q(w) = Σ_{k∈S} sign_k √σ_k (u_k[:d] · o_w(i)) / s_i = a_q · o_w(i) / s_i
    key side:    c_k(w) = Σ_{k∈S} sign_k √σ_k (v_k[:d] · o_w(j)) / s_j = a_k · o_w(j) / s_j

with the *signal directions* ``a_q = Σ_{k∈S} sign_k √σ_k u_k`` and ``a_k`` likewise from v_k.

Bias coordinate (an explicit choice): the appended constant coordinate of ``x̃`` is not
written by any head, so no writer is credited with it; writers' outputs enter with a 0 there.
(The authors' code appends a 1 to every writer's output, which adds the same constant
``a[d]`` to every writer's contribution; we do not.) Embeddings, MLPs and attention biases are
not writers in SAD; the ACC mode credits them.

Per-vector parts: for the selected edges only, the contribution is also kept term by term,
``parts[m] = sign_k √σ_k (w_k[:d] · o_w(pos)) / s_pos`` for ``k = sv_order[m]``, ``m < |S|``
(``w_k`` = u_k on the query side, v_k on the key side), so ``Σ_m parts[m] = c(w)``: which
feature of the sparse set a writer sent.

Rotary positions: the head reads the unrotated-frame input ``x̂_p = M_p x̃_p`` (a linear map of
position p, :mod:`~ingest.decomposition.rotary`), so a writer's output is read by the position's
direction ``M_pᵀ a`` instead of ``a`` (and each ``w_k`` by ``M_pᵀ w_k`` in the parts). The map
is linear: contributions still add up over writers exactly as without rotation.

Edge rule: per side, sort writers by contribution, descending; the smallest top set whose
cumulative contribution exceeds ``edge_fraction · Σ_w c(w)`` become edges. When the total is
not positive no writer explains the signal and the side has no edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ingest.decomposition.rotary import directions_at, outputs_read
from ingest.decomposition.sad import QKSVD, Firings
from ingest.sides import KEY_SIDE, QUERY_SIDE


def _signal_weights(firings: Firings, svd: QKSVD) -> Tensor:
    """``sign_k √σ_k`` for k in the sparse set, 0 elsewhere, by singular index (firing × r)."""
    rank = firings.sv_order.shape[-1]
    in_set = torch.arange(rank, device=firings.n_svs.device)[None, :] < firings.n_svs[:, None]
    sqrt_sigma = svd.sigma[firings.layer, firings.head].sqrt().to(firings.signs.dtype)
    ranked_weights = firings.signs * sqrt_sigma.gather(-1, firings.sv_order) * in_set
    return torch.zeros_like(ranked_weights).scatter(-1, firings.sv_order, ranked_weights)


def signal_directions(firings: Firings, svd: QKSVD) -> tuple[Tensor, Tensor]:
    """``(a_q, a_k)`` per firing, each ``Float[Tensor, "firing d_aug"]``.

    ``a_q = Σ_{k∈S} sign_k √σ_k u_k`` and ``a_k = Σ_{k∈S} sign_k √σ_k v_k`` for the firing's
    head, with S its sparse set. For a rotary SVD these are the directions as read at the
    firing's positions, ``M_iᵀ a_q`` (at dest) and ``M_jᵀ a_k`` (at src).
    """
    weights = _signal_weights(firings, svd)
    d_aug = svd.U.shape[-2]
    a_query = weights.new_zeros((len(firings), d_aug))
    a_key = weights.new_zeros((len(firings), d_aug))
    n_heads = svd.U.shape[1]
    head_id = firings.layer * n_heads + firings.head
    for flat in torch.unique(head_id).tolist():
        rows = head_id == flat
        layer, head = divmod(flat, n_heads)
        if svd.rotary is None:
            a_query[rows] = weights[rows] @ svd.U[layer, head].to(weights.dtype).T
            a_key[rows] = weights[rows] @ svd.V[layer, head].to(weights.dtype).T
            continue
        for side, target, pos in (
            (QUERY_SIDE, a_query, firings.dest),
            (KEY_SIDE, a_key, firings.src),
        ):
            factor, coef = svd.frame(side)
            coefficients = weights[rows] @ coef[layer, head].to(weights.dtype).T
            target[rows] = directions_at(
                coefficients, factor[layer, head], pos[rows], svd.rotary
            ).to(target.dtype)
    return a_query, a_key


def upstream_contributions(
    direction: Float[Tensor, "firing d_aug"],
    writer_outputs: Float[Tensor, "batch pos writer d"],
    scale: Float[Tensor, "batch pos 1"],
    prompt: Int[Tensor, " firing"],
    pos: Int[Tensor, " firing"],
    chunk: int = 1024,
) -> Float[Tensor, "firing writer"]:
    """``c(w) = a[:d] · o_w(pos) / s_pos`` for every firing and every upstream writer.

    Computed in chunks of firings so memory stays at ``chunk × writers × d``.
    """
    d = writer_outputs.shape[-1]
    parts = []
    for start in range(0, direction.shape[0], chunk):
        rows = slice(start, start + chunk)
        outputs = writer_outputs[prompt[rows], pos[rows]]  # firing writer d
        projected = torch.einsum("fwd,fd->fw", outputs, direction[rows, :d].to(outputs.dtype))
        parts.append(projected / scale[prompt[rows], pos[rows]])
    if not parts:
        return writer_outputs.new_zeros((0, writer_outputs.shape[2]))
    return torch.cat(parts)


def top_share_edges(
    contributions: Float[Tensor, "firing writer"], fraction: float = 0.7
) -> Bool[Tensor, "firing writer"]:
    """Writers in the smallest top set whose contribution exceeds ``fraction`` of the total.

    Ties are broken by the lower writer index. Rows whose total is not positive get no edge.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"edge fraction must lie in (0, 1], got {fraction}")
    ranked, order = torch.sort(contributions, dim=-1, descending=True, stable=True)
    cumulative = ranked.cumsum(dim=-1)
    total = cumulative[:, -1:]
    exceeds = cumulative > fraction * total
    first = torch.where(exceeds.any(-1), exceeds.int().argmax(-1), ranked.shape[-1] - 1)
    keep_ranked = torch.arange(ranked.shape[-1], device=ranked.device)[None, :] <= first[:, None]
    keep_ranked &= total > 0
    return torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked)


def edge_parts(
    firings: Firings,
    svd: QKSVD,
    firing: Int[Tensor, " edge"],
    side: int,
    outputs: Float[Tensor, "edge d"],
    pos: Int[Tensor, " edge"] | None = None,
) -> Float[Tensor, "edge r"]:
    """Per-singular-vector parts of the edges' contributions, in the firings' rank order.

    ``outputs`` are the writers' outputs already divided by the downstream LN scale. Row e,
    column m is ``sign_m √σ_{k_m} (w_{k_m}[:d] · outputs[e])`` with ``k_m = sv_order[f, m]``
    for ``m < n_svs[f]`` and 0 past the sparse set, so each row sums to the edge's weight.
    A rotary SVD needs the positions ``pos`` the outputs were written at (w_k read there).
    """
    d = outputs.shape[-1]
    basis = svd.U if side == QUERY_SIDE else svd.V
    layer, head = firings.layer[firing], firings.head[firing]
    n_heads = basis.shape[1]
    by_index = outputs.new_zeros((firing.shape[0], basis.shape[-1]))
    head_id = layer * n_heads + head
    for flat in torch.unique(head_id).tolist():
        rows = head_id == flat
        if svd.rotary is not None:
            if pos is None:
                raise ValueError("a rotary SVD needs the edges' positions")
            factor, coef = svd.frame(side)
            lh = divmod(flat, n_heads)
            by_index[rows] = outputs_read(
                outputs[rows], factor[lh], coef[lh], pos[rows], svd.rotary
            ).to(by_index.dtype)
            continue
        vectors = basis[divmod(flat, n_heads)][:d].to(outputs.dtype)
        by_index[rows] = outputs[rows] @ vectors
    order = firings.sv_order[firing]
    rank = order.shape[-1]
    in_set = torch.arange(rank, device=order.device)[None, :] < firings.n_svs[firing][:, None]
    sqrt_sigma = svd.sigma[layer, head].sqrt().to(outputs.dtype).gather(-1, order)
    signs = firings.signs[firing].to(outputs.dtype)
    return by_index.gather(-1, order) * signs * sqrt_sigma * in_set


@dataclass(frozen=True)
class Edges:
    """Columnar per-prompt communication edges: writer head → a downstream firing.

    ``firing`` indexes rows of the :class:`~ingest.decomposition.sad.Firings` they explain; ``pos``
    is the downstream position the writer wrote to (dest for the query side, src for key).
    ``parts[e, m]`` is the edge's weight carried by the firing's rank-m singular vector (zero
    past the sparse set; see :func:`edge_parts`).
    """

    firing: Int[Tensor, " edge"]
    writer_layer: Int[Tensor, " edge"]
    writer_head: Int[Tensor, " edge"]
    side: Int[Tensor, " edge"]
    pos: Int[Tensor, " edge"]
    weight: Float[Tensor, " edge"]
    parts: Float[Tensor, "edge r"]

    def __len__(self) -> int:
        return int(self.firing.shape[0])


def trace_firings(
    firings: Firings,
    svd: QKSVD,
    results: list[Float[Tensor, "batch pos head d"]],
    scales: list[Float[Tensor, "batch pos 1"]],
    edge_fraction: float = 0.7,
) -> Edges:
    """Query- and key-side edges of every firing, from every head of every earlier layer."""
    n_heads = results[0].shape[2]
    a_query, a_key = signal_directions(firings, svd)
    all_writers = torch.cat(results, dim=2)  # batch pos (layer·head) d, built once
    found: list[Edges] = []
    for layer in torch.unique(firings.layer).tolist():
        if layer == 0:
            continue
        rows = (firings.layer == layer).nonzero(as_tuple=True)[0]
        writers = all_writers[:, :, : layer * n_heads]  # heads of earlier layers (a view)
        for side, direction, pos in (
            (QUERY_SIDE, a_query, firings.dest),
            (KEY_SIDE, a_key, firings.src),
        ):
            contributions = upstream_contributions(
                direction[rows], writers, scales[layer], firings.prompt[rows], pos[rows]
            )
            firing_idx, writer = top_share_edges(contributions, edge_fraction).nonzero(
                as_tuple=True
            )
            chosen = rows[firing_idx]
            prompt, at = firings.prompt[chosen], pos[chosen]
            outputs = writers[prompt, at, writer] / scales[layer][prompt, at]
            found.append(
                Edges(
                    firing=chosen,
                    writer_layer=writer // n_heads,
                    writer_head=writer % n_heads,
                    side=torch.full_like(firing_idx, side),
                    pos=at,
                    weight=contributions[firing_idx, writer],
                    parts=edge_parts(firings, svd, chosen, side, outputs, at),
                )
            )
    if not found:
        empty = torch.zeros(0, dtype=torch.long)
        rank = firings.sv_order.shape[-1]
        return Edges(empty, empty, empty, empty, empty, torch.zeros(0), torch.zeros(0, rank))
    return Edges(
        *(torch.cat([getattr(p, name) for p in found]) for name in Edges.__dataclass_fields__)
    )
