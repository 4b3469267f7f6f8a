"""The job's pipeline: model → prompts → decomposition → tracing → records, batch by batch.

:func:`trace_run` is the one entry point: it draws a run's seeded prompts lazily, and for every
batch not already stored runs the forward pass (:mod:`ingest.decomposition.activations`), the
decomposition (:mod:`ingest.decomposition.sad`), the tracing (:mod:`ingest.tracing`) and builds
its records (:mod:`ingest.records`), yielding one :class:`TracedBatch` at a time, so memory is
bounded by the batch. The atlas stores what it yields (``atlas.store.writer``); nothing here
touches a database. :func:`process_batch` is the same for one batch of given prompts (the
``decompose`` command, benchmarks, interventions).

``IngestConfig.method`` chooses the method: ``sad`` (the default, unchanged) or ``acc``
(:mod:`ingest.tracing.acc_circuit`: relative attention per side, every upstream component,
traced from the answer); :func:`process_acc_batch` is ACC's one batch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ingest import run_ids
from ingest.decomposition.acc import AccFiringRule, AccSVD
from ingest.decomposition.activations import (
    decompose_activations,
    model_qk_svd,
    run_activations,
)
from ingest.decomposition.alignment import (
    DEFAULT_ALIGN_THRESHOLD,
    DEFAULT_ALIGN_TOP_K,
    AlignedPairs,
    ReadDirections,
    aligned_pairs,
    read_directions,
)
from ingest.decomposition.sad import QKSVD, FiringRule, Firings
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import (
    IOIPrompt,
    PromptBatch,
    iter_prompts,
    position_roles,
    tokenize_prompts,
)
from ingest.records.build import acc_batch_records, aligned_records, batch_records
from ingest.records.types import AlignedRecord, BatchDone, RecordBatch, RunRecord
from ingest.runtime import git_commit
from ingest.tracing.acc_circuit import (
    DEFAULT_SEED_FRACTION,
    AccTrace,
    model_acc_svd,
    run_acc_activations,
    trace_acc_batch,
)
from ingest.tracing.upstream import Edges, trace_firings

METHOD = "sad"
METHODS = ("sad", "acc")

# A batch is one forward pass and one write transaction; ~50 relationships per head per prompt
# were measured (toy-ioi 61, SmolLM2-135M 51): see default_batch_size.
RELATIONSHIPS_PER_HEAD_PROMPT = 50
TRANSACTION_RELATIONSHIPS = 2**18
MAX_BATCH_SIZE = 32


def default_batch_size(n_heads_total: int) -> int:
    """Prompts per batch when the user gives none: the largest power of two b ≤ 32 with

        b · 50 · n_heads_total ≤ 2^18 relationships in one batch's write transaction,

    at least 1. Toy-ioi (16 heads) and GPT-2 small (144) get 32, SmolLM2-135M (270) 16: its
    ~14k relationships per prompt made 32-prompt transactions (~440k relationships) thrash the
    local server's 2 GiB heap (stop-the-world pauses every few seconds; ~50× slower writes).
    """
    fitting = TRANSACTION_RELATIONSHIPS // (RELATIONSHIPS_PER_HEAD_PROMPT * max(n_heads_total, 1))
    size = MAX_BATCH_SIZE
    while size > 1 and size > fitting:
        size //= 2
    return size


@dataclass(frozen=True)
class IngestConfig:
    """Everything that determines a run's graph (and so its default id)."""

    n_prompts: int = 256
    prompt_type: str = "mixed"
    seed: int = 0
    batch_size: int = 32
    rule: FiringRule = field(default_factory=FiringRule)
    edge_fraction: float = 0.7
    # ACC (method "acc"): its firing rule, the seeds' share of the logit difference, and
    # whether firings no seed reaches are stored too (untraced, without edges).
    method: str = METHOD
    acc_rule: AccFiringRule = field(default_factory=AccFiringRule)
    seed_fraction: float = DEFAULT_SEED_FRACTION
    acc_all_firings: bool = False
    # Feature identity across heads (per model, not part of the run's identity).
    align_threshold: float = DEFAULT_ALIGN_THRESHOLD
    align_top_k: int = DEFAULT_ALIGN_TOP_K

    def align_params(self) -> str:
        return json.dumps(
            {"space": "residual", "threshold": self.align_threshold, "top_k": self.align_top_k},
            sort_keys=True,
        )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if not 0.0 < self.seed_fraction <= 1.0:
            raise ValueError(f"seed fraction must lie in (0, 1], got {self.seed_fraction}")

    def method_params(self) -> dict[str, Any]:
        """The run's method and its parameters (SAD's are as they always were: same run ids)."""
        if self.method == "acc":
            return {
                "method": "acc",
                **asdict(self.acc_rule),
                "edge_fraction": self.edge_fraction,
                "seed_fraction": self.seed_fraction,
                "all_firings": self.acc_all_firings,
            }
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
        slug = run_ids.slug(model_id.rstrip("/").split("/")[-1])
        fingerprint = json.dumps(
            [model_id, self.method_params(), self.dataset()], sort_keys=True
        ).encode()
        digest = hashlib.sha256(fingerprint).hexdigest()[:8]
        tail = f"-{self.prompt_type}-n{self.n_prompts}-seed{self.seed}-{digest}"
        if len(tail) > run_ids.MAX_RUN_ID_LENGTH - 8:  # absurd numbers: the hash alone
            tail = f"-{digest}"
        return run_ids.check_run_id(slug[: run_ids.MAX_RUN_ID_LENGTH - len(tail)] + tail)


