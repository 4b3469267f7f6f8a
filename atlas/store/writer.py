"""Store a run: what :func:`ingest.pipeline.trace_run` yields, written into Neo4j, resumably.

Per batch (memory is bounded by the batch, never by the number of prompts): the pipeline
yields its records (prompts → forward pass → firings + sparse sets → upstream edges →
records); here they become one write transaction that also marks the batch done. A run
interrupted anywhere (exception, Ctrl-C, killed process) is continued with ``resume=True``:
written batches are skipped, the rest are computed again from the same seeded prompts, so the
final graph equals an uninterrupted run's.
At the end the per-prompt edges are aggregated into ``COMMUNICATES`` and the run is complete.

Pipelining: batch n is written by one writer thread while the main thread computes batch
n + 1, so at most two batches are held at once. A batch counts as written (``after_batch``,
progress, summary) only once its transaction has committed, and an error in the writer stops
the run before anything later is written. Since a batch that is not marked done has nothing
in the graph, a new or resumed run CREATEs its batches
(:meth:`~atlas.store.store.AtlasStore.write_fresh_batch`); ``rewrite=True`` MERGEs them, which
changes nothing where the graph already holds the same records.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from atlas.errors import AtlasError
from atlas.store.runs import read_only_message
from atlas.store.store import AtlasStore, PreparedWrite, WriteCounts
from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import QKSVD
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig, model_aligned_records, run_record, trace_run
from ingest.records.build import model_component_records, model_record
from ingest.records.types import RecordBatch, RunRecord
from ingest.run_ids import check_run_id
from ingest.runtime import torch_threads

# A batch handed to the writer thread: its index, its records, the write's counts and seconds.
_PendingWrite = tuple[int, RecordBatch, Future[tuple[WriteCounts, float]]]
STAGES = ("svd", "align", "forward", "decompose", "trace", "records", "write", "aggregate")


@dataclass
class IngestSummary:
    """What a run wrote and how long each stage took.

    Stages (seconds of work; ``forward`` … ``records`` run while the previous batch is
    written, so they overlap ``write``): ``svd`` (every head's Ω), ``align`` (the model's
    ALIGNED singular vectors, computed and written once per model), ``forward`` (model and
    cache), ``decompose`` (firings and sparse sets), ``trace`` (upstream edges), ``records``
    (tensors to records, records to write statements), ``write`` (Neo4j transactions, model
    and heads included), ``aggregate`` (COMMUNICATES). ``wall_seconds``: the whole job, end to
    end. Loading the model happens before the job.
    """

    run_id: str
    prompts: int = 0
    firings: int = 0
    edges: int = 0
    communicates: int = 0
    batches_written: int = 0
    batches_skipped: int = 0
    nodes_created: int = 0
    relationships_created: int = 0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    behaviour: dict[str, float] = field(default_factory=dict)

    def relationships_per_second(self) -> float:
        seconds = self.stage_seconds["write"]
        return self.relationships_created / seconds if seconds else 0.0


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and of the GPU, when used)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak


def check_run_id_free(
    store: AtlasStore, run_id: str, resume: bool, rewrite: bool
) -> dict[str, Any] | None:
    """The stored run ``run_id`` when it may be resumed or rewritten, None when there is none;
    an error when it exists and neither was asked (or it is read-only). Needs no model, so the
    CLI asks it before loading one."""
    check_run_id(run_id)
    existing = store.show_run(run_id)
    if existing is None:
        return None
    stored: dict[str, Any] = existing["run"]
    if stored.get("read_only"):
        raise AtlasError(read_only_message(run_id, stored))
    if not (resume or rewrite):
        raise AtlasError(
            f"Run '{run_id}' already exists (status {stored.get('status')}). Continue it with "
            "--resume, recompute it in place with --rewrite, or remove it with "
            f"`circuit-atlas runs delete {run_id}`."
        )
    return stored


def check_resumable(store: AtlasStore, run: RunRecord, resume: bool, rewrite: bool) -> None:
    """Refuse to mix runs: an existing id must be resumed (or rewritten) with equal settings."""
    stored = check_run_id_free(store, run.id, resume, rewrite)
    if stored is None:
        return
    mismatched = [
        name
        for name, value in (
            ("model_id", run.model_id),
            ("params", json.dumps(run.params, sort_keys=True)),
            ("dataset", json.dumps(run.dataset, sort_keys=True)),
        )
        if stored.get(name) != value
    ]
    if mismatched:
        raise AtlasError(
            f"Run '{run.id}' was made with different {', '.join(mismatched)}; resuming it with "
            "these settings would mix two runs. Use the original settings or another --run-id."
        )


def ingest_run(
    store: AtlasStore,
    model: LoadedModel,
    config: IngestConfig,
    *,
    run_id: str | None = None,
    resume: bool = False,
    rewrite: bool = False,
    show_progress: bool = True,
    after_batch: Callable[[int], None] | None = None,
    compute_threads: int | None = None,
) -> IngestSummary:
    """Write one run into the atlas; see the module docstring for the resume guarantees.

    ``after_batch(index)`` is called after each batch is committed (progress hooks, tests).
    ``compute_threads``: torch's CPU threads for the model and the decomposition, by default
    one core fewer than the machine has (at least 1). The writer and a local Neo4j need that
    core while batches are computed: on 2 cores, two torch threads competing with them made
    the toy model's forward passes ~7× slower than one thread (OpenMP barriers stall on a
    busy CPU).
    """
    run_id = run_id or config.default_run_id(model.provenance.model_id)
    summary = IngestSummary(run_id=run_id)
    job_started = time.perf_counter()
    run = run_record(run_id, model, config)
    check_resumable(store, run, resume, rewrite)
    done = set() if rewrite else store.done_batches(run_id)
    seconds = summary.stage_seconds

    started = time.perf_counter()
    svd = model_qk_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    seconds["svd"] += time.perf_counter() - started
    started = time.perf_counter()
    store.write_model(model_record(model.provenance))
    store.create_run(run)
    counts = store.write_batch(model_component_records(model.provenance, svd))
    summary.nodes_created += counts.nodes_created
    summary.relationships_created += counts.relationships_created
    seconds["write"] += time.perf_counter() - started
    started = time.perf_counter()
    write_aligned(store, model.provenance.model_id, svd, config)
    seconds["align"] += time.perf_counter() - started

    # Statements are built in this thread (stage "records"); the writer thread only sends them.
    prepare = store.prepare_batch if rewrite else store.prepare_fresh_batch
    bars = _progress_bars(config.n_prompts, show_progress)

    def timed_write(prepared: PreparedWrite) -> tuple[WriteCounts, float]:
        started = time.perf_counter()
        return store.write_prepared(prepared), time.perf_counter() - started

    def committed(pending: _PendingWrite) -> None:
        index, records, future = pending
        counts, elapsed = future.result()  # the writer's error, if any, is raised here
        seconds["write"] += elapsed
        bars[1].update(len(records.prompts))
        summary.batches_written += 1
        summary.prompts += len(records.prompts)
        summary.firings += len(records.firings)
        summary.edges += len(records.edges)
        summary.nodes_created += counts.nodes_created
        summary.relationships_created += counts.relationships_created
        for bar in bars:
            bar.set_postfix(firings=summary.firings, edges=summary.edges, refresh=False)
        if after_batch is not None:
            after_batch(index)

    pending: _PendingWrite | None = None
    threads = compute_threads or default_compute_threads()
    try:
        # Leaving the block waits for a write still in flight (after an error or Ctrl-C), so
        # the run is marked failed only once nothing more can commit.
        with (
            torch_threads(threads),
            rare_gc_passes(),
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlas-writer") as writer,
        ):
            for batch in trace_run(model, svd, config, run_id, skip=done):
                if batch.records is None:  # already in the atlas
                    summary.batches_skipped += 1
                    for bar in bars:
                        bar.update(batch.n_prompts)
                    continue
                started = time.perf_counter()
                prepared = prepare(batch.records)
                seconds["records"] += time.perf_counter() - started
                for stage, elapsed in batch.seconds.items():
                    seconds[stage] += elapsed
                bars[0].update(batch.n_prompts)
                if pending is not None:
                    committed(pending)
                pending = (batch.index, batch.records, writer.submit(timed_write, prepared))
            if pending is not None:
                committed(pending)
    except BaseException as error:
        _close(bars)
        _record_failure(store, run_id, error)
        raise
    _close(bars)

    started = time.perf_counter()
    summary.behaviour = store.record_behaviour(run_id)
    summary.communicates = store.complete_run(run_id)
    seconds["aggregate"] += time.perf_counter() - started
    summary.wall_seconds = time.perf_counter() - job_started
    summary.peak_memory_mb = peak_memory_mb()
    return summary


@contextlib.contextmanager
def rare_gc_passes(first_threshold: int = 50_000) -> Iterator[None]:
    """Run the block with the cyclic garbage collector passing every ``first_threshold``
    allocations (Python's default is 700), then restore the thresholds.

    A batch's records and write parameters are ~10⁵ small acyclic objects that reference
    counting frees; at the default each batch triggers hundreds of collector passes, and the
    older generations' passes re-scan every object of the process (torch, transformers, the
    model). Measured on toy-ioi, 128 prompts: records 0.92 s → 0.40 s, write parameters
    0.43 s → 0.17 s.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(first_threshold, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


def write_aligned(store: AtlasStore, model_id: str, svd: QKSVD, config: IngestConfig) -> None:
    """The model's ALIGNED singular-vector pairs, computed once per model and parameters."""
    params = config.align_params()
    if store.aligned_params(model_id) == params:
        return
    store.replace_aligned(model_id, model_aligned_records(model_id, svd, config), params)


def default_compute_threads() -> int:
    """One core fewer than the machine has (at least one), and no more than torch uses now."""
    return max(1, min(torch.get_num_threads(), (os.cpu_count() or 2) - 1))


def _progress_bars(total: int, show: bool) -> list[Any]:
    common = {"total": total, "unit": "prompt", "file": sys.stderr, "disable": not show}
    return [
        tqdm(desc="compute        ", position=0, **common),
        tqdm(desc="write to Neo4j ", position=1, **common),
    ]


def _close(bars: list[Any]) -> None:
    for bar in bars:
        bar.close()


def _record_failure(store: AtlasStore, run_id: str, error: BaseException) -> None:
    """Best effort: mark the run interrupted (Ctrl-C) or failed. The database may be the
    thing that failed: the run then stays ``running`` and is shown ``interrupted`` once this
    process has ended (:mod:`atlas.store.liveness`)."""
    with contextlib.suppress(Exception):  # the original error is what the user must see
        if isinstance(error, KeyboardInterrupt):
            store.interrupt_run(run_id)
        else:
            store.fail_run(run_id, repr(error))
