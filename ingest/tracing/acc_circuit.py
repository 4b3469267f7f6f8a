"""One batch through ACC: forward pass, firings, answer seeds and the traced graph below them.

ACC (:mod:`ingest.decomposition.acc`, :mod:`ingest.tracing.components`) is traced from the
answer, as the authors do:

1. the forward pass caches what every component writes (``hook_embed``, ``hook_pos_embed``,
   per layer ``attn.hook_pattern``, ``attn.hook_v``, ``hook_mlp_out``) and what every head and
   the unembedding read (``ln1.hook_normalized``, ``ln1.hook_scale``, ``ln_final.hook_scale``);
2. every head's firings, pairs attended above uniform (``A(i, j) ≥ 1/(i+1)``), are decomposed
   per side (:func:`~ingest.decomposition.acc.decompose_layer_acc`);
3. the IO − S logit difference at END is split over every component
   (:func:`~ingest.tracing.components.answer_contributions`); in prompts the model gets right,
   the head components carrying it, largest first, up to ``seed_fraction`` of it, are the
   *seeds*: pairs (END, t) of head (l, h), decomposed too when they are not firings;
4. from the seeds, layer by layer downwards, each firing to trace gets the edges of both its
   traced sides (:func:`~ingest.tracing.components.trace_acc_firings`); a head writer
   (m, h') through source token t at position p (the firing's dest on the destination side,
   its src on the source side) continues into the firing (m, h', p, t) when that pair is a
   firing. Embeddings, MLPs and attention biases are leaves.

One code path serves both families: the query/key inputs of a layer are its
``ln1.hook_normalized`` (RMSNorm's gain, like LayerNorm's, is folded into W_Q/W_K), and a
rotary model's per-position frame map lives in its :class:`~ingest.decomposition.acc.AccSVD`
(identity for GPT-2; see :mod:`ingest.decomposition.acc` and
:mod:`ingest.tracing.components`). Bias-free models get zero biases, grouped key/value heads are
expanded per query head, and the readers' normalisation says whether component outputs are
centred (LayerNorm) or not (RMSNorm). Memory: component contributions are
``rows × layers × heads × positions`` per side, so firings are traced in chunks of ``chunk``
rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from ingest.decomposition.acc import (
    AccFiringRule,
    AccFirings,
    AccSVD,
    acc_svd,
    decompose_layer_acc,
    decompose_pairs,
)
from ingest.decomposition.activations import model_rotary, stacked_bias
from ingest.decomposition.rotary import Rotary, check_full_rank_frame, expand_kv_heads
from ingest.models.loading import UnsupportedModelError
from ingest.sides import KEY_SIDE, QUERY_SIDE
from ingest.tracing.components import (
    HEAD,
    AnswerSeeds,
    ComponentEdges,
    UpstreamOutputs,
    answer_contributions,
    answer_seeds,
    trace_acc_firings,
    upstream_from_cache,
)

DEFAULT_SEED_FRACTION = 0.5
TRACE_CHUNK = 1024
_UNEMBED_INPUT = "unembed.hook_in"


def model_acc_svd(
    bridge: Any, dtype: torch.dtype | None = None, *, rotary: Rotary | None = None
) -> AccSVD:
    """Both sides' SVDs of every head of a processed bridge (float64, or cast to ``dtype``).

    Bias-free projections (Llama family) get explicit zero biases of shape (layer, head, r);
    grouped key heads are expanded to one per query head, so every query head has its own
    ``Ω_d`` and ``Ω_s``. Rotary models get their frame from ``bridge.cfg`` (as for SAD) unless
    ``rotary`` overrides it; ACC's rotary frame needs bias-free query/key maps.
    """
    cfg = bridge.cfg
    if rotary is None:
        rotary = model_rotary(cfg)
    with torch.no_grad():
        W_Q = bridge.W_Q
        W_K = expand_kv_heads(bridge.W_K, cfg.n_heads)
        b_Q = stacked_bias(bridge, "b_Q", W_Q)
        b_K = expand_kv_heads(stacked_bias(bridge, "b_K", bridge.W_K), cfg.n_heads)
        refuse_rotated_qk_biases(bridge, rotary)
        svd = acc_svd(W_Q.double(), b_Q.double(), W_K.double(), b_K.double(), rotary)
    if rotary is not None:
        frames = [svd.side(side).frame(f) for side in (0, 1) for f in (QUERY_SIDE, KEY_SIDE)]
        check_full_rank_frame(*(coefficients for _, coefficients in frames))
    return svd if dtype is None else svd.to(dtype)


def refuse_rotated_qk_biases(bridge: Any, rotary: Rotary | None) -> None:
    """Raise :class:`~ingest.models.loading.UnsupportedModelError` if the model has rotary
    positions (``rotary`` not None) and a non-zero query or key bias: ACC cannot split it."""
    if rotary is None:
        return
    with torch.no_grad():
        b_Q = stacked_bias(bridge, "b_Q", bridge.W_Q)
        b_K = stacked_bias(bridge, "b_K", bridge.W_K)
    if bool(b_Q.any()) or bool(b_K.any()):
        raise UnsupportedModelError(
            f"{bridge.cfg.model_name} has rotary positions and query/key biases: a rotated bias "
            "does not cancel in relative attention, so ACC cannot split it (SAD can: "
            "use --method sad)."
        )


def reads_centred(cfg: Any) -> bool:
    """Whether the model's normalisations subtract the mean (LayerNorm) or not (RMSNorm)."""
    return str(getattr(cfg, "normalization_type", "LN")).startswith("LN")


