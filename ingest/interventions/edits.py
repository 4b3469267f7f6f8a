"""Causal validation of communication edges by intervention: pure tensor maths.

An edge says that writer head w sends the signal that makes a downstream firing of head
(l, h) at (i, j) happen. Let S be the firing's sparse set and ``c_k = u_k[:d]`` (query side,
position ``p = i``) or ``c_k = v_k[:d]`` (key side, ``p = j``) its singular vectors without the
bias coordinate. The *signal* the edge sends is the writer's output at p projected onto

    R_S = span{ Π c_k : k ∈ S },        Π = I − 𝟙𝟙ᵀ/d  (centering),

with the orthogonal projector ``P_S = B Bᵀ`` (B an orthonormal basis of R_S, so applying it
twice equals applying it once; the ``c_k`` are not orthogonal once the bias coordinate is
dropped). Centering matters because LayerNorm removes the mean of the residual stream: a
non-centered change would be partly undone by it. (With TransformerLens's folded LayerNorm,
``W_Q`` and ``W_K`` are already centered and Π changes nothing.)

An intervention with factor λ replaces the signal by λ times itself (λ = 0 removes it, λ = 2
boosts it), i.e. adds ``δ = (λ − 1) · P_S o`` where o is taken from the clean run:

* **global**: ``o = o_w(p)`` (``hook_result`` of the writer, residual-stream units); δ is added
  to the writer's output at p, so every later reader sees it and the downstream LayerNorm
  scale is recomputed.
* **local**: ``o = o_w(p) / s_p`` (the head's own input units, ``s_p`` the clean
  ``ln1.hook_scale`` of layer l); only head (l, h)'s query at p (or key at p) changes:
  ``q_p ← q_p + δ W_Q`` (resp. ``k_p ← k_p + δ W_K``), exact because q and k are affine in x.

The **control** does the same with a random set of ``|S|`` singular vectors of the same head
and side drawn from the ones not in S (seeded; several draws). For every prompt we measure the
change of the downstream firing's attention probability ``A[i, j]`` and of the IO−S logit
difference at END.

TransformerLens note: hooks passed to the bridge's ``run_with_cache`` are not applied, so the
intervened runs use ``run_with_hooks`` and read activations with capturing hooks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.decomposition.sad import QKSVD
from ingest.models.loading import LoadedModel
from ingest.pipeline import BatchResult
from ingest.prompts.ioi import IOIPrompt, PromptBatch, tokenize_prompts
from ingest.records.types import Side

Mode = Literal["global", "local"]
MODES: tuple[Mode, ...] = ("global", "local")
Hook = tuple[str, Callable[..., Any]]


# ----- projections -----------------------------------------------------------------------------


def signal_basis(
    vectors: Float[Tensor, "d_aug r"], indices: Sequence[int], tol: float = 1e-10
) -> Float[Tensor, "d k"]:
    """Orthonormal basis of ``span{Π c_k : k ∈ indices}`` with ``c_k = vectors[:d, k]``.

    Computed by an SVD of the centered d×|S| matrix (robust to dependent columns: directions
    with singular value ≤ ``tol`` · the largest are dropped). An empty set gives a d×0 basis.
    """
    d = vectors.shape[0] - 1
    columns = vectors[:d, list(indices)].double()
    if columns.shape[1] == 0:
        return columns.new_zeros((d, 0))
    centered = columns - columns.mean(dim=0, keepdim=True)
    left, singular, _ = torch.linalg.svd(centered, full_matrices=False)
    keep = singular > tol * singular.max().clamp_min(torch.finfo(singular.dtype).tiny)
    return left[:, keep]


def project(
    output: Float[Tensor, "row d"], basis: Float[Tensor, "row d k"]
) -> Float[Tensor, "row d"]:
    """``P_S o = B Bᵀ o`` per row (zero-padded basis columns contribute nothing)."""
    basis = basis.to(output)  # the output's dtype and device
    coefficients = torch.einsum("rd,rdk->rk", output, basis)
    return torch.einsum("rk,rdk->rd", coefficients, basis)


def stack_bases(bases: Sequence[Tensor], d: int) -> Float[Tensor, "row d k"]:
    """Bases of different sizes as one zero-padded tensor."""
    width = max((basis.shape[1] for basis in bases), default=0)
    stacked = torch.zeros((len(bases), d, width), dtype=torch.float64)
    for row, basis in enumerate(bases):
        stacked[row, :, : basis.shape[1]] = basis
    return stacked


def control_sets(
    sparse_set: Sequence[int], rank: int, n_draws: int, generator: torch.Generator
) -> list[list[int]]:
    """``n_draws`` random index sets of size ``min(|S|, rank − |S|)`` from ``{0..rank−1} \\ S``."""
    chosen = set(sparse_set)
    others = torch.tensor([k for k in range(rank) if k not in chosen], dtype=torch.long)
    size = min(len(chosen), len(others))
    return [
        others[torch.randperm(len(others), generator=generator)[:size]].tolist()
        for _ in range(n_draws)
    ]


# ----- running the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class CleanRun:
    """What interventions read from the unmodified forward pass of a batch.

    ``results[l]``: per-head outputs of writer layer l; ``scales[l]``: ``ln1.hook_scale`` and
    ``patterns[l]``: attention of reader layer l; ``logits`` the final logits.
    """

    logits: Float[Tensor, "batch pos vocab"]
    results: dict[int, Float[Tensor, "batch pos head d"]]
    scales: dict[int, Float[Tensor, "batch pos 1"]]
    patterns: dict[int, Float[Tensor, "batch head dest src"]]


def run_capturing(
    bridge: Any, tokens: Int[Tensor, "batch pos"], names: Sequence[str], hooks: Sequence[Hook] = ()
) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and the named activations of a forward pass with ``hooks`` applied."""
    captured: dict[str, Tensor] = {}

    def capture(tensor: Tensor, hook: Any) -> None:
        captured[hook.name] = tensor.detach()

    with torch.inference_mode():
        logits = bridge.run_with_hooks(
            tokens.to(bridge.cfg.device),
            return_type="logits",
            fwd_hooks=[*hooks, *((name, capture) for name in names)],
        )
    return logits.detach(), captured


