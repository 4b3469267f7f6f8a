"""One forward pass per batch, keeping only the activations SAD reads.

Two API levels, as in the method authors' tooling: :func:`run_activations` runs the model on a
token batch; :func:`activations_from_cache` reads the same tensors out of an existing
TransformerLens cache (for callers that already ran ``run_with_cache``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.model_bridge.exceptions import StopAtLayerException

from ingest.decomposition.rotary import Rotary, check_full_rank_frame, expand_kv_heads
from ingest.decomposition.sad import QKSVD, FiringRule, Firings, decompose_layer, qk_svd


@dataclass(frozen=True)
class Activations:
    """Per-layer tensors of one batch; ``results``/``scales`` only when tracing needs them.

    ``normalized[l]`` is head input ``x = resid / s`` of layer l, ``patterns[l]`` its attention
    probabilities, ``results[l]`` each head's output written to the residual stream
    (``hook_result``) and ``scales[l]`` the LayerNorm scale ``s`` of layer l's input.
    ``end_logits[b]`` are the logits at one position per prompt (the ``at`` of
    :func:`run_activations`), when asked for.
    """

    normalized: list[Float[Tensor, "batch pos d"]]
    patterns: list[Float[Tensor, "batch head dest src"]]
    valid: Bool[Tensor, "batch pos"]
    end_logits: Float[Tensor, "batch vocab"] | None = None
    results: list[Float[Tensor, "batch pos head d"]] | None = None
    scales: list[Float[Tensor, "batch pos 1"]] | None = None


def hook_names(n_layers: int, with_results: bool) -> list[str]:
    """The cache entries SAD needs (decomposition only, or with tracing inputs)."""
    names = []
    for layer in range(n_layers):
        names += [f"blocks.{layer}.ln1.hook_normalized", f"blocks.{layer}.attn.hook_pattern"]
        if with_results:
            names += [f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.ln1.hook_scale"]
    return names


def activations_from_cache(
    cache: Any, n_layers: int, valid: Bool[Tensor, "batch pos"], with_results: bool = False
) -> Activations:
    """Pick the SAD inputs out of a TransformerLens activation cache."""

    def per_layer(name: str) -> list[Tensor]:
        return [cache[f"blocks.{layer}.{name}"] for layer in range(n_layers)]

    return Activations(
        normalized=per_layer("ln1.hook_normalized"),
        patterns=per_layer("attn.hook_pattern"),
        valid=valid,
        results=per_layer("attn.hook_result") if with_results else None,
        scales=per_layer("ln1.hook_scale") if with_results else None,
    )


UNEMBED_INPUT = "unembed.hook_in"


@torch.inference_mode()
def run_activations(
    bridge: Any,
    tokens: Int[Tensor, "batch pos"],
    valid: Bool[Tensor, "batch pos"],
    with_results: bool = False,
    logits_at: Int[Tensor, " batch"] | None = None,
) -> Activations:
    """Run ``bridge`` on right-padded ``tokens``; causal attention keeps real tokens unaffected.

    The unembedding ``W_U`` (d_model × vocab, GPT-2 small's largest matmul) is never applied
    to the whole batch: the run stops at the unembedding's input, the final residual
    ``r = ln_final(resid)`` of shape (batch, pos, d). With ``logits_at`` (one position per
    prompt), ``end_logits[b] = unembed(r[b, logits_at[b]])``, the same module the full run
    uses, so the values are identical to the full logits at those positions.
    """
    device = bridge.cfg.device
    names = set(hook_names(bridge.cfg.n_layers, with_results))
    with bridge.hooks(fwd_hooks=[(UNEMBED_INPUT, _stop_before_unembedding)]):
        final_residual, cache = bridge.run_with_cache(
            tokens.to(device), names_filter=lambda name: name in names
        )
    activations = activations_from_cache(cache, bridge.cfg.n_layers, valid.to(device), with_results)
    if logits_at is None:
        return activations
    rows = torch.arange(tokens.shape[0], device=device)
    chosen = final_residual[rows, logits_at.to(device)]
    return replace(activations, end_logits=bridge.unembed(chosen[:, None, :])[:, 0])


def _stop_before_unembedding(tensor: Tensor, *, hook: Any) -> None:
    """End the forward pass at the unembedding's input, handing that tensor back.

    ``StopAtLayerException`` is the bridge's own early-stop mechanism (``stop_at_layer``
    raises it from a hook); ``run_with_cache`` returns the tensor it carries.
    """
    raise StopAtLayerException(tensor)


def model_qk_svd(
    bridge: Any, dtype: torch.dtype = torch.float64, *, rotary: Rotary | None = None
) -> QKSVD:
    """:func:`~ingest.decomposition.sad.qk_svd` of every head of a processed bridge.

    Computed in float64; pass the model's dtype to get factors ready for batch computations.
    Bias-free projections get zero biases; grouped key heads are expanded to one per query
    head. Rotary models get their frame from ``bridge.cfg`` (``rotary_base``, which the loader
    sets from the Hugging Face config, and ``rotary_dim``) unless ``rotary`` overrides it.
    """
    cfg = bridge.cfg
    if rotary is None:
        rotary = model_rotary(cfg)
    with torch.no_grad():
        W_Q = bridge.W_Q
        W_K = expand_kv_heads(bridge.W_K, cfg.n_heads)
        b_Q = stacked_bias(bridge, "b_Q", W_Q)
        b_K = expand_kv_heads(stacked_bias(bridge, "b_K", bridge.W_K), cfg.n_heads)
        svd = qk_svd(W_Q, b_Q, W_K, b_K, rotary=rotary)
    if rotary is not None:
        assert svd.query_coef is not None and svd.key_coef is not None
        check_full_rank_frame(svd.query_coef, svd.key_coef)
    return svd.to(dtype)


def model_rotary(cfg: Any) -> Rotary | None:
    """The bridge config's RoPE (``None`` for absolute or no positions)."""
    if getattr(cfg, "positional_embedding_type", "standard") != "rotary":
        return None
    dim = getattr(cfg, "rotary_dim", None) or cfg.d_head
    return Rotary(theta=float(cfg.rotary_base), dim=int(dim))


def stacked_bias(bridge: Any, name: str, weights: Tensor) -> Tensor:
    """``bridge.b_Q``/``b_K``, or zeros of shape (layer, head, r) and the weights' dtype where the
    projection has no bias (Llama family)."""
    try:
        return getattr(bridge, name)
    except AttributeError:
        return weights.new_zeros(weights.shape[:-2] + weights.shape[-1:])


def decompose_activations(activations: Activations, svd: QKSVD, rule: FiringRule) -> Firings:
    """Firings and sparse sets of every head of every layer for one batch."""
    return Firings.concat(
        [
            decompose_layer(x, pattern, activations.valid, svd, layer, rule)
            for layer, (x, pattern) in enumerate(
                zip(activations.normalized, activations.patterns, strict=True)
            )
        ]
    )
