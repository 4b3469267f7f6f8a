"""Trace a run into shards, one shard per job, on one machine or on an existing engine.

:func:`trace_shard` runs :func:`ingest.pipeline.trace_run` (the same pipeline ``ingest`` runs)
on shard ``i/N``'s contiguous range of batches and writes what it yields with
:class:`~atlas.interchange.shards.ShardWriter`: no database is involved. A shard's batches are
exactly the batches ``ingest`` would write (batch ``b`` holds prompts ``[b·size, (b+1)·size)``
of the seeded prompt list), so the union of a run's shards is the run.

:func:`trace_shards` runs several shards: ``executor="local"`` in a process pool (one torch
thread each; on the CPU forked after this process has loaded the model and computed its
:class:`~ingest.pipeline.ModelPart`, else spawned),
``executor="ray"`` as one Ray task per shard (``num_gpus=1`` when the cluster has GPUs), so a Ray
cluster that spans machines runs the same command. A Ray task or a spawned process loads the
model itself from the :class:`ModelSpec`, and the jobs share nothing but the output folder (on a
cluster: a shared file system, or copy the shard folders afterwards).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from atlas.errors import AtlasError
from atlas.interchange.shards import MANIFEST, ShardHeader, ShardSpec, ShardWriter, read_shard
from ingest.decomposition.alignment import (
    AlignedPairs,
    ReadDirections,
    aligned_candidates,
    aligned_pairs,
    merge_candidates,
    row_shares,
)
from ingest.models.loading import LoadedModel
from ingest.pipeline import (
    AlignedSearch,
    IngestConfig,
    ModelPart,
    model_part,
    run_record,
    trace_run,
)
from ingest.records.build import model_component_records, model_record
from ingest.runtime import torch_threads

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ModelSpec:
    """How a job loads its model (what ``--model``, ``--model-dir``, ... say): picklable."""

    model: str
    model_dir: str | None = None
    revision: str | None = None
    device: str = "cpu"
    seed: int = 0
    prepend_bos: bool | None = None  # None: the tokenizer's choice (ingest's --bos/--no-bos)

    def load(self) -> LoadedModel:
        from ingest.models.loading import load_model

        return self.with_bos(
            load_model(
                self.model,
                model_dir=self.model_dir,
                revision=self.revision,
                device=self.device,
                seed=self.seed,
            )
        )

    def with_bos(self, model: LoadedModel) -> LoadedModel:
        """``model`` with this spec's BOS choice, as ``ingest --bos/--no-bos`` sets it."""
        if self.prepend_bos is not None:
            model.prepend_bos = self.prepend_bos
        return model


@dataclass(frozen=True)
class ShardResult:
    """What tracing one shard produced (``skipped``: a complete shard was already there)."""

    shard: str
    folder: str
    prompts: int = 0
    firings: int = 0
    edges: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    skipped: bool = False


def n_batches(config: IngestConfig) -> int:
    return math.ceil(config.n_prompts / config.batch_size)