def output_biases(bridge: Any) -> Float[Tensor, "layer d"]:
    """``bridge.b_O``, or zeros of shape (layer, d_model) where attention has no output bias."""
    try:
        return bridge.b_O
    except AttributeError:
        return bridge.W_O.new_zeros((bridge.cfg.n_layers, bridge.cfg.d_model))


def acc_hook_names(n_layers: int) -> list[str]:
    """The cache entries ACC reads: component outputs, head inputs and scales."""
    names = ["hook_embed", "hook_pos_embed", "ln_final.hook_scale"]
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.ln1.hook_normalized",
            f"blocks.{layer}.ln1.hook_scale",
            f"blocks.{layer}.attn.hook_pattern",
            f"blocks.{layer}.attn.hook_v",
            f"blocks.{layer}.hook_mlp_out",
        ]
    return names


@dataclass(frozen=True)
class AccActivations:
    """One batch's forward pass as ACC reads it (see the module notes)."""

    x_query: list[Float[Tensor, "batch pos d"]]
    x_key: list[Float[Tensor, "batch pos d"]]
    patterns: list[Float[Tensor, "batch head dest src"]]
    scales: list[Float[Tensor, "batch pos 1"]]
    final_scale: Float[Tensor, "batch pos 1"]
    upstream: UpstreamOutputs
    end_logits: Float[Tensor, "batch vocab"]


@torch.inference_mode()
def run_acc_activations(
    bridge: Any, tokens: Int[Tensor, "batch pos"], end: Int[Tensor, " batch"]
) -> AccActivations:
    """Run ``bridge`` on right-padded ``tokens`` up to the unembedding's input, caching what ACC
    reads; the logits only at END (the same module the full run uses)."""
    device = bridge.cfg.device
    n_layers = bridge.cfg.n_layers
    names = set(acc_hook_names(n_layers))

    def stop(tensor: Tensor, *, hook: Any) -> None:
        raise StopAtLayerException(tensor)

    with bridge.hooks(fwd_hooks=[(_UNEMBED_INPUT, stop)]):
        final_residual, cache = bridge.run_with_cache(
            tokens.to(device), names_filter=lambda name: name in names
        )
    rows = torch.arange(tokens.shape[0], device=device)
    end_logits = bridge.unembed(final_residual[rows, end.to(device)][:, None, :])[:, 0]
    upstream = upstream_from_cache(
        cache, bridge.W_O, output_biases(bridge), n_layers, centred=reads_centred(bridge.cfg)
    )
    normalized = [cache[f"blocks.{m}.ln1.hook_normalized"] for m in range(n_layers)]
    return AccActivations(
        x_query=normalized,
        x_key=normalized,
        patterns=[cache[f"blocks.{m}.attn.hook_pattern"] for m in range(n_layers)],
        scales=[cache[f"blocks.{m}.ln1.hook_scale"] for m in range(n_layers)],
        final_scale=cache["ln_final.hook_scale"],
        upstream=upstream,
        end_logits=end_logits,
    )


@dataclass(frozen=True)
class AccTrace:
    """A batch's ACC result: every firing (seeds included), which were traced, the edges.

    ``traced[f]``: firing f was reached from a seed and its sides traced; ``seed_weight[f]``:
    its head component's share of the logit difference when f is a seed, else NaN.
    ``edges.firing`` indexes ``firings``. ``answer_by_kind[b]``: prompt b's logit difference
    (without ``b_U``) split by component kind, columns in :data:`COMPONENT_KINDS` order
    (embedding, attention biases, MLPs, heads).
    """

    firings: AccFirings
    traced: Bool[Tensor, " firing"]
    seed_weight: Float[Tensor, " firing"]
    edges: ComponentEdges
    seeds: AnswerSeeds
    logit_diff: Float[Tensor, " batch"]
    answer_by_kind: Float[Tensor, "batch kind"]


class _PairIndex:
    """Firing row of a (prompt, layer, head, dest, src) key, or −1."""

    def __init__(self, firings: AccFirings, shape: tuple[int, int, int, int]) -> None:
        self.shape = shape
        n_batch, n_layers, n_heads, n_pos = shape
        device = firings.prompt.device
        self.table = torch.full((n_batch * n_layers * n_heads * n_pos * n_pos,), -1, device=device)
        keys = self.key(firings.prompt, firings.layer, firings.head, firings.dest, firings.src)
        self.table[keys] = torch.arange(len(firings), device=device)

    def key(self, prompt: Tensor, layer: Tensor, head: Tensor, dest: Tensor, src: Tensor) -> Tensor:
        _, n_layers, n_heads, n_pos = self.shape
        return (((prompt * n_layers + layer) * n_heads + head) * n_pos + dest) * n_pos + src

    def find(
        self, prompt: Tensor, layer: Tensor, head: Tensor, dest: Tensor, src: Tensor
    ) -> Tensor:
        return self.table[self.key(prompt, layer, head, dest, src)]


