"""One ACC batch end to end on the tiny random Llama (rotary, grouped-query, RMSNorm, no biases)."""

from __future__ import annotations

from dataclasses import replace

import torch

from ingest.decomposition.acc import AccFiringRule
from ingest.models.loading import LoadedModel
from ingest.pipeline import process_acc_batch
from ingest.prompts.ioi import generate_prompts, tokenize_prompts
from ingest.tracing.acc_circuit import model_acc_svd
from ingest.tracing.components import ATTN_BIAS, EMBED, HEAD, MLP


def test_an_acc_batch_traces_a_llama_model(tiny_llama: LoadedModel) -> None:
    prompts = generate_prompts(6, "mixed", seed=1)
    svd = model_acc_svd(tiny_llama.bridge, dtype=tiny_llama.bridge.cfg.dtype)
    result = process_acc_batch(tiny_llama, svd, prompts, AccFiringRule())
    trace = result.trace
    assert len(trace.firings) > 0 and bool(trace.traced.any())
    assert len(trace.edges) > 0
    kinds = set(trace.edges.kind.tolist())
    assert HEAD in kinds and kinds <= {EMBED, ATTN_BIAS, MLP, HEAD}
    # no output bias: no attention-bias component carries anything
    assert not (trace.edges.kind == ATTN_BIAS).any()
    assert not trace.answer_by_kind[:, ATTN_BIAS].any()
    # the answer's split by kind adds up to the model's logit difference (b_U is zero here)
    assert not tiny_llama.bridge.b_U.any()
    total = trace.answer_by_kind.double().sum(-1)
    expected = trace.logit_diff.double()
    assert float((total - expected).abs().max()) <= 1e-4 * float(expected.abs().max())


def test_an_acc_batch_follows_the_models_bos_setting(tiny_llama: LoadedModel) -> None:
    """SmolLM2's tokenizer adds no BOS: ACC must see the same tokens as SAD does."""
    prompts = generate_prompts(2, "mixed", seed=2)
    without_bos = replace(tiny_llama, prepend_bos=False)
    svd = model_acc_svd(tiny_llama.bridge, dtype=tiny_llama.bridge.cfg.dtype)
    result = process_acc_batch(without_bos, svd, prompts, AccFiringRule())
    expected = tokenize_prompts(prompts, tiny_llama.tokenizer, prepend_bos=False)
    assert torch.equal(result.batch.tokens, expected.tokens)
