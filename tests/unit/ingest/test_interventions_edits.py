"""Interventions: exactness against TransformerLens hooks and plain linear algebra, and meaning
on the trained toy-ioi model (its name mover 3.1 is fed on the query side by 2.3 and 2.1)."""

from __future__ import annotations

import pytest
import torch

from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import FiringRule
from ingest.interventions.edits import (
    EdgeIntervention,
    clean_run,
    control_sets,
    edge_delta,
    firing_targets,
    intervention_hooks,
    measure_edges,
    project,
    run_capturing,
    signal_basis,
    summarize,
)
from ingest.models.loading import LoadedModel
from ingest.pipeline import BatchResult, process_batch
from ingest.prompts.ioi import generate_prompts, tokenize_prompts


@pytest.fixture(scope="module")
def toy_svd(toy_model: LoadedModel):
    return model_qk_svd(toy_model.bridge)


@pytest.fixture(scope="module")
def toy_batch(toy_model: LoadedModel, toy_svd) -> BatchResult:
    prompts = generate_prompts(24, "mixed", seed=0)
    return process_batch(toy_model, toy_svd, prompts, FiringRule(), trace=True)


def test_projection_is_orthogonal_so_removing_twice_equals_once(toy_svd) -> None:
    """P_S = B Bᵀ is symmetric and idempotent; B spans the centered c_k; o − P o ⟂ R_S."""
    vectors = toy_svd.U[3, 1]
    subset = [0, 3, 5, 9]
    basis = signal_basis(vectors, subset)
    d = vectors.shape[0] - 1
    assert torch.allclose(basis.T @ basis, torch.eye(len(subset), dtype=basis.dtype), atol=1e-12)
    centered = vectors[:d, subset].double()
    centered = centered - centered.mean(0)
    residual = centered - basis @ (basis.T @ centered)  # every c_k lies in span(B)
    assert residual.abs().max() < 1e-10
    # the raw d-slices are far from orthogonal: a naive Σ_k (c_k·o) c_k is not a projection
    gram = vectors[:d, subset].double().T @ vectors[:d, subset].double()
    assert (gram - torch.diag(gram.diagonal())).abs().max() > 1e-3
    output = torch.randn(5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    stacked = basis.expand(5, -1, -1)
    once = output - project(output, stacked)
    twice = once - project(once, stacked)
    assert torch.allclose(once, twice, atol=1e-12)
    assert project(once, stacked).abs().max() < 1e-12
    assert torch.allclose(project(output, stacked).sum(-1), torch.zeros(5, dtype=torch.float64))


def test_control_sets_avoid_the_sparse_set_and_are_seeded() -> None:
    draws = control_sets([1, 4, 7], 12, 4, torch.Generator().manual_seed(3))
    again = control_sets([1, 4, 7], 12, 4, torch.Generator().manual_seed(3))
    assert draws == again
    assert all(len(draw) == 3 and not {1, 4, 7} & set(draw) for draw in draws)
    assert len({tuple(draw) for draw in draws}) > 1


def _edge(
    model: LoadedModel,
    toy_batch: BatchResult,
    writer: tuple[int, int],
    basis,
    n: int,
    side: str = "q",
):
    """``writer`` → 3.1 on ``side`` (at END for q, at IO for k), first n 3.1 END→IO firings."""
    targets = firing_targets(toy_batch, 3, 1, "END", "IO")
    batch = tokenize_prompts(list(targets.prompts[:n]), model.tokenizer)
    dest = torch.tensor(targets.dest[:n])
    src = torch.tensor(targets.src[:n])
    pos = dest if side == "q" else src
    edge = EdgeIntervention(*writer, 3, 1, side, torch.arange(n), pos, basis.expand(n, -1, -1))
    return batch, edge, dest, src


@pytest.mark.parametrize("mode", ["global", "local"])
def test_empty_set_changes_nothing_exactly(toy_model, toy_batch, mode) -> None:
    bridge = toy_model.bridge
    batch, edge, _, _ = _edge(toy_model, toy_batch, (2, 3), torch.zeros(bridge.cfg.d_model, 0), 6)
    clean = clean_run(bridge, batch.tokens, [2], [3])
    hooks = intervention_hooks(bridge, [edge], clean, mode, factor=0.0)
    logits, captured = run_capturing(bridge, batch.tokens, ["blocks.3.attn.hook_pattern"], hooks)
    assert torch.equal(logits, clean.logits)
    assert torch.equal(captured["blocks.3.attn.hook_pattern"], clean.patterns[3])


@pytest.mark.parametrize(("side", "writer"), [("q", (2, 3)), ("k", (0, 0))])
def test_removing_all_vectors_of_a_side_locally_is_a_direct_path_ablation(
    toy_model, toy_svd, toy_batch, side, writer
) -> None:
    """All of 3.1's query-side singular vectors span col(W_Q) (key side: col(W_K)), so
    removing a writer's signal on all of them locally must equal subtracting the writer's whole
    output (÷ the LN scale) from 3.1's query input at END (key input at IO): q ← q − (o/s) W_Q,
    done here with a plain TransformerLens hook, and the pattern recomputed by hand from the
    cached head input."""
    bridge = toy_model.bridge
    vectors = toy_svd.U[3, 1] if side == "q" else toy_svd.V[3, 1]
    basis = signal_basis(vectors, range(vectors.shape[-1]))
    batch, edge, dest, src = _edge(toy_model, toy_batch, writer, basis, 6, side)
    clean = clean_run(bridge, batch.tokens, [writer[0]], [3])
    hooks = intervention_hooks(bridge, [edge], clean, "local", factor=0.0)
    logits, captured = run_capturing(bridge, batch.tokens, ["blocks.3.attn.hook_pattern"], hooks)

    rows, pos = torch.arange(len(dest)), edge.pos
    _, cache = bridge.run_with_cache(batch.tokens)
    path = (
        cache[f"blocks.{writer[0]}.attn.hook_result"][rows, pos, writer[1]]
        / cache["blocks.3.ln1.hook_scale"][rows, pos]
    )
    weights = bridge.W_Q[3, 1] if side == "q" else bridge.W_K[3, 1]

    def ablate(activation: torch.Tensor, hook) -> torch.Tensor:
        activation = activation.clone()
        activation[rows, pos, 1] -= path @ weights
        return activation

    expected_logits = bridge.run_with_hooks(
        batch.tokens, fwd_hooks=[(f"blocks.3.attn.hook_{side}", ablate)]
    )
    assert torch.allclose(logits, expected_logits, atol=1e-4)

    x = cache["blocks.3.ln1.hook_normalized"]
    x_changed = x.clone()
    x_changed[rows, pos] -= path
    x_query, x_key = (x_changed, x) if side == "q" else (x, x_changed)
    queries = x_query @ bridge.W_Q[3, 1] + bridge.b_Q[3, 1]
    keys = x_key @ bridge.W_K[3, 1] + bridge.b_K[3, 1]
    scores = queries @ keys.transpose(-1, -2) / bridge.cfg.d_head**0.5
    n = scores.shape[-1]
    scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    pattern = captured["blocks.3.attn.hook_pattern"][:, 1]
    assert torch.allclose(pattern, scores.softmax(-1), atol=1e-5)
    assert (pattern[rows, dest, src] - clean.patterns[3][rows, 1, dest, src]).abs().max() > 1e-3


def test_boost_adds_what_removal_subtracts(toy_model, toy_svd, toy_batch) -> None:
    basis = signal_basis(toy_svd.U[3, 1], [0, 1, 2])
    batch, edge, _, _ = _edge(toy_model, toy_batch, (2, 3), basis, 4)
    clean = clean_run(toy_model.bridge, batch.tokens, [2], [3])
    for mode in ("global", "local"):
        removed = edge_delta(edge, clean, mode, 0.0)
        assert torch.equal(edge_delta(edge, clean, mode, 2.0), -removed)
        assert removed.abs().max() > 0


@pytest.mark.parametrize("mode", ["global", "local"])
@pytest.mark.parametrize("writer", [(2, 3), (2, 1)])
def test_toy_name_mover_edges_beat_random_controls(
    toy_model, toy_svd, toy_batch, mode, writer
) -> None:
    """3.1's strongest query-side writers: removing their signal lowers 3.1's END→IO attention
    and changes the IO−S logit difference ≥ 5× more than removing random singular vectors
    (2.3's removal lowers it; 2.1's local removal moves it by a few hundredths either way)."""
    targets = firing_targets(toy_batch, 3, 1, "END", "IO", writer=(*writer, "q"))
    assert len(targets) >= 5
    effects = measure_edges(
        toy_model, toy_svd, targets, [writer], "q", mode=mode, n_controls=3, batch_size=8
    )
    summary = summarize(effects)
    assert summary.signal_attention_mean < 0
    if writer == (2, 3):
        assert summary.signal_logit_mean < 0
    assert summary.attention_ratio >= 5
    assert summary.logit_ratio >= 5
