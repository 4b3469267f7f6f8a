"""The ingestion job: IOI prompts through the model, SAD decomposition and tracing, into Neo4j.

Data flow per batch (memory is bounded by the batch, never by the number of prompts):
prompts → forward pass → firings + sparse sets → upstream edges → records → one write
transaction that also marks the batch done. A run interrupted anywhere (exception, Ctrl-C,
killed process) is continued with ``resume=True``: written batches are skipped, the rest are
computed again from the same seeded prompts, so the final graph equals an uninterrupted run's.
At the end the per-prompt edges are aggregated into ``COMMUNICATES`` and the run is complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from atlas.settings import AtlasError
from atlas.store import AtlasStore
from ingest.activations import model_qk_svd
from ingest.alignment import (
    DEFAULT_ALIGN_THRESHOLD,
    DEFAULT_ALIGN_TOP_K,
    aligned_pairs,
    read_directions,
)
from ingest.batch_records import (
    aligned_records,
    batch_records,
    model_component_records,
    model_record,
)
from ingest.decomposition import QKSVD, FiringRule
from ingest.ioi import generate_prompts
from ingest.models import LoadedModel
from ingest.pipeline import chunks, process_batch
from ingest.records import BatchDone, RunRecord

METHOD = "sad"


@dataclass(frozen=True)
class IngestConfig:
    """Everything that determines a run's graph (and so its default id)."""

    n_prompts: int = 256
    prompt_type: str = "mixed"
    seed: int = 0
    batch_size: int = 32
    rule: FiringRule = field(default_factory=FiringRule)
    edge_fraction: float = 0.7
    # Feature identity across heads (per model, not part of the run's identity).
    align_threshold: float = DEFAULT_ALIGN_THRESHOLD
    align_top_k: int = DEFAULT_ALIGN_TOP_K

    def align_params(self) -> str:
        return json.dumps(
            {"space": "residual", "threshold": self.align_threshold, "top_k": self.align_top_k},
            sort_keys=True,
        )

    def method_params(self) -> dict[str, Any]:
        return {"method": METHOD, **asdict(self.rule), "edge_fraction": self.edge_fraction}

    def dataset(self) -> dict[str, Any]:
        return {
            "generator": "circuit-atlas ioi",
            "n_prompts": self.n_prompts,
            "prompt_type": self.prompt_type,
            "seed": self.seed,
            "batch_size": self.batch_size,
        }

    def default_run_id(self, model_id: str) -> str:
        """``<model>-<type>-n<N>-seed<S>-<hash of every parameter>``: re-running finds it."""
        slug = model_id.rstrip("/").split("/")[-1]
        fingerprint = json.dumps(
            [model_id, self.method_params(), self.dataset()], sort_keys=True
        ).encode()
        digest = hashlib.sha256(fingerprint).hexdigest()[:8]
        return f"{slug}-{self.prompt_type}-n{self.n_prompts}-seed{self.seed}-{digest}"