def clean_run(
    bridge: Any,
    tokens: Int[Tensor, "batch pos"],
    writer_layers: Sequence[int],
    reader_layers: Sequence[int],
) -> CleanRun:
    names = [f"blocks.{layer}.attn.hook_result" for layer in set(writer_layers)]
    for layer in set(reader_layers):
        names += [f"blocks.{layer}.ln1.hook_scale", f"blocks.{layer}.attn.hook_pattern"]
    logits, captured = run_capturing(bridge, tokens, names)
    return CleanRun(
        logits=logits,
        results={lw: captured[f"blocks.{lw}.attn.hook_result"] for lw in set(writer_layers)},
        scales={lr: captured[f"blocks.{lr}.ln1.hook_scale"] for lr in set(reader_layers)},
        patterns={lr: captured[f"blocks.{lr}.attn.hook_pattern"] for lr in set(reader_layers)},
    )


@dataclass(frozen=True)
class EdgeIntervention:
    """Change one writer's signal into head (layer, head) on ``side``, per batch row.

    Row b acts on clean prompt ``prompt[b]`` at position ``pos[b]`` (dest for the query side,
    src for the key side) within the span of ``basis[b]`` (orthonormal, zero-padded).
    """

    writer_layer: int
    writer_head: int
    layer: int
    head: int
    side: Side
    prompt: Int[Tensor, " row"]
    pos: Int[Tensor, " row"]
    basis: Float[Tensor, "row d k"]


def edge_delta(
    edge: EdgeIntervention, clean: CleanRun, mode: Mode, factor: float
) -> Float[Tensor, "row d"]:
    """``δ = (λ − 1) · P_S o`` per row, in residual units (global) or head-input units (local)."""
    output = clean.results[edge.writer_layer][edge.prompt, edge.pos, edge.writer_head]
    if mode == "local":
        output = output / clean.scales[edge.layer][edge.prompt, edge.pos]
    return (factor - 1.0) * project(output, edge.basis)


def intervention_hooks(
    bridge: Any, edges: Sequence[EdgeIntervention], clean: CleanRun, mode: Mode, factor: float
) -> list[Hook]:
    """Forward hooks adding every edge's δ (global: to ``hook_result``; local: to q or k)."""
    hooks: list[Hook] = []
    for edge in edges:
        delta = edge_delta(edge, clean, mode, factor)
        rows = torch.arange(len(edge.pos))
        if mode == "global":
            name = f"blocks.{edge.writer_layer}.attn.hook_result"
            index = (rows, edge.pos, torch.full_like(rows, edge.writer_head))
        else:
            weights = bridge.W_Q if edge.side == "q" else bridge.W_K
            delta = delta.to(weights.dtype) @ weights[edge.layer, edge.head].detach()
            name = f"blocks.{edge.layer}.attn.hook_{edge.side}"
            index = (rows, edge.pos, torch.full_like(rows, edge.head))
        hooks.append((name, _adder(index, delta)))
    return hooks


def _adder(index: tuple[Tensor, ...], delta: Tensor) -> Callable[..., Tensor]:
    def add(tensor: Tensor, hook: Any) -> Tensor:
        changed = tensor.clone()
        changed[tuple(i.to(tensor.device) for i in index)] += delta.to(tensor)
        return changed

    return add