def run_record(run_id: str, model: LoadedModel, config: IngestConfig) -> RunRecord:
    """The run's provenance: model, method parameters, prompts (with the model's BOS choice,
    which changes every prompt's tokens), versions and, for converted weights, their source."""
    provenance = model.provenance
    weights = {"weights": json.dumps(provenance.weights)} if provenance.weights else {}
    return RunRecord(
        id=run_id,
        model_id=provenance.model_id,
        model_revision=provenance.revision,
        method=config.method,
        params=config.method_params(),
        dataset={**config.dataset(), "prepend_bos": model.prepend_bos},
        versions={
            **provenance.versions,
            "processing": json.dumps(provenance.processing),
            **weights,
        },
        git_commit=git_commit(),
    )


@dataclass(frozen=True)
class BatchResult:
    """Everything one batch yields: its prompts, role labels, firings and (if traced) edges.

    ``logit_diff[b] = logit(IO) − logit(S)`` at END, the IOI behaviour metric. ``seconds``:
    wall time of each stage (``forward``, ``decompose``, ``trace``), for benchmarks.
    """

    prompts: Sequence[IOIPrompt]
    batch: PromptBatch
    role_labels: list[list[str]]
    firings: Firings
    edges: Edges | None
    logit_diff: Float[Tensor, " batch"]
    seconds: Mapping[str, float] = field(default_factory=dict)


def ioi_behaviour(logit_diff: Float[Tensor, " prompt"]) -> dict[str, float]:
    """The model's IOI behaviour on prompts: ``ioi_accuracy`` (share with IO−S logit difference
    > 0), ``logit_diff_mean`` and ``logit_diff_min``."""
    values = logit_diff.double()
    return {
        "ioi_accuracy": float((values > 0).double().mean()),
        "logit_diff_mean": float(values.mean()),
        "logit_diff_min": float(values.min()),
    }