@dataclass
class IngestSummary:
    """What a run wrote and how long each stage took.

    Stages: ``setup`` (SVD of every head, model/run/head/singular-vector records),
    ``decompose+trace`` (forward passes, firings, edges, records), ``write`` (Neo4j
    transactions), ``aggregate`` (COMMUNICATES). Loading the model happens before the job.
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
    stage_seconds: dict[str, float] = field(
        default_factory=lambda: {
            "setup": 0.0,
            "decompose+trace": 0.0,
            "write": 0.0,
            "aggregate": 0.0,
        }
    )
    peak_memory_mb: float = 0.0

    def relationships_per_second(self) -> float:
        seconds = self.stage_seconds["write"]
        return self.relationships_created / seconds if seconds else 0.0


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, when it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and of the GPU, when used)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak


def run_record(run_id: str, model: LoadedModel, config: IngestConfig) -> RunRecord:
    provenance = model.provenance
    return RunRecord(
        id=run_id,
        model_id=provenance.model_id,
        model_revision=provenance.revision,
        method=METHOD,
        params=config.method_params(),
        dataset=config.dataset(),
        versions={**provenance.versions, "processing": json.dumps(provenance.processing)},
        git_commit=git_commit(),
    )


def check_resumable(store: AtlasStore, run: RunRecord, resume: bool, rewrite: bool) -> None:
    """Refuse to mix runs: an existing id must be resumed (or rewritten) with equal settings."""
    existing = store.show_run(run.id)
    if existing is None:
        return
    stored = existing["run"]
    if not (resume or rewrite):
        raise AtlasError(
            f"Run '{run.id}' already exists (status {stored.get('status')}). Continue it with "
            "--resume, recompute it in place with --rewrite, or remove it with "
            f"`circuit-atlas runs delete {run.id}`."
        )
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
) -> IngestSummary:
    """Write one run into the atlas; see the module docstring for the resume guarantees.

    ``after_batch(index)`` is called after each batch is committed (progress hooks, tests).
    """
    run_id = run_id or config.default_run_id(model.provenance.model_id)
    summary = IngestSummary(run_id=run_id)
    prompts = generate_prompts(config.n_prompts, config.prompt_type, seed=config.seed)
    run = run_record(run_id, model, config)
    check_resumable(store, run, resume, rewrite)
    done = set() if rewrite else store.done_batches(run_id)

    started = time.perf_counter()
    svd = model_qk_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    store.write_model(model_record(model.provenance))
    store.create_run(run)
    store.write_batch(model_component_records(model.provenance, svd))
    write_aligned(store, model.provenance.model_id, svd, config)
    summary.stage_seconds["setup"] += time.perf_counter() - started

    batches = list(chunks(prompts, config.batch_size))
    bars = _progress_bars(len(prompts), show_progress)
    try:
        for index, batch_prompts in enumerate(batches):
            offset = index * config.batch_size
            if index in done:
                summary.batches_skipped += 1
                for bar in bars:
                    bar.update(len(batch_prompts))
                continue
            started = time.perf_counter()
            result = process_batch(
                model,
                svd,
                batch_prompts,
                config.rule,
                trace=True,
                edge_fraction=config.edge_fraction,
            )
            records = batch_records(run_id, result, offset, model.tokenizer)
            summary.stage_seconds["decompose+trace"] += time.perf_counter() - started
            bars[0].update(len(batch_prompts))

            started = time.perf_counter()
            counts = store.write_batch(replace(records, done=BatchDone(run_id, index)))
            summary.stage_seconds["write"] += time.perf_counter() - started
            bars[1].update(len(batch_prompts))

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
    except BaseException as error:
        _close(bars)
        _record_failure(store, run_id, error)
        raise
    _close(bars)

    started = time.perf_counter()
    summary.communicates = store.complete_run(run_id)
    summary.stage_seconds["aggregate"] += time.perf_counter() - started
    summary.peak_memory_mb = peak_memory_mb()
    return summary


def write_aligned(store: AtlasStore, model_id: str, svd: QKSVD, config: IngestConfig) -> None:
    """The model's ALIGNED singular-vector pairs, computed once per model and parameters."""
    params = config.align_params()
    if store.aligned_params(model_id) == params:
        return
    directions = read_directions(svd)
    pairs = aligned_pairs(directions, config.align_threshold, config.align_top_k)
    store.replace_aligned(model_id, aligned_records(model_id, directions, pairs), params)


def _progress_bars(total: int, show: bool) -> list[Any]:
    common = {"total": total, "unit": "prompt", "file": sys.stderr, "disable": not show}
    return [
        tqdm(desc="decompose+trace", position=0, **common),
        tqdm(desc="write to Neo4j ", position=1, **common),
    ]


def _close(bars: list[Any]) -> None:
    for bar in bars:
        bar.close()


def _record_failure(store: AtlasStore, run_id: str, error: BaseException) -> None:
    """Best effort: mark the run failed (the database may be the thing that failed)."""
    reason = "interrupted" if isinstance(error, KeyboardInterrupt) else repr(error)
    with contextlib.suppress(Exception):  # the original error is what the user must see
        store.fail_run(run_id, reason)
