"""Exactness of SAD on rotary, grouped-query, RMSNorm models against the model's own hooks.

Tolerance as for GPT-2: ``|Σ_k t_k − √r·score| ≤ 1e-4 · (|√r·score| + RMS of the head's
scores)`` on every causal pair of real tokens of every head and layer.
"""

from __future__ import annotations

import math

import torch

from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.reference import reference_firings
from ingest.decomposition.rotary import Rotary, unrotated_inputs
from ingest.decomposition.sad import (
    FiringRule,
    augment,
    decompose_layer,
    layer_projections,
    pair_scores,
)
from ingest.models.loading import LoadedModel
from ingest.tracing.upstream import signal_directions, trace_firings, upstream_contributions

RELATIVE_TOLERANCE = 1e-4
HOOKS = (
    "ln1.hook_normalized",
    "ln1.hook_scale",
    "hook_resid_pre",
    "attn.hook_attn_scores",
    "attn.hook_pattern",
    "attn.hook_result",
    "hook_mlp_out",
)


def random_run(model: LoadedModel, n_prompts: int = 3, n_pos: int = 14, layers=None):
    layers = range(model.n_layers) if layers is None else layers
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.bridge.cfg.d_vocab, (n_prompts, n_pos), generator=generator)
    wanted = {f"blocks.{layer}.{name}" for layer in layers for name in HOOKS} | {"hook_embed"}
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(
            tokens, names_filter=lambda name: name in wanted or name.endswith("embed.hook_out")
        )
    return tokens, cache


def max_relative_error(model: LoadedModel, cache, svd, layers) -> float:
    """Largest |Σ t_k − √r·score| / (|√r·score| + RMS) over every causal pair and head."""
    scale = math.sqrt(model.provenance.d_head)
    worst = 0.0
    for layer in layers:
        x_aug = augment(cache[f"blocks.{layer}.ln1.hook_normalized"].double())
        query_proj, key_proj = layer_projections(x_aug, svd, layer)
        total = pair_scores(query_proj, key_proj, svd.sigma[layer])
        expected = scale * cache[f"blocks.{layer}.attn.hook_attn_scores"].double()
        n_pos = expected.shape[-1]
        causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
        total, expected = total[..., causal], expected[..., causal]  # batch head pair
        rms = expected.pow(2).mean(dim=(0, 2), keepdim=True).sqrt()
        worst = max(worst, float(((total - expected).abs() / (expected.abs() + rms)).max()))
    return worst


def test_loader_takes_theta_from_the_hugging_face_config(tiny_llama: LoadedModel) -> None:
    """TransformerLens 4.3 would say 10,000; the config says 50,000."""
    assert tiny_llama.bridge.cfg.rotary_base == 50_000.0
    assert tiny_llama.provenance.rotary_base == 50_000.0
    assert tiny_llama.provenance.positional == "rotary"
    assert tiny_llama.provenance.n_kv_heads == 2


def test_terms_sum_to_scaled_attention_scores_tiny_llama(tiny_llama: LoadedModel) -> None:
    _, cache = random_run(tiny_llama)
    svd = model_qk_svd(tiny_llama.bridge)
    assert svd.rotary == Rotary(50_000.0, 16)
    assert max_relative_error(tiny_llama, cache, svd, range(tiny_llama.n_layers)) <= 1e-4


def test_wrong_theta_is_caught(tiny_llama: LoadedModel) -> None:
    """Feeding TransformerLens's default θ = 10,000 breaks exactness far beyond tolerance."""
    _, cache = random_run(tiny_llama)
    svd = model_qk_svd(tiny_llama.bridge, rotary=Rotary(10_000.0, 16))
    assert max_relative_error(tiny_llama, cache, svd, range(tiny_llama.n_layers)) > 1e-2


def test_engine_matches_reference_with_explicit_frame(tiny_llama: LoadedModel) -> None:
    """The fast path (rotated queries on frame coefficients) agrees with the slow per-pair loop
    on explicit unrotated-frame inputs x̂: same firings, same sparse sets."""
    _, cache = random_run(tiny_llama, n_prompts=2, n_pos=10)
    svd = model_qk_svd(tiny_llama.bridge)
    rule = FiringRule(min_attention=0.15)
    found = 0
    for layer in range(1, tiny_llama.n_layers):
        x = cache[f"blocks.{layer}.ln1.hook_normalized"].double()
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"].double()
        valid = torch.ones(x.shape[:2], dtype=torch.bool)
        engine = decompose_layer(x, pattern, valid, svd, layer, rule)
        assert svd.rotary is not None and svd.query_factor is not None
        assert svd.key_factor is not None
        x_query = unrotated_inputs(augment(x), svd.query_factor[layer], svd.rotary)
        x_key = unrotated_inputs(augment(x), svd.key_factor[layer], svd.rotary)
        reference = reference_firings(
            x, pattern, valid, svd.U[layer], svd.sigma[layer], svd.V[layer], layer,
            min_attention=0.15, x_query=x_query, x_key=x_key,
        )  # fmt: skip
        engine_rows = sorted(
            (
                int(engine.prompt[f]),
                int(engine.head[f]),
                int(engine.dest[f]),
                int(engine.src[f]),
                tuple(engine.sv_order[f, : engine.n_svs[f]].tolist()),
            )
            for f in range(len(engine))
        )
        reference_rows = sorted((r.prompt, r.head, r.dest, r.src, r.sparse_set) for r in reference)
        assert engine_rows == reference_rows
        found += len(engine_rows)
    assert found > 0


