"""Exactness of the decomposition on real models, against TransformerLens's own hooks."""

from __future__ import annotations

import math

import torch

from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.reference import reference_firings
from ingest.decomposition.sad import (
    FiringRule,
    augment,
    augmented_omega,
    decompose_layer,
    pair_terms,
    singular_projections,
)
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import generate_prompts, tokenize_prompts

RELATIVE_TOLERANCE = 1e-4


def cached_run(model: LoadedModel, n_prompts: int = 6, seed: int = 0):
    batch = tokenize_prompts(generate_prompts(n_prompts, "mixed", seed=seed), model.tokenizer)
    n_layers = model.n_layers
    wanted = {
        f"blocks.{layer}.{name}"
        for layer in range(n_layers)
        for name in (
            "ln1.hook_normalized",
            "ln1.hook_scale",
            "hook_resid_pre",
            "attn.hook_attn_scores",
            "attn.hook_pattern",
            "attn.hook_result",
            "hook_attn_out",
        )
    }
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(batch.tokens, names_filter=lambda n: n in wanted)
    return batch, cache


def test_terms_sum_to_scaled_attention_scores(any_model: LoadedModel) -> None:
    """Σ_k t_k(i, j) = √d_head · hook_attn_scores[i, j] for every head and causal real pair.

    Tolerance: |Σ_k t_k − √r·score| ≤ 1e-4 · (|√r·score| + RMS of the head's scores).
    """
    batch, cache = cached_run(any_model)
    svd = model_qk_svd(any_model.bridge)
    scale = math.sqrt(any_model.provenance.d_head)
    n_pos = batch.tokens.shape[1]
    causal = torch.ones(n_pos, n_pos, dtype=torch.bool).tril()
    real = batch.mask[:, :, None] & batch.mask[:, None, :] & causal
    for layer in range(any_model.n_layers):
        x_aug = augment(cache[f"blocks.{layer}.ln1.hook_normalized"]).double()
        terms = pair_terms(
            singular_projections(x_aug, svd.U[layer]),
            singular_projections(x_aug, svd.V[layer]),
            svd.sigma[layer],
        )
        hook = scale * cache[f"blocks.{layer}.attn.hook_attn_scores"].double()
        mask = real[:, None].expand_as(hook)
        total, expected = terms.sum(-1)[mask], hook[mask]
        rms = expected.pow(2).mean().sqrt()
        assert ((total - expected).abs() <= RELATIVE_TOLERANCE * (expected.abs() + rms)).all()


def test_svd_reconstructs_omega_of_every_head(any_model: LoadedModel) -> None:
    bridge = any_model.bridge
    svd = model_qk_svd(bridge)
    with torch.no_grad():
        weights = [w.double() for w in (bridge.W_Q, bridge.b_Q, bridge.W_K, bridge.b_K)]
    omega = augmented_omega(*weights)
    rebuilt = torch.einsum("lhdr,lhr,lher->lhde", svd.U, svd.sigma, svd.V)
    error = (rebuilt - omega).flatten(-2).norm(dim=-1) / omega.flatten(-2).norm(dim=-1)
    assert error.max() < 1e-10


def test_heads_read_residual_over_layernorm_scale(any_model: LoadedModel) -> None:
    """The tracing premise: x_t = resid_t / s_t, and head results sum to the attention output."""
    _, cache = cached_run(any_model)
    bridge = any_model.bridge
    for layer in range(any_model.n_layers):
        resid = cache[f"blocks.{layer}.hook_resid_pre"]
        centered = resid - resid.mean(-1, keepdim=True)
        normalized = cache[f"blocks.{layer}.ln1.hook_normalized"]
        torch.testing.assert_close(
            normalized, centered / cache[f"blocks.{layer}.ln1.hook_scale"], rtol=1e-4, atol=1e-5
        )
        heads_sum = cache[f"blocks.{layer}.attn.hook_result"].sum(2) + bridge.b_O[layer]
        torch.testing.assert_close(
            heads_sum, cache[f"blocks.{layer}.hook_attn_out"], rtol=1e-4, atol=1e-4
        )


def test_engine_matches_reference_on_model_activations(toy_model: LoadedModel) -> None:
    batch, cache = cached_run(toy_model, n_prompts=3, seed=11)
    svd = model_qk_svd(toy_model.bridge)
    rule = FiringRule()
    found = 0
    for layer in range(1, toy_model.n_layers):
        x = cache[f"blocks.{layer}.ln1.hook_normalized"].double()
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"].double()
        engine = decompose_layer(x, pattern, batch.mask, svd, layer, rule)
        reference = reference_firings(
            x, pattern, batch.mask, svd.U[layer], svd.sigma[layer], svd.V[layer], layer
        )
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
