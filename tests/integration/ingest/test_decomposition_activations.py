"""The forward pass SAD runs: the unembedding only where logits are needed, and on a GPU."""

from __future__ import annotations

import pytest
import torch

from ingest.decomposition.activations import hook_names, run_activations
from ingest.models.loading import LoadedModel, random_gpt2
from ingest.prompts.ioi import generate_prompts, tokenize_prompts


def test_end_logits_equal_the_full_forward_at_end(any_model: LoadedModel) -> None:
    """Logits at END from the stopped run equal the full run's logits at END (same module)."""
    batch = tokenize_prompts(generate_prompts(5, "mixed", seed=2), any_model.tokenizer)
    end = batch.roles["END"]
    activations = run_activations(any_model.bridge, batch.tokens, batch.mask, logits_at=end)
    with torch.inference_mode():
        full = any_model.bridge(batch.tokens)
    assert activations.end_logits is not None
    torch.testing.assert_close(activations.end_logits, full[torch.arange(5), end])


def test_the_cache_is_the_full_runs_cache(tiny_model: LoadedModel) -> None:
    batch = tokenize_prompts(generate_prompts(3, "mixed", seed=1), tiny_model.tokenizer)
    activations = run_activations(tiny_model.bridge, batch.tokens, batch.mask, with_results=True)
    names = set(hook_names(tiny_model.n_layers, with_results=True))
    with torch.inference_mode():
        _, cache = tiny_model.bridge.run_with_cache(batch.tokens, names_filter=names.__contains__)
    assert activations.end_logits is None
    assert activations.results is not None and activations.scales is not None
    for layer in range(tiny_model.n_layers):
        prefix = f"blocks.{layer}."
        torch.testing.assert_close(
            activations.normalized[layer], cache[prefix + "ln1.hook_normalized"]
        )
        torch.testing.assert_close(activations.patterns[layer], cache[prefix + "attn.hook_pattern"])
        torch.testing.assert_close(activations.results[layer], cache[prefix + "attn.hook_result"])
        torch.testing.assert_close(activations.scales[layer], cache[prefix + "ln1.hook_scale"])
    assert not tiny_model.bridge.hook_dict["unembed.hook_in"].fwd_hooks  # stop hook removed


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_forward_matches_cpu() -> None:
    cpu = random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64)
    gpu = random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64, device="cuda")
    batch = tokenize_prompts(generate_prompts(4, "mixed", seed=0), cpu.tokenizer)
    end = batch.roles["END"]
    on_cpu = run_activations(cpu.bridge, batch.tokens, batch.mask, True, logits_at=end)
    on_gpu = run_activations(gpu.bridge, batch.tokens, batch.mask, True, logits_at=end)
    assert on_gpu.end_logits is not None and on_gpu.end_logits.device.type == "cuda"
    assert on_cpu.end_logits is not None
    torch.testing.assert_close(on_gpu.end_logits.cpu(), on_cpu.end_logits, rtol=1e-4, atol=1e-4)
    for layer in range(cpu.n_layers):
        torch.testing.assert_close(
            on_gpu.patterns[layer].cpu(), on_cpu.patterns[layer], rtol=1e-4, atol=1e-5
        )