def logit_diff(
    logits: Float[Tensor, "batch pos vocab"],
    end: Int[Tensor, " batch"],
    io_token: Int[Tensor, " batch"],
    s_token: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """``logit(IO) − logit(S)`` at END."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    at_end = logits[rows, end.to(logits.device)]
    return (
        at_end[rows, io_token.to(logits.device)] - at_end[rows, s_token.to(logits.device)]
    ).cpu()


# ----- one firing class, many prompts ----------------------------------------------------------


@dataclass(frozen=True)
class FiringTargets:
    """Firings of head (layer, head) to intervene on, one per prompt (the edge's
    downstream firing): ``prompts[n]`` fires at ``(dest[n], src[n])`` with ``sparse_sets[n]``."""

    layer: int
    head: int
    prompts: Sequence[IOIPrompt]
    dest: Sequence[int]
    src: Sequence[int]
    sparse_sets: Sequence[Sequence[int]]

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class EdgeEffects:
    """Per prompt: the clean values and the changes the signal and each control draw cause.

    ``Δattention`` is the change of the target firing's ``A[dest, src]``, ``Δlogit`` that of
    the IO−S logit difference at END.
    """

    attention: Float[Tensor, " prompt"]
    logit_diff: Float[Tensor, " prompt"]
    signal_attention: Float[Tensor, " prompt"]
    signal_logit: Float[Tensor, " prompt"]
    control_attention: Float[Tensor, "prompt draw"]
    control_logit: Float[Tensor, "prompt draw"]

    @staticmethod
    def concat(parts: Sequence[EdgeEffects]) -> EdgeEffects:
        names = EdgeEffects.__dataclass_fields__
        return EdgeEffects(**{name: torch.cat([getattr(p, name) for p in parts]) for name in names})


def measure_edges(
    model: LoadedModel,
    svd: QKSVD,
    targets: FiringTargets,
    writers: Sequence[tuple[int, int]],
    side: Side,
    *,
    mode: Mode = "global",
    factor: float = 0.0,
    n_controls: int = 5,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> EdgeEffects:
    """Intervene on the signal ``writers`` send into every target firing (together, when
    several), and on ``n_controls`` random controls each; see the module docstring.

    The control sets are drawn per prompt from a generator seeded with ``seed``, in prompt
    order, so the same targets give the same controls. ``progress(n)`` is told how many
    prompts each batch finished.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    generator = torch.Generator().manual_seed(seed)
    vectors = (svd.U if side == "q" else svd.V)[targets.layer, targets.head]
    rank = vectors.shape[-1]
    parts = []
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        sets = [list(s) for s in targets.sparse_sets[start:stop]]
        controls = [control_sets(s, rank, n_controls, generator) for s in sets]
        parts.append(
            _measure_batch(
                model,
                targets,
                range(start, stop),
                [[s, *c] for s, c in zip(sets, controls, strict=True)],
                writers,
                side,
                mode,
                factor,
                vectors,
            )
        )
        if progress is not None:
            progress(stop - start)
    return EdgeEffects.concat(parts)


def _measure_batch(
    model: LoadedModel,
    targets: FiringTargets,
    indices: range,
    variants: list[list[list[int]]],
    writers: Sequence[tuple[int, int]],
    side: Side,
    mode: Mode,
    factor: float,
    vectors: Tensor,
) -> EdgeEffects:
    """One batch: variant 0 of each prompt is the signal, the others its controls."""
    bridge = model.bridge
    batch = tokenize_prompts(
        [targets.prompts[n] for n in indices], model.tokenizer, prepend_bos=model.prepend_bos
    )
    dest = torch.tensor([targets.dest[n] for n in indices])
    src = torch.tensor([targets.src[n] for n in indices])
    clean = clean_run(bridge, batch.tokens, [layer for layer, _ in writers], [targets.layer])
    n_variants = len(variants[0])
    prompt = torch.arange(len(indices)).repeat_interleave(n_variants)
    pos = (dest if side == "q" else src)[prompt]
    basis = stack_bases(
        [signal_basis(vectors, s) for row in variants for s in row], bridge.cfg.d_model
    )
    edges = [
        EdgeIntervention(lw, hw, targets.layer, targets.head, side, prompt, pos, basis)
        for lw, hw in writers
    ]
    hooks = intervention_hooks(bridge, edges, clean, mode, factor)
    pattern_name = f"blocks.{targets.layer}.attn.hook_pattern"
    logits, captured = run_capturing(bridge, batch.tokens[prompt], [pattern_name], hooks)
    rows = torch.arange(len(prompt))
    attention = captured[pattern_name][rows, targets.head, dest[prompt], src[prompt]].cpu()
    clean_attention = clean.patterns[targets.layer][
        torch.arange(len(indices)), targets.head, dest, src
    ].cpu()
    clean_logit = _batch_logit_diff(clean.logits, batch)
    changed_logit = logit_diff(
        logits, batch.roles["END"][prompt], batch.io_token[prompt], batch.s_token[prompt]
    )
    d_attention = (attention - clean_attention[prompt]).view(len(indices), n_variants)
    d_logit = (changed_logit - clean_logit[prompt]).view(len(indices), n_variants)
    return EdgeEffects(
        attention=clean_attention,
        logit_diff=clean_logit,
        signal_attention=d_attention[:, 0],
        signal_logit=d_logit[:, 0],
        control_attention=d_attention[:, 1:],
        control_logit=d_logit[:, 1:],
    )


def _batch_logit_diff(logits: Tensor, batch: PromptBatch) -> Tensor:
    return logit_diff(logits, batch.roles["END"], batch.io_token, batch.s_token)


@dataclass(frozen=True)
class EffectSummary:
    """Means and spreads (population std over prompts, and over prompts × draws for the
    control) of one :class:`EdgeEffects`; ``*_ratio`` = mean |Δ signal| / mean |Δ control|."""

    n_prompts: int
    n_controls: int
    attention: float
    logit_diff: float
    signal_attention_mean: float
    signal_attention_std: float
    control_attention_mean: float
    control_attention_std: float
    signal_logit_mean: float
    signal_logit_std: float
    control_logit_mean: float
    control_logit_std: float
    attention_ratio: float
    logit_ratio: float


def summarize(effects: EdgeEffects) -> EffectSummary:
    def stats(values: Tensor) -> tuple[float, float]:
        values = values.double().flatten()
        if values.numel() == 0:  # no control draws (an ACC embedding edge has no control)
            return math.nan, math.nan
        return float(values.mean()), float(values.std(correction=0))

    def ratio(signal: Tensor, control: Tensor) -> float:
        if control.numel() == 0:
            return math.nan
        denominator = float(control.double().abs().mean())
        numerator = float(signal.double().abs().mean())
        return numerator / denominator if denominator > 0 else float("inf")

    sa, sa_std = stats(effects.signal_attention)
    ca, ca_std = stats(effects.control_attention)
    sl, sl_std = stats(effects.signal_logit)
    cl, cl_std = stats(effects.control_logit)
    return EffectSummary(
        n_prompts=int(effects.signal_attention.shape[0]),
        n_controls=int(effects.control_attention.shape[1]),
        attention=float(effects.attention.double().mean()),
        logit_diff=float(effects.logit_diff.double().mean()),
        signal_attention_mean=sa,
        signal_attention_std=sa_std,
        control_attention_mean=ca,
        control_attention_std=ca_std,
        signal_logit_mean=sl,
        signal_logit_std=sl_std,
        control_logit_mean=cl,
        control_logit_std=cl_std,
        attention_ratio=ratio(effects.signal_attention, effects.control_attention),
        logit_ratio=ratio(effects.signal_logit, effects.control_logit),
    )


def firing_targets(
    result: BatchResult,
    layer: int,
    head: int,
    dest_role: str,
    src_role: str,
    writer: tuple[int, int, Side] | None = None,
) -> FiringTargets:
    """The firings of head (layer, head) at ``dest_role → src_role`` in one traced batch;
    with ``writer = (layer, head, side)`` only those that writer has an edge into."""
    firings, roles = result.firings, result.role_labels
    rows = [
        f
        for f in range(len(firings))
        if (int(firings.layer[f]), int(firings.head[f])) == (layer, head)
        and roles[int(firings.prompt[f])][int(firings.dest[f])] == dest_role
        and roles[int(firings.prompt[f])][int(firings.src[f])] == src_role
    ]
    if writer is not None:
        edges = result.edges
        if edges is None:
            raise ValueError("the batch was not traced; run process_batch with trace=True")
        side = 0 if writer[2] == "q" else 1
        written = {
            int(edges.firing[e])
            for e in range(len(edges))
            if (int(edges.writer_layer[e]), int(edges.writer_head[e]), int(edges.side[e]))
            == (writer[0], writer[1], side)
        }
        rows = [f for f in rows if f in written]
    return FiringTargets(
        layer=layer,
        head=head,
        prompts=[result.prompts[int(firings.prompt[f])] for f in rows],
        dest=[int(firings.dest[f]) for f in rows],
        src=[int(firings.src[f]) for f in rows],
        sparse_sets=[firings.sv_order[f, : firings.n_svs[f]].tolist() for f in rows],
    )
