"""The job's one entry point, :func:`ingest.pipeline.trace_run`, on a tiny random GPT-2."""

from __future__ import annotations

import pytest

from ingest.decomposition.activations import model_qk_svd
from ingest.models.loading import LoadedModel, random_gpt2
from ingest.pipeline import IngestConfig, trace_run
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