def trace_acc_batch(
    activations: AccActivations,
    svd: AccSVD,
    valid: Bool[Tensor, "batch pos"],
    W_U: Float[Tensor, "d vocab"],
    io_token: Int[Tensor, " batch"],
    s_token: Int[Tensor, " batch"],
    end: Int[Tensor, " batch"],
    rule: AccFiringRule,
    *,
    edge_fraction: float = 0.7,
    seed_fraction: float = DEFAULT_SEED_FRACTION,
    chunk: int = TRACE_CHUNK,
) -> AccTrace:
    """Firings, seeds and the graph traced from the seeds (see the module notes); on CPU."""
    upstream = activations.upstream
    n_layers = upstream.n_layers
    n_batch, n_heads, n_pos = activations.patterns[0].shape[:3]
    valid = valid.to(activations.patterns[0].device)
    parts = [
        decompose_layer_acc(
            activations.x_query[m],
            activations.x_key[m],
            activations.patterns[m],
            valid,
            svd,
            m,
            rule,
        )
        for m in range(n_layers)
    ]
    firings = AccFirings.concat(parts)

    answer = answer_contributions(W_U, io_token, s_token, end, activations.final_scale, upstream)
    rows = torch.arange(n_batch, device=end.device)
    logit_diff = (
        activations.end_logits[rows, io_token.to(end.device)]
        - activations.end_logits[rows, s_token.to(end.device)]
    )
    seeds = answer_seeds(answer, logit_diff.to(answer.embed.dtype), end, seed_fraction)

    # seeds that are not firings (attended below uniform) are decomposed too
    index = _PairIndex(firings, (n_batch, n_layers, n_heads, n_pos))
    seed_rows = index.find(seeds.prompt, seeds.layer, seeds.head, seeds.dest, seeds.src)
    missing = seed_rows < 0
    if bool(missing.any()):
        extra = []
        for m in torch.unique(seeds.layer[missing]).tolist():
            pick = missing & (seeds.layer == m)
            extra.append(
                decompose_pairs(
                    activations.x_query[m],
                    activations.x_key[m],
                    activations.patterns[m],
                    svd,
                    m,
                    seeds.prompt[pick],
                    seeds.head[pick],
                    seeds.dest[pick],
                    seeds.src[pick],
                    rule.sparse_fraction,
                )
            )
        firings = AccFirings.concat([firings, *extra])
        index = _PairIndex(firings, (n_batch, n_layers, n_heads, n_pos))
        seed_rows = index.find(seeds.prompt, seeds.layer, seeds.head, seeds.dest, seeds.src)

    device = firings.prompt.device
    seed_weight = torch.full((len(firings),), float("nan"), dtype=answer.embed.dtype, device=device)
    seed_weight[seed_rows] = seeds.contribution.to(seed_weight.dtype)
    traced = torch.zeros(len(firings), dtype=torch.bool, device=device)
    traced[seed_rows] = True
    found: list[ComponentEdges] = []
    for m in range(n_layers - 1, -1, -1):
        rows_m = ((firings.layer == m) & traced).nonzero(as_tuple=True)[0]
        for start in range(0, rows_m.numel(), chunk):
            chunk_rows = rows_m[start : start + chunk]
            edges = trace_acc_firings(
                firings.select(chunk_rows), svd, upstream, activations.scales, edge_fraction
            )
            edges = ComponentEdges(
                chunk_rows[edges.firing],
                edges.side,
                edges.kind,
                edges.layer,
                edges.head,
                edges.src_pos,
                edges.pos,
                edges.weight,
            )
            found.append(edges)
            heads = (edges.kind == HEAD).nonzero(as_tuple=True)[0]
            if heads.numel():
                up = index.find(
                    firings.prompt[edges.firing[heads]],
                    edges.layer[heads],
                    edges.head[heads],
                    edges.pos[heads],
                    edges.src_pos[heads],
                )
                traced[up[up >= 0]] = True
    if found:
        all_edges = ComponentEdges.concat(found)
    else:
        empty = torch.zeros(0, dtype=torch.long)
        all_edges = ComponentEdges(empty, empty, empty, empty, empty, empty, empty, torch.zeros(0))
    return AccTrace(
        firings=firings,
        traced=traced,
        seed_weight=seed_weight,
        edges=all_edges,
        seeds=seeds,
        logit_diff=logit_diff,
        answer_by_kind=torch.stack(
            [
                answer.embed,
                answer.attn_bias.sum(-1),
                answer.mlp.sum(-1),
                answer.heads.sum((1, 2, 3)),
            ],
            dim=-1,
        ),
    )
