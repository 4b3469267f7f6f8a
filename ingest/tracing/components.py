"""Exact per-component contributions to ACC's side totals and to the answer: pure maths.

The residual stream is a sum of component outputs. With compatibility mode (LN folded,
writing weights centred, value biases folded into ``b_O``), at every position p

    resid_pre(l)_p = embed_p (+ pos_embed_p) + Σ_{m<l} (attn_out(m)_p + mlp_out(m)_p),
    attn_out(m)_p  = Σ_h Σ_t A_{m,h}(p, t) · v_{m,h}(t) W_O^{m,h} + b_O^m,

and the head reads ``x_p = C resid_p / s_p`` (C: subtract the mean over d_model for LayerNorm,
the identity for RMSNorm; s: the ``ln1.hook_scale`` of the reading layer; ``ln_final.hook_scale``
for the unembedding). Every component c therefore enters a linear read ``w · Σ_p ρ_p x_p`` as

    c(w, ρ) = Σ_p (ρ_p / s_p) · (C w) · o_c(p),

and ``Σ_c c(w, ρ) = w · Σ_p ρ_p x_p`` exactly (C is applied to the direction, ``Cw·o = w·Co``).
The components are: the embedding (token + positional, one leaf), for each layer m below the
reader the MLP output (leaf) and attention bias ``b_O^m`` (leaf), and each head (m, h) split by
the source token t it read, ``o_{m,h,t}(p) = A_{m,h}(p, t) v_{m,h}(t) W_O`` (the head writer
keeps t).

Reading weights ρ (which positions the components are taken at):

* destination side of pair (i, j): ``ρ = δ_i``; the total is ``D = w_D · x_i``;
* source side: ``ρ = δ_j − (1/i) Σ_{j' ≤ i, j' ≠ j} δ_j'``, so ``Σ_p ρ_p x_p = Δ_j`` and the
  total is ``S = w_S · Δ_j = RA``: a component contributes what it wrote at j minus the mean
  of what it wrote at the rivals j'. Its identity (e.g. head (m, h) via source token t) is
  the same at every p, so those positions add into one contribution;
* the answer: ``ρ = δ_END`` with ``w = W_U[:, IO] − W_U[:, S]`` and the final scale;
  ``Σ_c c + b_U[IO] − b_U[S]`` is the model's logit difference at END.

Rotary positions (Llama family; :mod:`~ingest.decomposition.rotary`). The head reads the
mapped input ``x̂_p = M_p x_p``, ``M_p = (F⁺)ᵀ R_p Fᵀ`` with F the factor of the side's own
input (W_Q on the destination side, W_K on the source side), so the read is
``w · Σ_p ρ_p M_p x_p`` and a component contributes

    c(w, ρ) = Σ_p (ρ_p / s_p) (C M_pᵀ w) · o_c(p) = Σ_p (ρ_p / s_p) (R_pᵀ c) · Fᵀ C o_c(p),

with ``w = F c`` (:func:`~ingest.decomposition.acc.side_frame_coefficients`): on the source
side its mapped output at j minus the mean of its mapped outputs at the rivals, each divided by
the reader's scale at its own position. The direction now depends on p, so a head's output
through t is read position by position, ``Σ_p (ρ_p/s_p) A(p, t) (R_pᵀ c)·Fᵀ v_t W_O``
(:func:`framed_contributions`, in the r-dimensional factor space). ``M_p`` is linear, so the
components still add up to the side total exactly. Without rotation (GPT-2) ``M_p`` is the
identity, the direction is the same at every p and the sums factorise
(:func:`component_contributions`).

Edges use SAD's rule (:func:`~ingest.tracing.upstream.top_share_edges`): per firing and side,
the smallest top set of components whose contribution exceeds ``edge_fraction`` of the total.
Seeds: in prompts the model gets right (logit difference > 0), the head components of the
answer, largest first, until they reach ``seed_fraction`` (50 %) of the logit difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ingest.decomposition.acc import (
    DEST_SIDE,
    SOURCE_SIDE,
    AccFirings,
    AccSVD,
    side_directions,
    side_frame_coefficients,
)
from ingest.decomposition.rotary import Rotary, directions_at, expand_kv_heads, rotate
from ingest.tracing.upstream import top_share_edges

EMBED = 0
ATTN_BIAS = 1
MLP = 2
HEAD = 3
COMPONENT_KINDS = {EMBED: "embed", ATTN_BIAS: "attn_bias", MLP: "mlp", HEAD: "head"}


@dataclass(frozen=True)
class UpstreamOutputs:
    """What every component writes, per prompt and position (one batch, all layers).

    ``head_values[b, t, m, h] = v_{m,h}(t) W_O^{m,h}`` is what head (m, h) writes per unit of
    attention to source t; its output at p is ``Σ_t patterns[b, m, h, p, t] · head_values``.
    ``centred``: the readers' normalisation subtracts the mean over d_model (LayerNorm), or
    not (RMSNorm).
    """

    embed: Float[Tensor, "batch pos d"]
    patterns: Float[Tensor, "batch layer head dest src"]
    head_values: Float[Tensor, "batch src layer head d"]
    mlp_out: Float[Tensor, "batch pos layer d"]
    attn_bias: Float[Tensor, "layer d"]
    centred: bool

    @property
    def n_layers(self) -> int:
        return int(self.attn_bias.shape[0])


def head_value_outputs(
    values: Float[Tensor, "batch src head d_head"], W_O: Float[Tensor, "head d_head d"]
) -> Float[Tensor, "batch src head d"]:
    """``v_t W_O`` per head: the head's output per unit of attention to source t."""
    return torch.einsum("bthe,hed->bthd", values, W_O.to(values.dtype))