def trace_shard(
    model: LoadedModel,
    config: IngestConfig,
    run_id: str,
    shard: ShardSpec,
    out: Path,
    *,
    part: ModelPart | None = None,
    after_batch: Callable[[int], None] | None = None,
) -> ShardResult:
    """Trace shard ``shard`` of run ``run_id`` into ``out/<run>.shard-i-of-N/``.

    A complete shard already there is kept (nothing is computed); an incomplete one (a killed
    job's files, no manifest) is replaced. ``part`` is the model's part under ``config``
    (computed here when not given); ``after_batch(index)`` runs after each batch is written
    (tests use it to kill the job mid-shard).
    """
    folder = out / shard.folder_name(run_id)
    if (folder / MANIFEST).exists():
        existing = read_shard(folder, verify=False)
        if existing.manifest["run"]["id"] != run_id:
            raise AtlasError(f"{folder} holds a shard of another run.")
        return ShardResult(str(shard), str(folder), skipped=True)
    started = time.perf_counter()
    total = n_batches(config)
    batches = shard.batches(total)
    if part is None:
        part = model_part(model, config)
    elif not part.serves(config):
        raise ValueError("the model part was computed for another method or ALIGNED parameters")
    provenance = model.provenance
    header = ShardHeader(
        run=run_record(run_id, model, config),
        model=model_record(provenance),
        align_params=config.align_params(),
        shard=shard,
        batches=list(batches),
        n_batches=total,
        batch_size=config.batch_size,
    )
    writer = ShardWriter(folder, header)
    heads = model_component_records(provenance, part.svd)
    writer.write_model(heads.components, heads.singular_vectors, part.aligned)
    stage_seconds: dict[str, float] = {}
    skip = set(range(total)) - set(batches)
    for batch in trace_run(model, part.svd, config, run_id, skip=skip, acc=part.acc):
        if batch.records is None:
            continue
        clock = time.perf_counter()
        writer.write_batch(batch.index, batch.records)
        for stage, seconds in {**batch.seconds, "shard": time.perf_counter() - clock}.items():
            stage_seconds[stage] = stage_seconds.get(stage, 0.0) + seconds
        if after_batch is not None:
            after_batch(batch.index)
    writer.finish()
    return ShardResult(
        str(shard),
        str(folder),
        prompts=writer.rows["prompts"],
        firings=writer.rows["firings"],
        edges=writer.rows["edges"],
        seconds=time.perf_counter() - started,
        stage_seconds=stage_seconds,
    )


@dataclass(frozen=True)
class ShardJob:
    """One shard to trace, self-contained (it crosses process and machine boundaries)."""

    model: ModelSpec
    config: IngestConfig
    run_id: str
    shard: ShardSpec
    out: str
    threads: int = 1


def trace_job(model: LoadedModel, job: ShardJob, part: ModelPart | None = None) -> ShardResult:
    """Trace the job's shard with ``model`` (and its ``part``, if already computed) on
    ``job.threads`` torch threads."""
    with torch_threads(job.threads):
        return trace_shard(model, job.config, job.run_id, job.shard, Path(job.out), part=part)


