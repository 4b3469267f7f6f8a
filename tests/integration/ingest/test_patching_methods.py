"""Patching scores against brute-force activation patching on tiny random GPT-2s (float64).

EAP (TransformerLens's ``attribution_patch``) must be the derivative of the exact edge patch;
the gradient implementation that fills TransformerLens's gaps (EAP-IG, grouped-query
attention) must equal it at one step and satisfy completeness with many; ``path`` must be the
exact edge patch itself.
"""

from __future__ import annotations

import pytest
import torch

from ingest.models.loading import LoadedModel, random_gpt2
from ingest.patching.exact import faithfulness, pair_run, patch_edge
from ingest.patching.graph import LOGIT, edge_mask, readers, writers
from ingest.patching.methods import gradient_scores, path_scores, tl_eap_scores
from ingest.prompts.ioi import PromptBatch, generate_prompts, tokenize_prompts


def _double(model: LoadedModel) -> LoadedModel:
    model.bridge.to(torch.float64)
    return model


@pytest.fixture(scope="module")
def small() -> LoadedModel:
    return _double(random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64))


@pytest.fixture(scope="module")
def smaller() -> LoadedModel:
    return _double(random_gpt2(seed=2, n_layers=2, n_heads=2, d_model=32))


def _pair(model: LoadedModel, n: int) -> tuple[PromptBatch, PromptBatch]:
    prompts = generate_prompts(n, "mixed", seed=3)
    return (
        tokenize_prompts(prompts, model.tokenizer),
        tokenize_prompts(prompts, model.tokenizer, corrupted=True),
    )


def test_eap_is_the_derivative_of_the_exact_edge_patch(small: LoadedModel) -> None:
    clean, corrupt = _pair(small, 2)
    scores = tl_eap_scores(small.bridge, clean, corrupt)
    run = pair_run(small.bridge, clean, corrupt)
    ws, rs = writers(3, 4), readers(3, 4)
    by_id = {(r.id, r.side): i for i, r in enumerate(rs)}
    w_of = {w.id: i for i, w in enumerate(ws)}
    edges = [
        ("embed", ("0.1", "q")), ("0.2", ("1.3", "k")), ("1.0", ("2.1", "v")),
        ("mlp0", ("2.2", "q")), ("1.1", ("mlp1", "in")), ("2.3", (LOGIT, "in")),
        ("mlp2", (LOGIT, "in")),
    ]  # fmt: skip
    eps = 1e-4
    for writer, reader in edges:
        w, r = ws[w_of[writer]], rs[by_id[reader]]
        up = patch_edge(small.bridge, run, w, r, eps)
        down = patch_edge(small.bridge, run, w, r, -eps)
        derivative = float(((up - down) / (2 * eps)).sum())
        assert scores[w_of[writer], by_id[reader]].item() == pytest.approx(
            derivative, rel=1e-5, abs=1e-10
        ), (writer, reader)


def test_gradient_scores_equal_transformer_lens_eap_at_one_step(small: LoadedModel) -> None:
    clean, corrupt = _pair(small, 3)
    ours = gradient_scores(small.bridge, clean, corrupt, steps=1)
    theirs = tl_eap_scores(small.bridge, clean, corrupt)
    mask = edge_mask(3, 4)
    assert torch.isnan(ours[~mask]).all() and torch.isnan(theirs[~mask]).all()
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-9, atol=1e-12)


def test_eap_ig_embedding_edges_are_complete(small: LoadedModel) -> None:
    """Σ over the embedding's edges of EAP-IG is the integrated gradient of LD in the token
    embedding, which sums to LD(clean) − LD(corrupted) as the steps grow."""
    clean, corrupt = _pair(small, 2)
    run = pair_run(small.bridge, clean, corrupt)
    gap = float((run.clean_ld - run.corrupt_ld).sum())
    ig = gradient_scores(small.bridge, clean, corrupt, steps=64)[0]
    assert float(ig[~torch.isnan(ig)].sum()) == pytest.approx(gap, rel=1e-2)


def test_path_scores_are_the_exact_edge_patch(smaller: LoadedModel) -> None:
    clean, corrupt = _pair(smaller, 2)
    scores = path_scores(smaller.bridge, clean, corrupt)
    run = pair_run(smaller.bridge, clean, corrupt)
    ws, rs = writers(2, 2), readers(2, 2)
    # TransformerLens keeps each patched metric in a float32 tensor: a few float32 ulps of
    # the metric per prompt.
    ulps = len(clean) * 4 * torch.finfo(torch.float32).eps * float(run.corrupt_ld.abs().max())
    checked = 0
    for w, writer in enumerate(ws):
        for r, reader in enumerate(rs):
            if writer.kind != "head" or reader.kind == "mlp":
                assert torch.isnan(scores[w, r]), (writer, reader)
                continue
            if reader.kind == "head" and reader.layer <= writer.layer:  # type: ignore[operator]
                continue
            exact = float((patch_edge(smaller.bridge, run, writer, reader) - run.corrupt_ld).sum())
            assert scores[w, r].item() == pytest.approx(exact, rel=1e-7, abs=ulps)
            checked += 1
    assert checked == 2 * 2 * 3 + 4  # head → later head (q, k, v), head → logit


def test_faithfulness_of_all_heads_is_one_and_of_none_zero(small: LoadedModel) -> None:
    clean, corrupt = _pair(small, 3)
    run = pair_run(small.bridge, clean, corrupt)
    heads = {f"{layer}.{head}" for layer in range(3) for head in range(4)}
    assert faithfulness(small.bridge, [run], heads).recovered == pytest.approx(1.0)
    assert faithfulness(small.bridge, [run], set()).recovered == pytest.approx(0.0, abs=1e-9)
