"""Patching scores against brute-force activation patching on tiny random GPT-2s (float64),
a tiny random Llama with grouped-query attention (float64) and SmolLM2-135M.

EAP (TransformerLens's ``attribution_patch``) must be the derivative of the exact edge patch;
the gradient implementation that fills TransformerLens's gaps (EAP-IG, grouped-query
attention) must equal it at one step, be that derivative under GQA, order SmolLM2's edges as
exact patching does, and satisfy completeness with many steps; ``path`` must be the exact edge
patch itself; faithfulness must equal TransformerLens's ``faithfulness``.
"""

from __future__ import annotations

import pytest
import torch

from ingest.models.loading import LoadedModel, random_gpt2, random_llama
from ingest.patching.exact import PairRun, faithfulness, pair_run, patch_edge
from ingest.patching.graph import LOGIT, Reader, Writer, edge_mask, readers, writers
from ingest.patching.methods import (
    batch_scores,
    gradient_scores,
    path_scores,
    tl_eap_scores,
    uses_gqa,
)
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


# ----- grouped-query attention: what TransformerLens refuses, filled by our gradients ---------


def _derivative(model: LoadedModel, run: PairRun, writer: Writer, reader: Reader, eps: float):
    up = patch_edge(model.bridge, run, writer, reader, eps).double()
    down = patch_edge(model.bridge, run, writer, reader, -eps).double()
    return float(((up - down) / (2 * eps)).sum())


@pytest.fixture(scope="module")
def gqa() -> LoadedModel:
    return _double(random_llama(seed=4, n_layers=3, n_heads=4, n_kv_heads=2))


def test_gqa_eap_is_the_derivative_of_the_exact_edge_patch(gqa: LoadedModel) -> None:
    """Under GQA ``eap`` is our gradient implementation; a writer's edge into a shared key or
    value input is the derivative of patching that shared input (every head of its group)."""
    assert uses_gqa(gqa.bridge)
    with pytest.raises(ValueError, match=r"\(GQA/MQA\)"):  # what we fill in
        tl_eap_scores(gqa.bridge, *_pair(gqa, 1))
    clean, corrupt = _pair(gqa, 2)
    scores = batch_scores(gqa.bridge, clean, corrupt, "eap")
    run = pair_run(gqa.bridge, clean, corrupt)
    ws, rs = writers(3, 4), readers(3, 4)
    w_of = {w.id: i for i, w in enumerate(ws)}
    r_of = {(r.id, r.side): i for i, r in enumerate(rs)}
    edges = [
        ("embed", ("1.1", "q")), ("0.2", ("1.3", "k")), ("0.1", ("2.0", "v")),
        ("1.0", ("2.1", "k")), ("mlp0", ("2.2", "v")), ("1.3", ("mlp1", "in")),
        ("2.3", (LOGIT, "in")),
    ]  # fmt: skip
    for writer, reader in edges:
        w, r = w_of[writer], r_of[reader]
        # The Llama bridge keeps float32 rounding (~1e-7 on LD) even cast to float64: a step
        # of 1e-2 (truncation O(1e-4²)-small) instead of 1e-4 keeps it at ~5e-6.
        expected = _derivative(gqa, run, ws[w], rs[r], 1e-2)
        assert scores[w, r].item() == pytest.approx(expected, rel=1e-3, abs=1e-5), (
            writer,
            reader,
        )
    # heads 2 and 3 of a layer share key/value head 1: the same edge score on k and v
    for writer, side in (("0.1", "k"), ("1.2", "v")):
        assert (
            scores[w_of[writer], r_of[("2.2", side)]] == scores[w_of[writer], r_of[("2.3", side)]]
        )