def run_job(job: ShardJob) -> ShardResult:
    """A worker's job (a Ray task, a spawned or forked process): trace the job's shard with the
    model and part the worker inherited from the process it was forked from, or else loads the
    model and computes the part itself."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if job.model in _forked:
        model, part = _forked[job.model]
        return trace_job(model, job, part if part.serves(job.config) else None)
    return trace_job(_load_on_one_thread(job.model), job)


_forked: dict[ModelSpec, tuple[LoadedModel, ModelPart]] = {}  # filled only in forked workers


def _inherit(spec: ModelSpec, model: LoadedModel, part: ModelPart) -> None:
    _forked[spec] = (model, part)


def aligned_pairs_on_workers(workers: int, chunk: int = 2048) -> AlignedSearch:
    """An :data:`~ingest.pipeline.AlignedSearch` that screens the |cos| matrix (in blocks of
    ``chunk`` rows) in ``workers`` processes forked from this one, one share of its block rows
    each, and merges their candidates: the same pairs as one process finds. Fork only from a
    process that has run torch on one thread (see :func:`trace_shards`)."""

    def search(directions: ReadDirections, config: IngestConfig) -> AlignedPairs:
        n_vectors = directions.vectors.shape[0]
        shares = [(rows, chunk) for rows in row_shares(n_vectors, workers, chunk)]
        if len(shares) == 1:  # one block row (a small model): nothing to share
            return aligned_pairs(directions, config.align_threshold, config.align_top_k, chunk)
        pool = ProcessPoolExecutor(
            max_workers=len(shares),
            mp_context=get_context("fork"),
            initializer=_inherit_directions,
            initargs=(directions, config),
        )
        with pool:
            candidates = list(pool.map(_aligned_share, *zip(*shares, strict=True)))
        return merge_candidates(candidates, config.align_top_k, n_vectors)

    return search


_forked_directions: list[tuple[ReadDirections, IngestConfig]] = []  # in forked workers only


def _inherit_directions(directions: ReadDirections, config: IngestConfig) -> None:
    _forked_directions.append((directions, config))


def _aligned_share(rows: range, chunk: int) -> AlignedPairs:
    directions, config = _forked_directions[-1]
    return aligned_candidates(
        directions, config.align_threshold, config.align_top_k, rows, chunk=chunk
    )


def _load_on_one_thread(spec: ModelSpec) -> LoadedModel:
    with torch_threads(1):
        return spec.load()


def trace_shards(
    jobs: Sequence[ShardJob],
    *,
    workers: int = 1,
    executor: str = "local",
    on_done: Callable[[ShardResult], None] | None = None,
) -> list[ShardResult]:
    """Run ``jobs`` in this process (``workers`` 1), on ``workers`` local processes, or as Ray
    tasks (``executor="ray"``).

    In this process each distinct model is loaded once and its :class:`ModelPart` computed
    once per method and ALIGNED parameters, for all its shards. Local workers on the CPU are
    forked from this process after it has loaded the model and computed the part, both on one
    torch thread (so no OpenMP pool exists for the fork to break: a multi-threaded region in a
    child forked after its parent's pool ran hangs; torch's DataLoader forks its workers too):
    they share both copy-on-write and start tracing at once, instead of each importing torch,
    loading the model (~6 s for toy-ioi, ~11 s for SmolLM2-135M when two start together) and
    computing the part again (~12 s on SmolLM2, where more threads do not shorten it). The
    part's ALIGNED pairs, most of it, are screened by ``workers`` processes forked the same
    way (:func:`aligned_pairs_on_workers`), so that the workers share that fixed cost too. On a
    CUDA device the workers are spawned and each loads its model and computes its part.
    """
    if executor not in EXECUTORS:
        raise AtlasError(f"Unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}.")
    if executor == "ray":
        return _ray_shards(jobs, on_done)
    if not jobs:
        return []
    results = []
    if workers <= 1 or len(jobs) == 1:
        models: dict[ModelSpec, LoadedModel] = {}
        parts: dict[tuple[ModelSpec, str, str], ModelPart] = {}
        for job in jobs:
            if job.model not in models:
                models[job.model] = _load_on_one_thread(job.model)
            key = (job.model, job.config.method, job.config.align_params())
            if key not in parts:
                with torch_threads(job.threads):
                    parts[key] = model_part(models[job.model], job.config)
            results.append(trace_job(models[job.model], job, parts[key]))
            if on_done is not None:
                on_done(results[-1])
        return results
    spec = jobs[0].model
    if all(job.model == spec for job in jobs) and spec.device == "cpu":
        model = _load_on_one_thread(spec)
        with torch_threads(1):
            part = model_part(model, jobs[0].config, aligned_pairs_on_workers(workers))
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=get_context("fork"),
            initializer=_inherit,
            initargs=(spec, model, part),
        )
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
    with pool:
        for result in pool.map(run_job, jobs):
            results.append(result)
            if on_done is not None:
                on_done(result)
    return results


def _ray_shards(
    jobs: Sequence[ShardJob], on_done: Callable[[ShardResult], None] | None
) -> list[ShardResult]:
    """One Ray task per shard on the cluster ``ray.init()`` finds (``RAY_ADDRESS``, a running
    ``ray start --head``, else a local one); a GPU per task when the cluster has GPUs."""
    try:
        import ray
    except ImportError as error:
        raise AtlasError(
            "The ray executor needs Ray: `pip install 'circuit-atlas[ray]'` (or use "
            "--executor local)."
        ) from error
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    gpus = ray.cluster_resources().get("GPU", 0)
    task = ray.remote(run_job)
    pending = []
    for job in jobs:
        if gpus and not job.model.device.startswith("cuda"):
            job = replace(job, model=replace(job.model, device="cuda"))
        options = {"num_cpus": job.threads, "num_gpus": 1 if gpus else 0}
        pending.append(task.options(**options).remote(job))
    results = []
    for ref in pending:
        result = ray.get(ref)
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results