def upstream_from_cache(
    cache: Mapping[str, Tensor],
    W_O: Float[Tensor, "layer head d_head d"],
    b_O: Float[Tensor, "layer d"],
    n_layers: int,
    *,
    centred: bool,
    dtype: torch.dtype | None = None,
) -> UpstreamOutputs:
    """:class:`UpstreamOutputs` from TransformerLens hooks (``hook_embed``, ``hook_pos_embed``,
    ``attn.hook_pattern``, ``attn.hook_v``, ``hook_mlp_out``), optionally cast to ``dtype``.

    Grouped value heads (``hook_v`` has n_kv_heads) are expanded to one per query head;
    ``centred`` says whether the readers' normalisation is a LayerNorm (see the class).
    """

    def get(name: str) -> Tensor:
        tensor = cache[name]
        return tensor.to(dtype) if dtype is not None else tensor

    embed = get("hook_embed")
    if "hook_pos_embed" in cache:
        embed = embed + get("hook_pos_embed")
    patterns = torch.stack([get(f"blocks.{m}.attn.hook_pattern") for m in range(n_layers)], 1)
    n_heads = W_O.shape[1]
    head_values = torch.stack(
        [
            head_value_outputs(expand_kv_heads(get(f"blocks.{m}.attn.hook_v"), n_heads, 2), W_O[m])
            for m in range(n_layers)
        ],
        2,
    )
    mlp_out = torch.stack([get(f"blocks.{m}.hook_mlp_out") for m in range(n_layers)], 2)
    return UpstreamOutputs(
        embed=embed,
        patterns=patterns,
        head_values=head_values,
        mlp_out=mlp_out,
        attn_bias=b_O.to(embed.dtype),
        centred=centred,
    )


def reading_weights(
    side: int,
    dest: Int[Tensor, " firing"],
    src: Int[Tensor, " firing"],
    n_pos: int,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "firing pos"]:
    """ρ of each firing's side: ``δ_i`` (destination) or ``δ_j − mean_{j'≤i, j'≠j} δ_j'``."""
    positions = torch.arange(n_pos, device=dest.device)
    at_dest = (positions[None, :] == dest[:, None]).to(dtype)
    if side == DEST_SIDE:
        return at_dest
    at_src = (positions[None, :] == src[:, None]).to(dtype)
    rivals = (positions[None, :] <= dest[:, None]).to(dtype) - at_src
    return at_src - rivals / dest[:, None].to(dtype)


