"""Causal validation of ACC edges by intervention: pure tensor maths.

An ACC edge says that component c (a head (m, h') through the source tokens T it read, an
MLP, an attention-output bias ``b_O^m`` or the embedding) wrote part of one side of a firing
(i, j) of head (L, h). Its weight is the component's exact share of that side's total
(:mod:`ingest.tracing.components`):

    w_c = Σ_p (ρ_p / s_p) (C w)·o_c(p),

with ``o_c(p)`` what c writes at position p (for a head through T: ``Σ_{t∈T} A(p, t) v_t
W_O``), ``s_p`` the reader's ``ln1.hook_scale``, C the centring over d_model (a LayerNorm
reader; the identity for an RMSNorm reader, which does not subtract the mean), w the side's
direction and ρ its reading weights: ``δ_i`` on the destination side, ``δ_j − (1/i) Σ_{j' ≤ i,
j' ≠ j} δ_j'`` on the source side. The positions a side reads are those with ``ρ_p ≠ 0``:
i on the destination side, every p ≤ i on the source side.

An intervention with factor λ (0 removes the component, 2 doubles it) replaces ``o_c(p)`` by
``λ o_c(p)`` at every position the side reads, i.e. adds ``δ(p) = (λ − 1) o_c(p)``:

* **local**: only in head (L, h)'s query at i (destination side) or its keys at p ≤ i (source
  side): ``q_i ← q_i + (λ − 1) (C o_c(i) / s_i) W_Q`` (``k_p`` likewise with ``W_K``). As
  ``RA(i, j) = q_i · (k_j − mean_{j'} k_j')`` is linear in the query and, separately, in the
  keys (``b_K`` cancels in the difference), the change of RA is exactly ``(λ − 1) w_c``: the
  edge's weight is the *linear prediction* of the intervention, which the model's own hooks
  must reproduce.
* **global**: ``δ`` is added to the component's own output (``attn.hook_result`` of head h' at
  p, ``hook_mlp_out``, ``hook_attn_out`` for ``b_O``, ``hook_embed``), so every later layer
  sees it and every normalisation scale is recomputed: the measured change is the edge's total
  effect, of which ``(λ − 1) w_c`` is the direct first-order part.

The **control** does the same with a random other component of the same kind below layer L
(seeded; several draws): another head through the same source tokens, another layer's MLP or
bias. The embedding has no other component of its kind, so it has no control (NaN). Per prompt
we measure the change of the firing's relative attention ``RA(i, j)`` (unscaled,
``√d_head · hook_attn_scores``), of its attention ``A(i, j)`` and of the IO−S logit difference
at END.

**Llama family** (RoPE, grouped-query attention, RMSNorm, no biases). ``hook_q``/``hook_k``
hold ``q = x W_Q`` and ``k = x W_K`` per head *before* the rotation (``hook_rot_q`` =
``R_i q_i``), so the local edit is rotated with the query (key) it is added to, and
``RA(i, j) = (R_i q_i) · (R_j k_j − mean_{j'} R_j' k_j')`` is still linear in ``q_i`` and,
separately, in each ``k_p``; the edge weight ``w_c`` is computed in the unrotated frame through
the same rotations (:mod:`ingest.decomposition.rotary`), so the change of RA is again exactly
``(λ − 1) w_c``. The readers are not centred and every bias is zero. With grouped-query heads
``hook_k`` has ``n_kv_heads`` heads: the key edit goes to key/value head ``h // (n_heads /
n_kv_heads)`` with that head's ``W_K``, which also changes the keys of the other query heads of
its group; only head (L, h)'s RA is measured, and that is what the edge claims. Global mode
edits the component's own output, where there is no frame to match (Llama has no
``hook_pos_embed``: the embedding is ``hook_embed`` alone). Rotary models *with* query/key
biases are refused (:class:`~ingest.models.loading.UnsupportedModelError`), as ACC tracing
refuses them: a rotated bias does not cancel in RA.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ingest.decomposition.acc import DEST_SIDE
from ingest.decomposition.activations import model_rotary
from ingest.interventions.edits import (
    MODES,
    EdgeEffects,
    EffectSummary,
    Hook,
    Mode,
    logit_diff,
    run_capturing,
    summarize,
)
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import IOIPrompt, tokenize_prompts
from ingest.tracing.acc_circuit import output_biases, reads_centred, refuse_rotated_qk_biases
from ingest.tracing.components import (
    ATTN_BIAS,
    EMBED,
    HEAD,
    MLP,
    UpstreamOutputs,
    reading_weights,
    upstream_from_cache,
)


@dataclass(frozen=True)
class AccWriter:
    """A component that writes into the residual stream: ``kind`` one of
    :data:`~ingest.tracing.components.COMPONENT_KINDS` (embed, attn_bias, mlp, head); ``layer``
    −1 for the embedding; ``head`` −1 except for heads."""

    kind: int
    layer: int = -1
    head: int = -1


@dataclass(frozen=True)
class AccEdgeTargets:
    """The firings of head (layer, head) one ACC edge writes into, one per prompt, on ``side``
    (:data:`~ingest.decomposition.acc.DEST_SIDE` or ``SOURCE_SIDE``).

    ``prompts[n]`` fires at ``(dest[n], src[n])``; ``writer_src[n]`` are the source tokens the
    writer head read in that prompt's edges (empty for a leaf writer); ``weight[n]`` is the
    edge's weight there (summed over those source tokens): the linear prediction of removing it.
    """

    layer: int
    head: int
    side: int
    prompts: Sequence[IOIPrompt]
    dest: Sequence[int]
    src: Sequence[int]
    writer_src: Sequence[Sequence[int]]
    weight: Sequence[float]

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class AccEdgeEffects:
    """Per prompt: clean values, the linear prediction, and the changes the edge's intervention
    and each control draw cause (``relative``: RA(i, j) unscaled; ``attention``: A(i, j);
    ``logit``: the IO−S logit difference at END)."""

    relative: Float[Tensor, " prompt"]
    attention: Float[Tensor, " prompt"]
    logit_diff: Float[Tensor, " prompt"]
    predicted_relative: Float[Tensor, " prompt"]
    signal_relative: Float[Tensor, " prompt"]
    signal_attention: Float[Tensor, " prompt"]
    signal_logit: Float[Tensor, " prompt"]
    control_relative: Float[Tensor, "prompt draw"]
    control_attention: Float[Tensor, "prompt draw"]
    control_logit: Float[Tensor, "prompt draw"]

    @staticmethod
    def concat(parts: Sequence[AccEdgeEffects]) -> AccEdgeEffects:
        names = AccEdgeEffects.__dataclass_fields__
        return AccEdgeEffects(
            **{name: torch.cat([getattr(p, name) for p in parts]) for name in names}
        )


def control_writers(
    writer: AccWriter, reader_layer: int, n_heads: int, n_draws: int, generator: torch.Generator
) -> list[AccWriter]:
    """``n_draws`` random components of ``writer``'s kind below ``reader_layer``, never the
    writer itself (with replacement across draws); none for the embedding, or when the writer
    is the only one of its kind there."""
    if writer.kind == HEAD:
        others = [
            AccWriter(HEAD, m, h)
            for m in range(reader_layer)
            for h in range(n_heads)
            if (m, h) != (writer.layer, writer.head)
        ]
    elif writer.kind in (MLP, ATTN_BIAS):
        others = [AccWriter(writer.kind, m) for m in range(reader_layer) if m != writer.layer]
    else:
        others = []
    if not others:
        return []
    picks = torch.randint(len(others), (n_draws,), generator=generator).tolist()
    return [others[k] for k in picks]


def component_output(
    upstream: UpstreamOutputs, writer: AccWriter, prompt: int, writer_src: Sequence[int]
) -> Float[Tensor, "pos d"]:
    """``o_c(p)`` at every position of one prompt (a head: through source tokens ``writer_src``)."""
    if writer.kind == EMBED:
        return upstream.embed[prompt]
    if writer.kind == MLP:
        return upstream.mlp_out[prompt, :, writer.layer]
    if writer.kind == ATTN_BIAS:
        n_pos = upstream.embed.shape[1]
        return upstream.attn_bias[writer.layer].expand(n_pos, -1)
    tokens = list(writer_src)
    attention = upstream.patterns[prompt, writer.layer, writer.head][:, tokens]  # pos t
    values = upstream.head_values[prompt, tokens, writer.layer, writer.head]  # t d
    return attention @ values


def relative_at(
    scores: Float[Tensor, "row head dest src"],
    head: int,
    dest: Int[Tensor, " row"],
    src: Int[Tensor, " row"],
) -> Float[Tensor, " row"]:
    """``RA(i, j) = s(i, j) − mean_{j' ≤ i, j' ≠ j} s(i, j')`` of one head, per row (i ≥ 1)."""
    rows = torch.arange(len(dest), device=scores.device)
    line = scores[rows, head, dest.to(scores.device)]  # row src
    positions = torch.arange(line.shape[-1], device=scores.device)
    causal = positions[None, :] <= dest.to(scores.device)[:, None]
    at_src = line[rows, src.to(scores.device)]
    rivals = torch.where(causal, line, torch.zeros_like(line)).sum(-1) - at_src
    return (at_src - rivals / dest.to(scores.device).to(line.dtype)).cpu()


def measure_acc_edges(
    model: LoadedModel,
    targets: AccEdgeTargets,
    writer: AccWriter,
    *,
    mode: Mode = "local",
    factor: float = 0.0,
    n_controls: int = 5,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> AccEdgeEffects:
    """Scale ``writer``'s output by ``factor`` where the target side reads it, in every target
    firing, and likewise ``n_controls`` random components of its kind; see the module notes.

    Controls are drawn per prompt from a generator seeded with ``seed``, in prompt order.
    ``progress(n)`` is told how many prompts each batch finished. A rotary model with
    query/key biases raises :class:`~ingest.models.loading.UnsupportedModelError`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    refuse_rotated_qk_biases(model.bridge, model_rotary(model.bridge.cfg))
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        variants = [
            [
                writer,
                *control_writers(writer, targets.layer, model.n_heads, n_controls, generator),
            ]
            for _ in range(start, stop)
        ]
        parts.append(_measure_batch(model, targets, range(start, stop), variants, mode, factor))
        if progress is not None:
            progress(stop - start)
    return AccEdgeEffects.concat(parts)


def _hook_names(n_layers: int, reader_layer: int) -> list[str]:
    names = ["hook_embed", "hook_pos_embed", f"blocks.{reader_layer}.ln1.hook_scale"]
    names.append(f"blocks.{reader_layer}.attn.hook_attn_scores")
    names.append(f"blocks.{reader_layer}.attn.hook_pattern")
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.attn.hook_pattern",
            f"blocks.{layer}.attn.hook_v",
            f"blocks.{layer}.hook_mlp_out",
        ]
    return sorted(set(names))


def _measure_batch(
    model: LoadedModel,
    targets: AccEdgeTargets,
    indices: range,
    variants: list[list[AccWriter]],
    mode: Mode,
    factor: float,
) -> AccEdgeEffects:
    """One batch: variant 0 of each prompt is the edge's writer, the others its controls."""
    bridge = model.bridge
    cfg = bridge.cfg
    batch = tokenize_prompts(
        [targets.prompts[n] for n in indices], model.tokenizer, prepend_bos=model.prepend_bos
    )
    n_rows = len(indices)
    dest = torch.tensor([targets.dest[n] for n in indices])
    src = torch.tensor([targets.src[n] for n in indices])
    scores_name = f"blocks.{targets.layer}.attn.hook_attn_scores"
    pattern_name = f"blocks.{targets.layer}.attn.hook_pattern"
    clean_logits, cache = run_capturing(
        bridge, batch.tokens, _hook_names(cfg.n_layers, targets.layer)
    )
    upstream = upstream_from_cache(
        cache,
        bridge.W_O.detach(),
        output_biases(bridge).detach(),
        cfg.n_layers,
        centred=reads_centred(cfg),
    )
    root_r = math.sqrt(cfg.d_head)
    clean_relative = root_r * relative_at(cache[scores_name], targets.head, dest, src)
    rows_clean = torch.arange(n_rows)
    clean_attention = cache[pattern_name][
        rows_clean, targets.head, dest.to(cfg.device), src.to(cfg.device)
    ].cpu()
    clean_logit = logit_diff(clean_logits, batch.roles["END"], batch.io_token, batch.s_token)

    n_variants = max(len(row) for row in variants)
    prompt = torch.arange(n_rows).repeat_interleave(n_variants)
    reads = reading_weights(targets.side, dest, src, batch.tokens.shape[1]) != 0  # row pos
    deltas: list[tuple[AccWriter, int, Tensor]] = []  # (component, variant row, δ(pos, d))
    for b, row in enumerate(variants):
        n = indices[b]
        for v, component in enumerate(row):
            output = component_output(upstream, component, b, targets.writer_src[n])
            delta = (factor - 1.0) * output * reads[b, :, None].to(output)
            deltas.append((component, b * n_variants + v, delta))
    present = torch.zeros(n_rows * n_variants, dtype=torch.bool)
    present[[r for _, r, _ in deltas]] = True
    if mode == "local":
        scale = cache[f"blocks.{targets.layer}.ln1.hook_scale"]
        hooks = [_local_hook(bridge, targets, deltas, prompt, scale, n_rows * n_variants)]
    else:
        hooks = _global_hooks(bridge, deltas, n_rows * n_variants)
    logits, captured = run_capturing(
        bridge, batch.tokens[prompt], [scores_name, pattern_name], hooks
    )
    relative = root_r * relative_at(captured[scores_name], targets.head, dest[prompt], src[prompt])
    rows = torch.arange(len(prompt))
    attention = captured[pattern_name][
        rows, targets.head, dest[prompt].to(cfg.device), src[prompt].to(cfg.device)
    ].cpu()
    changed_logit = logit_diff(
        logits, batch.roles["END"][prompt], batch.io_token[prompt], batch.s_token[prompt]
    )

    def change(values: Tensor, clean: Tensor) -> Tensor:
        shaped = (values - clean[prompt]).double()
        shaped = torch.where(present, shaped, torch.full_like(shaped, math.nan))
        return shaped.view(n_rows, n_variants)

    d_relative = change(relative, clean_relative)
    d_attention = change(attention, clean_attention)
    d_logit = change(changed_logit, clean_logit)
    predicted = torch.tensor([targets.weight[n] for n in indices], dtype=torch.float64)
    return AccEdgeEffects(
        relative=clean_relative.double(),
        attention=clean_attention.double(),
        logit_diff=clean_logit.double(),
        predicted_relative=(factor - 1.0) * predicted,
        signal_relative=d_relative[:, 0],
        signal_attention=d_attention[:, 0],
        signal_logit=d_logit[:, 0],
        control_relative=d_relative[:, 1:],
        control_attention=d_attention[:, 1:],
        control_logit=d_logit[:, 1:],
    )


def _local_hook(
    bridge: object,
    targets: AccEdgeTargets,
    deltas: Sequence[tuple[AccWriter, int, Tensor]],
    prompt: Int[Tensor, " row"],
    scale: Float[Tensor, "batch pos 1"],
    n_rows: int,
) -> Hook:
    """``q_i`` (or ``k_p``) of head (L, h) plus ``(C δ(p) / s_p) W_Q`` (``W_K`` of h's key/value
    head), per row; C only for LayerNorm readers."""
    cfg = bridge.cfg  # type: ignore[attr-defined]
    n_pos, d = scale.shape[1], cfg.d_model
    moved = torch.zeros((n_rows, n_pos, d), dtype=scale.dtype, device=scale.device)
    for _, row, delta in deltas:
        moved[row] += delta.to(moved)
    if reads_centred(cfg):  # C: LayerNorm removes the mean, RMSNorm does not
        moved = moved - moved.mean(-1, keepdim=True)
    moved = moved / scale[prompt.to(scale.device)]
    if targets.side == DEST_SIDE:
        weights, name, head = bridge.W_Q, "hook_q", targets.head  # type: ignore[attr-defined]
    else:
        weights, name = bridge.W_K, "hook_k"  # type: ignore[attr-defined]
        n_kv = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
        head = targets.head // (cfg.n_heads // n_kv)
    change = moved @ weights[targets.layer, head].detach().to(moved)  # row pos d_head

    def add(tensor: Tensor, hook: object) -> Tensor:
        changed = tensor.clone()
        changed[:, :, head] += change.to(tensor)
        return changed

    return f"blocks.{targets.layer}.attn.{name}", add


_GLOBAL_HOOK = {
    MLP: "blocks.{layer}.hook_mlp_out",
    ATTN_BIAS: "blocks.{layer}.hook_attn_out",
    HEAD: "blocks.{layer}.attn.hook_result",
    EMBED: "hook_embed",
}


def _global_hooks(
    bridge: object, deltas: Sequence[tuple[AccWriter, int, Tensor]], n_rows: int
) -> list[Hook]:
    """``δ`` added to each component's own output (one hook per output tensor)."""
    grouped: dict[str, list[tuple[AccWriter, int, Tensor]]] = {}
    for component, row, delta in deltas:
        name = _GLOBAL_HOOK[component.kind].format(layer=component.layer)
        grouped.setdefault(name, []).append((component, row, delta))
    hooks: list[Hook] = []
    for name, items in grouped.items():
        hooks.append((name, _global_adder(items)))
    return hooks


def _global_adder(items: Sequence[tuple[AccWriter, int, Tensor]]) -> Callable[..., Tensor]:
    def add(tensor: Tensor, hook: object) -> Tensor:
        changed = tensor.clone()
        for component, row, delta in items:
            if component.kind == HEAD:  # hook_result: batch pos head d
                changed[row, :, component.head] += delta.to(tensor)
            else:
                changed[row] += delta.to(tensor)
        return changed

    return add


@dataclass(frozen=True)
class AccEffectSummary(EffectSummary):
    """:class:`~ingest.interventions.edits.EffectSummary` of the attention and logit changes,
    plus the relative attention's: the clean mean, the linear prediction's mean, the measured
    change's and the control's means and spreads (control: over prompts × draws; NaN without a
    control), and ``relative_ratio`` = mean |ΔRA signal| / mean |ΔRA control|."""

    relative: float
    predicted_relative_mean: float
    signal_relative_mean: float
    signal_relative_std: float
    control_relative_mean: float
    control_relative_std: float
    relative_ratio: float


def summarize_acc(effects: AccEdgeEffects) -> AccEffectSummary:
    """The summary of :class:`AccEdgeEffects` (see :class:`AccEffectSummary`)."""
    shared = summarize(
        EdgeEffects(
            attention=effects.attention,
            logit_diff=effects.logit_diff,
            signal_attention=effects.signal_attention,
            signal_logit=effects.signal_logit,
            control_attention=effects.control_attention,
            control_logit=effects.control_logit,
        )
    )
    signal, control = effects.signal_relative.double(), effects.control_relative.double()
    if control.numel() == 0:  # the embedding: no component of its kind to compare with
        control_mean = control_std = ratio = math.nan
    else:
        control_mean, control_std = float(control.mean()), float(control.std(correction=0))
        control_abs = float(control.abs().mean())
        ratio = float(signal.abs().mean()) / control_abs if control_abs > 0 else math.inf
    return AccEffectSummary(
        **asdict(shared),
        relative=float(effects.relative.double().mean()),
        predicted_relative_mean=float(effects.predicted_relative.double().mean()),
        signal_relative_mean=float(signal.mean()),
        signal_relative_std=float(signal.std(correction=0)),
        control_relative_mean=control_mean,
        control_relative_std=control_std,
        relative_ratio=ratio,
    )
