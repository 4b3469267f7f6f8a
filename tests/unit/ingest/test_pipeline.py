"""The job's one entry point, :func:`ingest.pipeline.trace_run`, on a tiny random GPT-2."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.alignment import aligned_pairs, read_directions
from ingest.models.loading import LoadedModel, random_gpt2
from ingest.pipeline import IngestConfig, default_batch_size, model_part, trace_run
from ingest.prompts.ioi import generate_prompts

CONFIG = IngestConfig(n_prompts=7, batch_size=3, seed=2)


@pytest.fixture(scope="module")
def small_model() -> LoadedModel:
    return random_gpt2(seed=1, n_layers=2, n_heads=2, d_model=32)


def test_trace_run_yields_every_batch_in_order_with_its_marker(small_model: LoadedModel) -> None:
    svd = model_qk_svd(small_model.bridge, dtype=small_model.bridge.cfg.dtype)
    batches = list(trace_run(small_model, svd, CONFIG, "run-x"))

    assert [b.index for b in batches] == [0, 1, 2]
    assert [b.n_prompts for b in batches] == [3, 3, 1]
    expected = generate_prompts(
        CONFIG.n_prompts, CONFIG.prompt_type, seed=CONFIG.seed, tokenizer=small_model.tokenizer
    )
    for batch in batches:
        assert batch.records is not None
        assert batch.records.done is not None
        assert (batch.records.done.run_id, batch.records.done.index) == ("run-x", batch.index)
        first = batch.index * CONFIG.batch_size
        assert [p.idx for p in batch.records.prompts] == list(range(first, first + batch.n_prompts))
        assert [p.text for p in batch.records.prompts] == [
            p.text for p in expected[first : first + batch.n_prompts]
        ]
        assert {"forward", "decompose", "trace", "records"} <= set(batch.seconds)


def test_trace_run_computes_nothing_for_skipped_batches(small_model: LoadedModel) -> None:
    svd = model_qk_svd(small_model.bridge, dtype=small_model.bridge.cfg.dtype)
    full = {b.index: b.records for b in trace_run(small_model, svd, CONFIG, "run-x")}
    resumed = list(trace_run(small_model, svd, CONFIG, "run-x", skip={0, 2}))

    assert [(b.index, b.records is None) for b in resumed] == [(0, True), (1, False), (2, True)]
    assert [b.n_prompts for b in resumed] == [3, 3, 1]
    assert resumed[1].seconds and not resumed[0].seconds
    # the batch computed on resume equals the same batch of an uninterrupted run
    assert resumed[1].records == full[1]


ACC_CONFIG = IngestConfig(n_prompts=12, batch_size=6, seed=2, method="acc")


def test_the_method_is_part_of_the_run_identity_and_sad_ids_are_unchanged() -> None:
    sad = IngestConfig()
    assert sad.method_params() == {"method": "sad", **asdict(sad.rule), "edge_fraction": 0.7}
    acc = IngestConfig(method="acc")
    assert acc.method_params()["method"] == "acc"
    assert acc.default_run_id("gpt2") != sad.default_run_id("gpt2")
    with pytest.raises(ValueError, match="unknown method"):
        IngestConfig(method="other")


def test_acc_trace_run_yields_acc_firings_and_component_edges(small_model: LoadedModel) -> None:
    svd = model_qk_svd(small_model.bridge, dtype=small_model.bridge.cfg.dtype)
    batches = list(trace_run(small_model, svd, ACC_CONFIG, "run-acc"))
    firings = [f for b in batches if b.records for f in b.records.firings]
    edges = [e for b in batches if b.records for e in b.records.edges]
    assert firings and edges
    assert {f.method for f in firings} == {"acc"}
    keys = {f.key for f in firings}
    for f in firings:
        assert f.sparse_set == ()
        assert f.dest_total is not None and f.query_bias is not None
        assert f.dest_total + f.query_bias == pytest.approx(f.score, abs=1e-5)
        assert f.sparse_source is not None and len(f.sparse_source) == f.n_svs
        assert f.sparse_dest is not None and len(f.sparse_dest) == f.n_svs_dest
    seeds = [f for f in firings if f.seed_weight is not None]
    assert seeds and all(f.dest_role == "END" and f.seed_weight > 0 for f in seeds)
    kinds = {e.writer_kind for e in edges}
    assert "head" in kinds and kinds <= {"head", "mlp", "attn_bias", "embed"}
    for e in edges:
        assert e.firing in keys
        assert (e.writer_pos is not None) == (e.writer_kind == "head")
        assert (e.writer_layer is None) == (e.writer_kind == "embed")
        assert e.side in {"q", "k"}
        if e.writer_kind != "embed":
            assert e.writer_layer is not None and e.writer_layer < e.firing.layer
    # every traced firing below the seeds is reached through a head edge at its position
    reached = {
        (e.firing.prompt, e.writer_layer, e.writer_head, e.pos, e.writer_pos)
        for e in edges
        if e.writer_kind == "head"
    }
    for f in firings:
        if f.seed_weight is None:
            assert (f.prompt, f.layer, f.head, f.dest, f.src) in reached
    components = {c.id for b in batches if b.records for c in b.records.components}
    assert components == {"logit_direction"}


def test_a_shared_model_part_traces_what_each_batch_computing_its_own_does(
    small_model: LoadedModel,
) -> None:
    """The part a run's shards share (:func:`model_part`): ACC batches traced with its SVDs
    equal those of a run that computes them itself, its ALIGNED records are the pairs of the
    SAD SVD, and it serves only configs with its method and ALIGNED parameters."""
    part = model_part(small_model, ACC_CONFIG)
    assert part.acc is not None and part.serves(ACC_CONFIG)
    assert not part.serves(CONFIG) and not part.serves(replace(ACC_CONFIG, align_top_k=1))
    assert part.serves(replace(ACC_CONFIG, n_prompts=3, seed=9))  # the prompts do not matter
    own = model_qk_svd(small_model.bridge, dtype=small_model.bridge.cfg.dtype)
    shared = list(trace_run(small_model, part.svd, ACC_CONFIG, "run-acc", acc=part.acc))
    computed = list(trace_run(small_model, own, ACC_CONFIG, "run-acc"))
    assert [b.records for b in shared] == [b.records for b in computed]
    pairs = aligned_pairs(read_directions(own), ACC_CONFIG.align_threshold, ACC_CONFIG.align_top_k)
    assert len(part.aligned) == len(pairs) > 0


def test_the_default_batch_keeps_one_transaction_within_its_relationship_budget() -> None:
    """b is the largest power of two ≤ 32 with b · 50 relationships · heads ≤ 2^18 (at least 1):
    toy-ioi (16 heads) and GPT-2 small (144) keep 32, SmolLM2-135M (270) gets 16."""
    assert [default_batch_size(h) for h in (16, 144, 270)] == [32, 32, 16]
    for heads in range(1, 6000, 7):
        b = default_batch_size(heads)
        assert 1 <= b <= 32 and b & (b - 1) == 0
        assert b == 1 or b * 50 * heads <= 2**18
        assert b == 32 or 2 * b * 50 * heads > 2**18