def chunks(items: Iterable[IOIPrompt], size: int) -> Iterator[Sequence[IOIPrompt]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def process_batch(
    model: LoadedModel,
    svd: QKSVD,
    prompts: Sequence[IOIPrompt],
    rule: FiringRule,
    *,
    trace: bool = False,
    edge_fraction: float = 0.7,
) -> BatchResult:
    """Run the model on ``prompts``, decompose every head's firings, trace them if asked."""
    clock = _StageClock(model.bridge.cfg.device)
    batch = tokenize_prompts(list(prompts), model.tokenizer, prepend_bos=model.prepend_bos)
    activations = run_activations(
        model.bridge, batch.tokens, batch.mask, with_results=trace, logits_at=batch.roles["END"]
    )
    clock.lap("forward")
    firings = decompose_activations(activations, svd, rule)
    clock.lap("decompose")
    edges = None
    if trace:
        assert activations.results is not None and activations.scales is not None
        edges = trace_firings(firings, svd, activations.results, activations.scales, edge_fraction)
        clock.lap("trace")
    end_logits = activations.end_logits
    assert end_logits is not None
    rows = torch.arange(len(prompts), device=end_logits.device)
    logit_diff = (
        end_logits[rows, batch.io_token.to(end_logits.device)]
        - end_logits[rows, batch.s_token.to(end_logits.device)]
    )
    return BatchResult(
        prompts=prompts,
        batch=batch,
        role_labels=position_roles(batch),
        firings=firings,
        edges=edges,
        logit_diff=logit_diff.cpu(),
        seconds=clock.seconds,
    )


class _StageClock:
    """Wall time per stage; on a GPU it waits for queued kernels so each stage owns its time."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now


@dataclass(frozen=True)
class AccBatchResult:
    """One ACC batch: prompts, role labels, the trace (firings, seeds, edges), logit diffs."""

    prompts: Sequence[IOIPrompt]
    batch: PromptBatch
    role_labels: list[list[str]]
    trace: AccTrace
    logit_diff: Float[Tensor, " batch"]
    seconds: Mapping[str, float] = field(default_factory=dict)


def process_acc_batch(
    model: LoadedModel,
    svd: AccSVD,
    prompts: Sequence[IOIPrompt],
    rule: AccFiringRule,
    *,
    edge_fraction: float = 0.7,
    seed_fraction: float = DEFAULT_SEED_FRACTION,
) -> AccBatchResult:
    """Run the model on ``prompts`` and trace ACC from the answer (see
    :mod:`ingest.tracing.acc_circuit`); stages ``forward``, ``decompose`` (firings, answer,
    seeds and tracing together, one pass) and ``trace`` (0: counted in decompose)."""
    clock = _StageClock(model.bridge.cfg.device)
    batch = tokenize_prompts(list(prompts), model.tokenizer, prepend_bos=model.prepend_bos)
    end = batch.roles["END"]
    activations = run_acc_activations(model.bridge, batch.tokens, end)
    clock.lap("forward")
    device = activations.end_logits.device
    with torch.inference_mode():
        trace = trace_acc_batch(
            activations,
            svd,
            batch.mask,
            model.bridge.W_U,
            batch.io_token.to(device),
            batch.s_token.to(device),
            end.to(device),
            rule,
            edge_fraction=edge_fraction,
            seed_fraction=seed_fraction,
        )
    clock.lap("trace")
    return AccBatchResult(
        prompts=prompts,
        batch=batch,
        role_labels=position_roles(batch),
        trace=trace,
        logit_diff=trace.logit_diff.cpu(),
        seconds=clock.seconds,
    )


@dataclass(frozen=True)
class TracedBatch:
    """One batch of a run as :func:`trace_run` yields it.

    ``records`` is ``None`` for a batch in ``skip`` (already stored: nothing was computed).
    ``seconds``: wall time of each stage (``forward``, ``decompose``, ``trace``, ``records``).
    """

    index: int
    n_prompts: int
    records: RecordBatch | None
    seconds: Mapping[str, float] = field(default_factory=dict)


def trace_run(
    model: LoadedModel,
    svd: QKSVD,
    config: IngestConfig,
    run_id: str,
    *,
    skip: Collection[int] = (),
    acc: AccSVD | None = None,
) -> Iterator[TracedBatch]:
    """Every batch of the run ``run_id``: prompts through the model, decomposed, traced, as
    records (each carrying its :class:`BatchDone` marker, for a store to commit with it).

    Batch ``index`` holds prompts ``[index · batch_size, (index + 1) · batch_size)`` of the
    seeded prompt list, so a resumed run recomputes exactly the batches it lacks. An ACC run
    uses ``acc`` (both sides' SVDs, :func:`model_acc_svd`) when given, else computes it.
    """
    # Prompts are drawn lazily, batch by batch (the same seeded sequence as generate_prompts):
    # memory does not grow with n_prompts, and the first batch starts at once.
    prompts = iter_prompts(
        config.n_prompts, config.prompt_type, seed=config.seed, tokenizer=model.tokenizer
    )
    if config.method != "acc":
        acc = None
    elif acc is None:
        acc = model_acc_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    for index, batch_prompts in enumerate(chunks(prompts, config.batch_size)):
        if index in skip:
            yield TracedBatch(index, len(batch_prompts), None)
            continue
        offset = index * config.batch_size
        result: BatchResult | AccBatchResult
        if acc is not None:
            result = process_acc_batch(
                model,
                acc,
                batch_prompts,
                config.acc_rule,
                edge_fraction=config.edge_fraction,
                seed_fraction=config.seed_fraction,
            )
            started = time.perf_counter()
            records = acc_batch_records(
                run_id,
                result,
                offset,
                model.tokenizer,
                model.provenance.model_id,
                all_firings=config.acc_all_firings,
            )
        else:
            result = process_batch(
                model,
                svd,
                batch_prompts,
                config.rule,
                trace=True,
                edge_fraction=config.edge_fraction,
            )
            started = time.perf_counter()
            records = batch_records(run_id, result, offset, model.tokenizer)
        records = replace(records, done=BatchDone(run_id, index))
        seconds = {**result.seconds, "records": time.perf_counter() - started}
        yield TracedBatch(index, len(batch_prompts), records, seconds)


AlignedSearch = Callable[[ReadDirections, IngestConfig], AlignedPairs]
"""How the ALIGNED pairs of some read directions are found under a config's threshold and top-k
(:func:`aligned_pairs_here`, or spread over processes: ``atlas.scale.trace``)."""


def aligned_pairs_here(directions: ReadDirections, config: IngestConfig) -> AlignedPairs:
    """:func:`~ingest.decomposition.alignment.aligned_pairs` in this process."""
    return aligned_pairs(directions, config.align_threshold, config.align_top_k)


def model_aligned_records(
    model_id: str, svd: QKSVD, config: IngestConfig, search: AlignedSearch = aligned_pairs_here
) -> list[AlignedRecord]:
    """The model's ALIGNED singular-vector pairs under the config's threshold and top-k."""
    directions = read_directions(svd)
    return aligned_records(model_id, directions, search(directions, config))


@dataclass(frozen=True)
class ModelPart:
    """What tracing a run computes from its model's weights alone, the same for every batch and
    every shard: the query-key SVDs (``svd``, SAD's ``Ω = W_Q W_Kᵀ`` per head), the ALIGNED
    singular-vector pairs under the run's threshold and top-k, and for ACC both sides' SVDs.

    On SmolLM2-135M this is ~10 s for SAD and ~12 s for ACC on one thread (the ALIGNED pairs
    ~9 s of it), a fixed cost each shard would otherwise pay; the shards traced from one process
    share one part.
    """

    method: str
    align_params: str
    svd: QKSVD
    aligned: list[AlignedRecord]
    acc: AccSVD | None = None

    def serves(self, config: IngestConfig) -> bool:
        """Whether a run under ``config`` uses exactly this part."""
        return (self.method, self.align_params) == (config.method, config.align_params())


def model_part(
    model: LoadedModel, config: IngestConfig, search: AlignedSearch = aligned_pairs_here
) -> ModelPart:
    """The :class:`ModelPart` of ``model`` under ``config`` (in the model's dtype), its ALIGNED
    pairs found by ``search``."""
    dtype = model.bridge.cfg.dtype
    svd = model_qk_svd(model.bridge, dtype=dtype)
    return ModelPart(
        method=config.method,
        align_params=config.align_params(),
        svd=svd,
        aligned=model_aligned_records(model.provenance.model_id, svd, config, search),
        acc=model_acc_svd(model.bridge, dtype=dtype) if config.method == "acc" else None,
    )