def test_writers_sum_to_side_total_tiny_llama(tiny_llama: LoadedModel) -> None:
    """Σ over every residual writer (embedding, heads, MLPs) of the contributions along the
    position's read direction equals the side total Σ_{k∈S} sign_k √σ_k (x̂·w_k), both sides;
    and each edge's per-vector parts sum to its weight."""
    _, cache = random_run(tiny_llama)
    svd = model_qk_svd(tiny_llama.bridge)
    layer = tiny_llama.n_layers - 1
    x = cache[f"blocks.{layer}.ln1.hook_normalized"].double()
    valid = torch.ones(x.shape[:2], dtype=torch.bool)
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"].double()
    firings = decompose_layer(x, pattern, valid, svd, layer, FiringRule(min_attention=0.15))
    assert len(firings) > 0
    embed_name = "hook_embed" if "hook_embed" in cache else "embed.hook_out"
    components = [cache[embed_name].double()[:, :, None]]
    for upstream in range(layer):
        components.append(cache[f"blocks.{upstream}.attn.hook_result"].double())
        components.append(cache[f"blocks.{upstream}.hook_mlp_out"].double()[:, :, None])
    writers = torch.cat(components, dim=2)  # batch pos component d
    resid = cache[f"blocks.{layer}.hook_resid_pre"].double()
    torch.testing.assert_close(writers.sum(2), resid, rtol=1e-5, atol=1e-5)
    scale = cache[f"blocks.{layer}.ln1.hook_scale"].double()
    query_proj, key_proj = layer_projections(augment(x), svd, layer)
    sqrt_sigma = svd.sigma[layer].sqrt()
    a_query, a_key = signal_directions(firings, svd)
    for direction, pos, proj in (
        (a_query, firings.dest, query_proj),
        (a_key, firings.src, key_proj),
    ):
        contributions = upstream_contributions(direction, writers, scale, firings.prompt, pos)
        rows = torch.arange(len(firings))
        per_vector = proj[firings.prompt, firings.head, pos]  # firing r
        in_set = torch.arange(per_vector.shape[-1])[None] < firings.n_svs[:, None]
        signs = firings.signs  # sign_k of the query side weights both sides (SAD convention)
        ordered = per_vector.gather(-1, firings.sv_order)
        weight = sqrt_sigma[firings.head].gather(-1, firings.sv_order)
        total = (signs * weight * ordered * in_set).sum(-1)
        torch.testing.assert_close(contributions.sum(-1), total[rows], rtol=1e-6, atol=1e-8)
    results = [cache[f"blocks.{n}.attn.hook_result"].double() for n in range(layer + 1)]
    scales = [cache[f"blocks.{n}.ln1.hook_scale"].double() for n in range(layer + 1)]
    edges = trace_firings(firings, svd, results, scales)
    assert len(edges) > 0
    torch.testing.assert_close(edges.parts.sum(-1), edges.weight, rtol=1e-6, atol=1e-8)


SMOLLM2_LAYERS = (1, 9, 20)


def test_terms_sum_to_scaled_attention_scores_smollm2(smollm2: LoadedModel) -> None:
    """SmolLM2-135M (30 layers, 9 query heads on 3 KV heads, θ = 100,000), three layers."""
    assert smollm2.bridge.cfg.rotary_base == 100_000.0
    assert smollm2.provenance.n_kv_heads == 3
    _, cache = random_run(smollm2, n_prompts=2, n_pos=16, layers=SMOLLM2_LAYERS)
    svd = model_qk_svd(smollm2.bridge)
    assert max_relative_error(smollm2, cache, svd, SMOLLM2_LAYERS) <= RELATIVE_TOLERANCE
    wrong = model_qk_svd(smollm2.bridge, rotary=Rotary(10_000.0, 64))
    assert max_relative_error(smollm2, cache, wrong, SMOLLM2_LAYERS) > 1e-2