def test_gqa_eap_on_smollm2_ranks_edges_as_exact_patching_does(smollm2: LoadedModel) -> None:
    """SmolLM2-135M (9 query heads on 3 key/value heads, float32), 2 prompts: on edges from
    the strongest to the weak, EAP is the linearised effect of patching the edge (central
    difference) and orders the edges as the exact patch does."""
    assert uses_gqa(smollm2.bridge)
    prompts = generate_prompts(2, "mixed", seed=3, tokenizer=smollm2.tokenizer)
    clean = tokenize_prompts(prompts, smollm2.tokenizer, smollm2.prepend_bos)
    corrupt = tokenize_prompts(prompts, smollm2.tokenizer, smollm2.prepend_bos, corrupted=True)
    scores = batch_scores(smollm2.bridge, clean, corrupt, "eap")
    run = pair_run(smollm2.bridge, clean, corrupt)
    cfg = smollm2.bridge.cfg
    ws, rs = writers(cfg.n_layers, cfg.n_heads), readers(cfg.n_layers, cfg.n_heads)
    head_edges = sorted(
        (
            (abs(float(scores[w, r])), w, r)
            for w, writer in enumerate(ws)
            for r, reader in enumerate(rs)
            if writer.kind == "head" and reader.kind != "mlp" and not torch.isnan(scores[w, r])
        ),
        reverse=True,
    )
    chosen = [head_edges[i] for i in (0, 2, 10, 30, 100, 300)]
    eap, linear, exact = [], [], []
    for _, w, r in chosen:
        eap.append(float(scores[w, r]))
        linear.append(_derivative(smollm2, run, ws[w], rs[r], 1e-2))
        patched = patch_edge(smollm2.bridge, run, ws[w], rs[r]).double()
        exact.append(float((patched - run.corrupt_ld.double()).sum()))
    # float32 forwards: the central difference carries ~1e-4 of rounding
    assert eap == pytest.approx(linear, rel=1e-2, abs=1e-3)
    # exact patching is not linear: the same signs, and the same order up to one swap
    assert [e > 0 for e in eap] == [x > 0 for x in exact]
    assert _spearman(eap, exact) >= 0.9


def _spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of |a| and |b| (no ties)."""
    n = len(a)
    ra, rb = _ranks(a), _ranks(b)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def _ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: -abs(values[i]))
    return [order.index(i) for i in range(len(values))]


# ----- faithfulness against TransformerLens's -------------------------------------------------


def test_faithfulness_equals_transformer_lens_faithfulness_on_toy_ioi(
    toy_model: LoadedModel,
) -> None:
    """Ours (heads outside the circuit given their corrupted output, batched) against
    TransformerLens 4.3's ``faithfulness`` with every edge out of those heads removed, one
    prompt pair at a time."""
    from transformer_lens.tools.analysis.attribution_patching import (
        EdgeAttributionConfig,
        attribution_patch,
    )
    from transformer_lens.tools.analysis.attribution_patching import (
        faithfulness as tl_faithfulness,
    )

    circuit = {"3.1", "2.3", "0.2", "1.1"}
    prompts = generate_prompts(3, "mixed", seed=5)
    device = toy_model.bridge.cfg.device
    for prompt in prompts:
        clean = tokenize_prompts([prompt], toy_model.tokenizer, toy_model.prepend_bos)
        corrupt = tokenize_prompts([prompt], toy_model.tokenizer, toy_model.prepend_bos, True)
        ours = faithfulness(toy_model.bridge, [pair_run(toy_model.bridge, clean, corrupt)], circuit)
        end, io, s = int(clean.roles["END"][0]), int(clean.io_token[0]), int(clean.s_token[0])

        def metric(logits: torch.Tensor, end: int = end, io: int = io, s: int = s):
            return logits[0, end, io] - logits[0, end, s]

        tokens = clean.tokens.to(device), corrupt.tokens.to(device)
        graph = attribution_patch(
            toy_model.bridge, *tokens, metric, EdgeAttributionConfig(granularity="edge")
        ).edge_scores
        kept = [
            (writer, reader)
            for writer, reader in graph
            if writer.kind != "attn_head_out" or f"{writer.layer}.{writer.head}" in circuit
        ]
        assert len(kept) < len(graph)
        theirs = tl_faithfulness(toy_model.bridge, *tokens, metric, kept)
        assert ours.clean == pytest.approx(theirs.full_metric, rel=1e-5)
        assert ours.corrupt == pytest.approx(theirs.corrupt_metric, rel=1e-5)
        assert ours.recovered == pytest.approx(theirs.recovered, rel=1e-4, abs=1e-5)