@dataclass(frozen=True)
class ComponentContributions:
    """Per row (a firing's side, or a prompt's answer): what each upstream component adds.

    Layers are those below the reader (``n_upstream``); ``heads[f, m, h, t]`` is head (m, h)
    through source token t. Flat order (:meth:`flat`): embed, attn biases, MLPs, heads.
    """

    embed: Float[Tensor, " row"]
    attn_bias: Float[Tensor, "row layer"]
    mlp: Float[Tensor, "row layer"]
    heads: Float[Tensor, "row layer head src"]

    def total(self) -> Float[Tensor, " row"]:
        return self.flat().sum(-1)

    def flat(self) -> Float[Tensor, "row component"]:
        return torch.cat(
            [self.embed[:, None], self.attn_bias, self.mlp, self.heads.flatten(1)], dim=-1
        )

    def describe(
        self, component: Int[Tensor, " edge"]
    ) -> tuple[
        Int[Tensor, " edge"], Int[Tensor, " edge"], Int[Tensor, " edge"], Int[Tensor, " edge"]
    ]:
        """``(kind, layer, head, src_pos)`` of flat indices (−1 where not applicable)."""
        n_layers = self.mlp.shape[1]
        n_heads, n_pos = self.heads.shape[2], self.heads.shape[3]
        minus = torch.full_like(component, -1)
        kind = torch.full_like(component, EMBED)
        kind = torch.where(component >= 1, ATTN_BIAS, kind)
        kind = torch.where(component >= 1 + n_layers, MLP, kind)
        kind = torch.where(component >= 1 + 2 * n_layers, HEAD, kind)
        head_index = (component - 1 - 2 * n_layers).clamp(min=0)
        layer = torch.where(kind == ATTN_BIAS, component - 1, minus)
        layer = torch.where(kind == MLP, component - 1 - n_layers, layer)
        layer = torch.where(kind == HEAD, head_index // (n_heads * n_pos), layer)
        head = torch.where(kind == HEAD, (head_index // n_pos) % n_heads, minus)
        src_pos = torch.where(kind == HEAD, head_index % n_pos, minus)
        return kind, layer, head, src_pos


def component_contributions(
    direction: Float[Tensor, "row d"],
    reading: Float[Tensor, "row pos"],
    scale: Float[Tensor, "batch pos 1"],
    prompt: Int[Tensor, " row"],
    upstream: UpstreamOutputs,
    n_upstream: int,
) -> ComponentContributions:
    """``c(w, ρ) = Σ_p (ρ_p / s_p) (C w)·o_c(p)`` for every component below layer ``n_upstream``.

    ``scale`` is the reader's normalisation scale; summed over components this is exactly
    ``w · Σ_p ρ_p x_p`` with ``x_p = C resid_p / s_p`` (C the identity for RMSNorm).
    """
    dtype = upstream.embed.dtype
    n_rows, n_pos = reading.shape
    n_heads = upstream.patterns.shape[2]
    centred = direction.to(dtype)
    if upstream.centred:
        centred = centred - centred.mean(-1, keepdim=True)
    weights = reading.to(dtype) / scale[prompt, :, 0].to(dtype)  # ρ_p / s_p
    embed = centred.new_zeros(n_rows)
    mlp = centred.new_zeros((n_rows, n_upstream))
    heads = centred.new_zeros((n_rows, n_upstream, n_heads, n_pos))
    for b in torch.unique(prompt).tolist():
        rows = prompt == b
        w, rho = centred[rows], weights[rows]
        embed[rows] = torch.einsum("fp,pd,fd->f", rho, upstream.embed[b], w)
        mixed_mlp = torch.einsum("fp,pld->fld", rho, upstream.mlp_out[b, :, :n_upstream])
        mlp[rows] = torch.einsum("fld,fd->fl", mixed_mlp, w)
        mixed_attention = torch.einsum("fp,lhpt->flht", rho, upstream.patterns[b, :n_upstream])
        per_unit = torch.einsum("tlhd,fd->flht", upstream.head_values[b, :, :n_upstream], w)
        heads[rows] = mixed_attention * per_unit
    bias_read = centred @ upstream.attn_bias[:n_upstream].T  # row layer
    attn_bias = weights.sum(-1, keepdim=True) * bias_read
    return ComponentContributions(embed=embed, attn_bias=attn_bias, mlp=mlp, heads=heads)


FRAMED_ROWS = 32  # rows read together by framed_contributions (memory ∝ rows·pos²·layers·heads)


def framed_contributions(
    coefficients: Float[Tensor, "row r"],
    factor: Float[Tensor, "d r"],
    rotary: Rotary,
    reading: Float[Tensor, "row pos"],
    scale: Float[Tensor, "batch pos 1"],
    prompt: Int[Tensor, " row"],
    upstream: UpstreamOutputs,
    n_upstream: int,
) -> ComponentContributions:
    """``c(w, ρ) = Σ_p (ρ_p / s_p) (R_pᵀ c) · Fᵀ C o_c(p)`` for rows read through one factor F.

    The rows' direction is ``w = F c`` in the unrotated frame, read at position p as
    ``M_pᵀ w = F R_pᵀ c`` (see the module notes): every component output is projected on F's
    r columns once per prompt, and each row reads it with its own rotated coefficients
    ``c̄_p = (ρ_p/s_p) R_pᵀ c``. Summed over components this is exactly ``w · Σ_p ρ_p M_p x_p``.
    """
    dtype = upstream.embed.dtype
    n_rows, n_pos = reading.shape
    n_heads = upstream.patterns.shape[2]
    read = factor.to(dtype)
    if upstream.centred:
        read = read - read.mean(0, keepdim=True)  # Fᵀ C o = (C F)ᵀ o
    weights = reading.to(dtype) / scale[prompt, :, 0].to(dtype)  # ρ_p / s_p
    spread = coefficients.to(dtype)[:, None, :].expand(n_rows, n_pos, -1)
    turned = rotate(spread, rotary, inverse=True) * weights[..., None]  # c̄[f, p]
    embed = turned.new_zeros(n_rows)
    mlp = turned.new_zeros((n_rows, n_upstream))
    heads = turned.new_zeros((n_rows, n_upstream, n_heads, n_pos))
    for b in torch.unique(prompt).tolist():
        rows = (prompt == b).nonzero(as_tuple=True)[0]
        embed_read = upstream.embed[b] @ read  # p r
        mlp_read = torch.einsum("pld,dr->plr", upstream.mlp_out[b, :, :n_upstream], read)
        head_read = torch.einsum("tlhd,dr->tlhr", upstream.head_values[b, :, :n_upstream], read)
        patterns = upstream.patterns[b, :n_upstream]  # l h p t
        for start in range(0, rows.numel(), FRAMED_ROWS):
            part = rows[start : start + FRAMED_ROWS]
            bar = turned[part]  # f p r
            embed[part] = torch.einsum("fpr,pr->f", bar, embed_read)
            mlp[part] = torch.einsum("fpr,plr->fl", bar, mlp_read)
            per_position = torch.einsum("fpr,tlhr->flhpt", bar, head_read)
            heads[part] = torch.einsum("flhpt,lhpt->flht", per_position, patterns)
    bias_read = upstream.attn_bias[:n_upstream] @ read  # l r
    attn_bias = torch.einsum("fpr,lr->fl", turned, bias_read)
    return ComponentContributions(embed=embed, attn_bias=attn_bias, mlp=mlp, heads=heads)


@dataclass(frozen=True)
class ComponentEdges:
    """Columnar edges: a component → one side of a downstream ACC firing.

    ``kind`` is one of :data:`COMPONENT_KINDS`; ``layer`` the writer's layer (−1 for embed),
    ``head``/``src_pos`` the writing head and the source token it read (−1 for leaves);
    ``pos`` the reader's position (dest i on the destination side, src j on the source side,
    whose rivals j' enter through the mean); ``weight`` the contribution.
    """

    firing: Int[Tensor, " edge"]
    side: Int[Tensor, " edge"]
    kind: Int[Tensor, " edge"]
    layer: Int[Tensor, " edge"]
    head: Int[Tensor, " edge"]
    src_pos: Int[Tensor, " edge"]
    pos: Int[Tensor, " edge"]
    weight: Float[Tensor, " edge"]

    def __len__(self) -> int:
        return int(self.firing.shape[0])

    @staticmethod
    def concat(parts: list[ComponentEdges]) -> ComponentEdges:
        names = ComponentEdges.__dataclass_fields__
        return ComponentEdges(*(torch.cat([getattr(p, n) for p in parts]) for n in names))


def side_contributions(
    firings: AccFirings,
    svd: AccSVD,
    side: int,
    upstream: UpstreamOutputs,
    scale: Float[Tensor, "batch pos 1"],
    layer: int,
    sparse: bool = False,
) -> ComponentContributions:
    """Contributions to one side of firings of one ``layer`` (``scale``: that layer's ln1).

    Sums to ``firings.total[:, side]`` (with ``sparse``: to the side's sparse-set terms).
    Without rotation one direction per row is read at every position (the identity frame).
    With rotary positions the destination side reads one position, i, so its direction is the
    one read there, ``M_iᵀ w``; the source side reads j and its rivals, each through its own
    map, through the factor its heads share (:func:`framed_contributions`).
    """
    reading = reading_weights(side, firings.dest, firings.src, scale.shape[1], scale.dtype)
    rotary = svd.rotary
    if rotary is None:
        direction = side_directions(firings, svd, side, sparse=sparse)
        return component_contributions(direction, reading, scale, firings.prompt, upstream, layer)
    coefficients = side_frame_coefficients(firings, svd, side, sparse=sparse)
    d = upstream.embed.shape[-1]
    factor = svd.side_factor(side)[layer, :, :d]  # head d r
    groups = _shared_factors(factor, torch.unique(firings.head).tolist())
    if side == DEST_SIDE:
        direction = coefficients.new_zeros((len(firings), d))
        for head, members in groups.items():
            rows = torch.isin(firings.head, torch.tensor(members, device=firings.head.device))
            direction[rows] = directions_at(
                coefficients[rows], factor[head], firings.dest[rows], rotary
            )
        return component_contributions(direction, reading, scale, firings.prompt, upstream, layer)
    dtype = upstream.embed.dtype
    n_rows, n_heads, n_pos = len(firings), upstream.patterns.shape[2], reading.shape[1]
    result = ComponentContributions(
        embed=reading.new_zeros(n_rows, dtype=dtype),
        attn_bias=reading.new_zeros((n_rows, layer), dtype=dtype),
        mlp=reading.new_zeros((n_rows, layer), dtype=dtype),
        heads=reading.new_zeros((n_rows, layer, n_heads, n_pos), dtype=dtype),
    )
    for head, members in groups.items():
        rows = torch.isin(firings.head, torch.tensor(members, device=firings.head.device))
        found = framed_contributions(
            coefficients[rows],
            factor[head],
            rotary,
            reading[rows],
            scale,
            firings.prompt[rows],
            upstream,
            layer,
        )
        for name in ("embed", "attn_bias", "mlp", "heads"):
            getattr(result, name)[rows] = getattr(found, name)
    return result


def _shared_factors(factor: Float[Tensor, "head d r"], heads: list[int]) -> dict[int, list[int]]:
    """The given heads grouped by identical factor (query heads of one key group share W_K),
    keyed by the group's first head."""
    groups: dict[int, list[int]] = {}
    for head in heads:
        for first, members in groups.items():
            if torch.equal(factor[first], factor[head]):
                members.append(head)
                break
        else:
            groups[head] = [head]
    return groups


def trace_acc_firings(
    firings: AccFirings,
    svd: AccSVD,
    upstream: UpstreamOutputs,
    scales: list[Float[Tensor, "batch pos 1"]],
    edge_fraction: float = 0.7,
    sparse: bool = False,
) -> ComponentEdges:
    """Edges of both sides of every traced firing, from every component below its layer."""
    found: list[ComponentEdges] = []
    for layer in torch.unique(firings.layer).tolist():
        for side in (DEST_SIDE, SOURCE_SIDE):
            rows = ((firings.layer == layer) & firings.traced[:, side]).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            chosen = firings.select(rows)
            contributions = side_contributions(
                chosen, svd, side, upstream, scales[layer], layer, sparse=sparse
            )
            flat = contributions.flat()
            row, component = top_share_edges(flat, edge_fraction).nonzero(as_tuple=True)
            kind, writer_layer, head, src_pos = contributions.describe(component)
            pos = chosen.dest[row] if side == DEST_SIDE else chosen.src[row]
            found.append(
                ComponentEdges(
                    firing=rows[row],
                    side=torch.full_like(row, side),
                    kind=kind,
                    layer=writer_layer,
                    head=head,
                    src_pos=src_pos,
                    pos=pos,
                    weight=flat[row, component],
                )
            )
    if not found:
        empty = torch.zeros(0, dtype=torch.long)
        return ComponentEdges(empty, empty, empty, empty, empty, empty, empty, torch.zeros(0))
    return ComponentEdges.concat(found)


# ----- the answer ----------------------------------------------------------------------------


def logit_directions(
    W_U: Float[Tensor, "d vocab"], io_token: Int[Tensor, " batch"], s_token: Int[Tensor, " batch"]
) -> Float[Tensor, "batch d"]:
    """``W_U[:, IO] − W_U[:, S]`` per prompt."""
    return (W_U[:, io_token] - W_U[:, s_token]).T


def answer_contributions(
    W_U: Float[Tensor, "d vocab"],
    io_token: Int[Tensor, " batch"],
    s_token: Int[Tensor, " batch"],
    end: Int[Tensor, " batch"],
    final_scale: Float[Tensor, "batch pos 1"],
    upstream: UpstreamOutputs,
) -> ComponentContributions:
    """Every component's share of the IO − S logit difference at END (``ln_final`` scale).

    ``total() + b_U[IO] − b_U[S]`` is the model's logit difference.
    """
    n_batch, n_pos = final_scale.shape[:2]
    prompt = torch.arange(n_batch, device=end.device)
    direction = logit_directions(W_U, io_token, s_token)
    reading = torch.zeros((n_batch, n_pos), dtype=final_scale.dtype, device=end.device)
    reading[prompt, end] = 1.0
    return component_contributions(
        direction, reading, final_scale, prompt, upstream, upstream.n_layers
    )


@dataclass(frozen=True)
class AnswerSeeds:
    """Head components that carry the answer: pairs (END, src) of head (layer, head) to trace.

    ``logit_diff`` is the prompt's logit difference (> 0 for every seed).
    """

    prompt: Int[Tensor, " seed"]
    layer: Int[Tensor, " seed"]
    head: Int[Tensor, " seed"]
    dest: Int[Tensor, " seed"]
    src: Int[Tensor, " seed"]
    contribution: Float[Tensor, " seed"]
    logit_diff: Float[Tensor, " seed"]

    def __len__(self) -> int:
        return int(self.prompt.shape[0])


def seed_mask(
    head_contributions: Float[Tensor, "batch component"],
    logit_diff: Float[Tensor, " batch"],
    fraction: float = 0.5,
) -> Bool[Tensor, "batch component"]:
    """Largest head components until their running sum reaches ``fraction · logit_diff``.

    Only prompts with ``logit_diff > 0``. When the heads' positive contributions never reach
    that share, all of them are kept (the fraction is a cap, not a requirement). Ties: the
    lower index first. Never keeps a component ≤ 0.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"seed fraction must lie in (0, 1], got {fraction}")
    ranked, order = torch.sort(head_contributions, dim=-1, descending=True, stable=True)
    cumulative = ranked.cumsum(dim=-1)
    target = fraction * logit_diff[:, None]
    reaches = cumulative >= target
    n_columns = ranked.shape[-1]
    last = torch.where(reaches.any(-1), reaches.int().argmax(-1), n_columns - 1)
    positions = torch.arange(n_columns, device=ranked.device)[None, :]
    keep_ranked = (positions <= last[:, None]) & (ranked > 0) & (logit_diff[:, None] > 0)
    return torch.zeros_like(keep_ranked).scatter(-1, order, keep_ranked)


def answer_seeds(
    contributions: ComponentContributions,
    logit_diff: Float[Tensor, " batch"],
    end: Int[Tensor, " batch"],
    fraction: float = 0.5,
) -> AnswerSeeds:
    """Seeds of every prompt the model gets right (see :func:`seed_mask`)."""
    heads = contributions.heads.flatten(1)
    prompt, index = seed_mask(heads, logit_diff, fraction).nonzero(as_tuple=True)
    n_heads, n_pos = contributions.heads.shape[2], contributions.heads.shape[3]
    return AnswerSeeds(
        prompt=prompt,
        layer=index // (n_heads * n_pos),
        head=(index // n_pos) % n_heads,
        dest=end[prompt],
        src=index % n_pos,
        contribution=heads[prompt, index],
        logit_diff=logit_diff[prompt],
    )
