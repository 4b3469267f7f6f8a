"""Benchmarks: the ingestion per stage, the per-pair reference, query latency, raw writes.

:func:`run_bench` is what ``circuit-atlas bench`` prints. Each measurement is a fresh run in
a fresh process (``python -m atlas.bench WORKLOAD N``), so peak RSS and model-load time are
those of one job; the run is deleted afterwards. Figures are medians over ``repeats``
measurements, each recorded with the machine's 1-minute load average at its start (on a
shared machine the load explains most of the spread).

:func:`bench_reference` times the vectorized decomposition against the slow per-pair
reference (:mod:`ingest.decomposition.reference`) on the same activations and checks that
both find the same firings with the same sparse sets. :func:`time_templates` runs every read
template that has an ``example-toy`` header on a toy-ioi run (its ``run_id`` replaced) and
reports p50/p95.

:func:`run_benchmark` (``circuit-atlas db bench``) writes synthetic firings through the same
fresh-batch path as an ingestion, without a model: the database's share on its own.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np

from atlas.errors import AtlasError
from atlas.store.store import AtlasStore, WriteCounts
from ingest.records.types import (
    BatchDone,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SparseTerm,
    WriteEdgeRecord,
)
from queries.templates import all_templates

WORKLOADS = ("toy-ioi", "random-gpt2")  # the default set
# Also accepted: SmolLM2-135M (needs `circuit-atlas models install smollm2-135m`; 256 prompts,
# target ≤ 5 min wall and ≤ 6 GiB RSS on a 2-core machine).
EXTRA_WORKLOADS = ("smollm2-135m",)
ALL_WORKLOADS = WORKLOADS + EXTRA_WORKLOADS
ROW_STAGES = (
    "model load",
    "svd",
    "align",
    "forward",
    "decompose",
    "trace",
    "records",
    "write",
    "aggregate",
)


@dataclass(frozen=True)
class IngestFigures:
    """One ingestion measured: seconds per stage, counts, write throughput, peak RSS.

    Stage seconds are work done; ``forward`` … ``records`` overlap ``write`` (pipelining), so
    they add up to more than ``wall_seconds`` (model load plus the whole job).
    """

    workload: str
    n_prompts: int
    stage_seconds: dict[str, float]
    wall_seconds: float
    firings: int
    edges: int
    relationships: int
    peak_rss_mb: float
    load_average: float
    query_latency: dict[str, dict[str, float]] = field(default_factory=dict)
    method: str = "sad"

    @property
    def label(self) -> str:
        """The workload, with its method when it is not SAD (``toy-ioi acc``)."""
        return self.workload if self.method == "sad" else f"{self.workload} {self.method}"

    @property
    def relationships_per_second(self) -> float:
        seconds = self.stage_seconds["write"]
        return self.relationships / seconds if seconds else 0.0

    @property
    def prompts_per_second(self) -> float:
        return self.n_prompts / self.wall_seconds


@dataclass(frozen=True)
class ReferenceFigures:
    """The vectorized decomposition against the per-pair reference on the same input."""

    workload: str
    n_prompts: int
    firings: int
    identical: bool
    vectorized_seconds: float
    reference_seconds: float

    @property
    def speedup(self) -> float:
        return self.reference_seconds / self.vectorized_seconds


@dataclass(frozen=True)
class FirstFeedback:
    """How soon ``circuit-atlas ingest`` shows that it works, in seconds from its process's
    start: its first line on stderr, the line naming the run (the model is loaded, the job
    starts) and the first batch committed."""

    workload: str
    n_prompts: int
    first_line: str
    first_line_seconds: float
    model_loaded_seconds: float
    first_batch_seconds: float

    def sentence(self) -> str:
        return (
            f"First feedback ({self.workload}, `circuit-atlas ingest --n-prompts "
            f"{self.n_prompts}`, from the process start): first progress after "
            f"{self.first_line_seconds:.1f} s ({self.first_line!r}), model loaded after "
            f"{self.model_loaded_seconds:.1f} s, first batch written after "
            f"{self.first_batch_seconds:.1f} s."
        )


@dataclass(frozen=True)
class BenchReport:
    """Every measurement of a ``circuit-atlas bench`` and its medians."""

    measurements: list[IngestFigures]
    reference: ReferenceFigures | None
    machine: str
    warmup: list[IngestFigures] = field(default_factory=list)
    first_feedback: list[FirstFeedback] = field(default_factory=list)

    def medians(self) -> dict[tuple[str, int], dict[str, float]]:
        """Per (workload, n_prompts): the median of every figure over the repeats."""
        grouped: dict[tuple[str, int], list[IngestFigures]] = {}
        for figures in self.measurements:
            grouped.setdefault((figures.label, figures.n_prompts), []).append(figures)
        return {key: _median_figures(group) for key, group in grouped.items()}

    def query_latency(self) -> dict[str, dict[str, float]]:
        for figures in self.measurements:
            if figures.query_latency:
                return figures.query_latency
        return {}

    def to_json(self) -> dict[str, Any]:
        def figures_json(f: IngestFigures) -> dict[str, Any]:
            return {
                **asdict(f),
                "relationships_per_second": f.relationships_per_second,
                "prompts_per_second": f.prompts_per_second,
            }

        return {
            "machine": self.machine,
            "warmup": [figures_json(f) for f in self.warmup],
            "measurements": [figures_json(f) for f in self.measurements],
            "medians": [
                {"workload": label, "n_prompts": n, **figures}
                for (label, n), figures in self.medians().items()
            ],
            "reference": None
            if self.reference is None
            else {**asdict(self.reference), "speedup": self.reference.speedup},
            "query_latency_ms": self.query_latency(),
            "first_feedback": [asdict(f) for f in self.first_feedback],
        }

    def table(self) -> str:
        """Markdown tables: stages × workloads, the reference check, query latency."""
        medians = self.medians()
        columns = [f"{workload} {n}" for workload, n in medians]
        lines = [
            f"Machine: {self.machine}. Medians of {self._repeats()} fresh runs per column.",
            *self._warmup_lines(),
            "",
            "| stage | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        rows: list[tuple[str, str, str]] = [
            *((f"{stage} (s)", stage, ".1f") for stage in ROW_STAGES),
            # the compute floor: each compute stage's target is at most 3× this
            ("forward + svd (s)", "compute_floor", ".1f"),
            ("total wall (s)", "wall_seconds", ".1f"),
            ("prompts/s (wall)", "prompts_per_second", ".1f"),
            ("firings", "firings", ",.0f"),
            ("edges (WRITES)", "edges", ",.0f"),
            ("relationships", "relationships", ",.0f"),
            ("written rel/s", "relationships_per_second", ",.0f"),
            ("peak RSS (MiB)", "peak_rss_mb", ",.0f"),
            ("load average", "load_average", ".1f"),
        ]
        for label, key, spec in rows:
            cells = [format(figures[key], spec) for figures in medians.values()]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if self.first_feedback:
            lines += ["", *(f.sentence() for f in self.first_feedback)]
        if self.reference is not None:
            r = self.reference
            verdict = "identical" if r.identical else "DIFFERENT"
            lines += [
                "",
                f"Reference check ({r.workload}, {r.n_prompts} prompts, {r.firings} firings): "
                f"{verdict} firings and sparse sets; vectorized {r.vectorized_seconds:.3f} s, "
                f"per-pair reference {r.reference_seconds:.2f} s ({r.speedup:,.0f}× faster).",
            ]
        latency = self.query_latency()
        if latency:
            lines += ["", "| template | p50 (ms) | p95 (ms) |", "|---|---:|---:|"]
            lines += [
                f"| {name} | {times['p50']:.1f} | {times['p95']:.1f} |"
                for name, times in latency.items()
            ]
        return "\n".join(lines)

    def _warmup_lines(self) -> list[str]:
        if not self.warmup:
            return []
        first = self.warmup[0]
        rates = ", ".join(f"{f.relationships_per_second:,.0f}" for f in self.warmup)
        return [
            f"Warm-up first, not in the medians: {len(self.warmup)} {first.workload} "
            f"{first.n_prompts}-prompt run(s), written rel/s {rates} (a freshly started Neo4j "
            "compiles its write path during its first runs)."
        ]

    def _repeats(self) -> int:
        counts: dict[tuple[str, int], int] = {}
        for figures in self.measurements:
            key = (figures.label, figures.n_prompts)
            counts[key] = counts.get(key, 0) + 1
        return min(counts.values(), default=0)


def _median_figures(group: list[IngestFigures]) -> dict[str, float]:
    def median(values: Iterable[float]) -> float:
        return float(statistics.median(values))

    figures = {
        stage: median(f.stage_seconds.get(stage, 0.0) for f in group) for stage in ROW_STAGES
    }
    for name in ("wall_seconds", "firings", "edges", "relationships", "peak_rss_mb"):
        figures[name] = median(getattr(f, name) for f in group)
    figures["compute_floor"] = figures["forward"] + figures["svd"]
    figures["load_average"] = median(f.load_average for f in group)
    figures["prompts_per_second"] = median(f.prompts_per_second for f in group)
    figures["relationships_per_second"] = median(f.relationships_per_second for f in group)
    return figures


def machine_description() -> str:
    """CPU model, cores and memory of this machine (Linux /proc when available)."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB"


def load_average() -> float:
    return os.getloadavg()[0]


# ----- one ingestion (run in its own process by run_bench) ----------------------------------


def bench_ingest(
    store: AtlasStore,
    workload: str,
    n_prompts: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    query_repeats: int = 0,
    method: str = "sad",
) -> IngestFigures:
    """Load the model, ingest a fresh run, optionally time the templates on it, delete it."""
    from atlas.store.writer import ingest_run, peak_memory_mb
    from ingest.models.loading import load_model
    from ingest.pipeline import IngestConfig, default_batch_size

    load_at_start = load_average()
    started = time.perf_counter()
    model = load_model(workload, device=device, seed=seed)
    load_seconds = time.perf_counter() - started
    batch_size = batch_size or default_batch_size(model.n_layers * model.n_heads)
    config = IngestConfig(n_prompts=n_prompts, batch_size=batch_size, seed=seed, method=method)
    run_id = f"bench-{workload}-{method}-n{n_prompts}-{uuid.uuid4().hex[:8]}"
    try:
        summary = ingest_run(store, model, config, run_id=run_id, show_progress=False)
        latency = time_templates(store, run_id, query_repeats) if query_repeats else {}
    finally:
        store.delete_run(run_id)
    return IngestFigures(
        workload=workload,
        n_prompts=n_prompts,
        stage_seconds={"model load": load_seconds, **summary.stage_seconds},
        wall_seconds=load_seconds + summary.wall_seconds,
        firings=summary.firings,
        edges=summary.edges,
        relationships=summary.relationships_created,
        peak_rss_mb=peak_memory_mb(),
        load_average=load_at_start,
        query_latency=latency,
        method=method,
    )


def time_templates(
    store: AtlasStore,
    run_id: str,
    repeats: int = 20,
    parameters_of: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, float]]:
    """p50 and p95 (ms) of every read template with an ``example-toy`` header, on ``run_id``.

    Each template runs once unmeasured (query planning, page cache), then ``repeats`` times.
    ``parameters_of`` replaces some example-toy parameters per template (another model's heads).
    """
    latency = {}
    for template in all_templates():
        if template.mode != "read" or template.example_toy is None:
            continue
        parameters = {
            **template.example_toy,
            **(parameters_of or {}).get(template.name, {}),
            "run_id": run_id,
        }
        store.read_template(template.name, **parameters)
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            store.read_template(template.name, **parameters)
            seconds.append(time.perf_counter() - started)
        p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
        latency[template.name] = {"p50": float(p50), "p95": float(p95)}
    return latency


# ----- the reference -------------------------------------------------------------------------


def bench_reference(
    workload: str = "toy-ioi", n_prompts: int = 4, seed: int = 0
) -> ReferenceFigures:
    """Decompose ``n_prompts`` prompts both ways (float64) and compare firings and sparse sets."""
    from ingest.decomposition.activations import model_qk_svd, run_activations
    from ingest.decomposition.reference import reference_firings
    from ingest.decomposition.sad import FiringRule, decompose_layer
    from ingest.models.loading import load_model
    from ingest.prompts.ioi import generate_prompts, tokenize_prompts

    model = load_model(workload, seed=seed)
    svd = model_qk_svd(model.bridge)
    batch = tokenize_prompts(
        generate_prompts(n_prompts, "mixed", seed=seed, tokenizer=model.tokenizer),
        model.tokenizer,
        prepend_bos=model.prepend_bos,
    )
    activations = run_activations(model.bridge, batch.tokens, batch.mask)
    rule = FiringRule()
    vectorized = reference = 0.0
    engine_rows: list[tuple[Any, ...]] = []
    reference_rows: list[tuple[Any, ...]] = []
    for layer, (x, pattern) in enumerate(
        zip(activations.normalized, activations.patterns, strict=True)
    ):
        x, pattern = x.double(), pattern.double()
        decompose_layer(x, pattern, batch.mask, svd, layer, rule)  # warm-up, not timed
        started = time.perf_counter()
        engine = decompose_layer(x, pattern, batch.mask, svd, layer, rule)
        vectorized += time.perf_counter() - started
        started = time.perf_counter()
        found = reference_firings(
            x, pattern, batch.mask, svd.U[layer], svd.sigma[layer], svd.V[layer], layer
        )
        reference += time.perf_counter() - started
        for f in range(len(engine)):
            size = int(engine.n_svs[f])
            engine_rows.append(
                (
                    layer,
                    int(engine.prompt[f]),
                    int(engine.head[f]),
                    int(engine.dest[f]),
                    int(engine.src[f]),
                    tuple(engine.sv_order[f, :size].tolist()),
                    tuple(float(s) for s in engine.signs[f, :size].tolist()),
                )
            )
        reference_rows += [
            (layer, r.prompt, r.head, r.dest, r.src, r.sparse_set, r.signs) for r in found
        ]
    return ReferenceFigures(
        workload=workload,
        n_prompts=n_prompts,
        firings=len(reference_rows),
        identical=sorted(engine_rows) == sorted(reference_rows),
        vectorized_seconds=vectorized,
        reference_seconds=reference,
    )


# ----- the whole bench -----------------------------------------------------------------------


def run_bench(
    workloads: Iterable[str] = WORKLOADS,
    prompt_counts: Iterable[int] = (256, 1024),
    *,
    repeats: int = 3,
    batch_size: int | None = None,
    device: str = "cpu",
    reference_prompts: int = 4,
    query_repeats: int = 20,
    warmup_runs: int = 4,
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    methods: Iterable[str] = ("sad",),
) -> BenchReport:
    """Every (workload, N) ``repeats`` times, each in a fresh process; then the reference.

    First, ``warmup_runs`` toy-ioi runs at the smallest N, reported apart: Neo4j's JIT compiles
    its write path during its first million or so relationships (a server started just before
    the bench wrote toy-ioi 256 at 15k, 30k and 36k rel/s in its first three runs, then 47-56k).
    The first toy-ioi run of the largest N also times the templates (``query_repeats`` > 0).
    ``env`` adds to the child processes' environment (e.g. ``NEO4J_*`` settings).
    ``methods``: each (workload, N) is measured once per method (``sad``, ``acc``).
    """
    workloads, counts = tuple(workloads), sorted(set(prompt_counts))
    child = partial(_bench_in_child, batch_size=batch_size, device=device, env=env)
    warmup = []
    for run in range(warmup_runs):
        if progress is not None:
            progress(f"warm-up, toy-ioi, {counts[0]} prompts, run {run + 1} of {warmup_runs}")
        warmup.append(child("toy-ioi", counts[0], query_repeats=0))
    measurements = []
    query_run = ("toy-ioi", counts[-1]) if query_repeats and "toy-ioi" in workloads else None
    methods = tuple(methods)
    for repeat in range(repeats):
        for workload in workloads:
            for n_prompts in counts:
                for method in methods:
                    if progress is not None:
                        progress(
                            f"{workload} {method}, {n_prompts} prompts, run {repeat + 1} of "
                            f"{repeats}"
                        )
                    with_queries = (
                        repeat == 0 and (workload, n_prompts) == query_run and method == methods[0]
                    )
                    queries = query_repeats if with_queries else 0
                    measurements.append(
                        child(workload, n_prompts, query_repeats=queries, method=method)
                    )
    first_feedback = []
    for workload in workloads:
        if progress is not None:
            progress(f"first feedback of `circuit-atlas ingest`, {workload}")
        first_feedback.append(
            time_first_feedback(workload, counts[0], batch_size=batch_size, device=device, env=env)
        )
    reference = None
    if reference_prompts:
        if progress is not None:
            progress(f"per-pair reference, {reference_prompts} prompts")
        reference = bench_reference(n_prompts=reference_prompts)
    return BenchReport(measurements, reference, machine_description(), warmup, first_feedback)


def time_first_feedback(
    workload: str,
    n_prompts: int,
    *,
    batch_size: int | None = None,
    device: str = "cpu",
    env: dict[str, str] | None = None,
) -> FirstFeedback:
    """Start ``circuit-atlas ingest`` in a new process and time its first line on stderr, the
    line naming its run and its first committed batch; then stop it and delete the run."""
    store = AtlasStore.connect()
    run_id = f"bench-first-{workload}-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "atlas.cli", "ingest", "--model", workload, "--n-prompts"]
    command += [str(n_prompts), "--device", device]
    command += ["--batch-size", str(batch_size)] if batch_size else []
    command += ["--run-id", run_id, "--quiet"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stderr is not None
    try:
        first_line = process.stderr.readline().strip()
        first_line_seconds = time.perf_counter() - started
        for line in process.stderr:
            if line.strip() == f"Run {run_id}":
                break
        model_loaded_seconds = time.perf_counter() - started
        while not store.done_batches(run_id):
            if process.poll() is not None:
                raise AtlasError(f"The first-feedback run of {workload} ended without a batch.")
            time.sleep(0.01)
        first_batch_seconds = time.perf_counter() - started
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
        store.delete_run(run_id)
    return FirstFeedback(
        workload,
        n_prompts,
        first_line,
        first_line_seconds,
        model_loaded_seconds,
        first_batch_seconds,
    )


def _bench_in_child(
    workload: str,
    n_prompts: int,
    *,
    batch_size: int | None,
    device: str,
    query_repeats: int,
    env: dict[str, str] | None,
    method: str = "sad",
) -> IngestFigures:
    batch = str(batch_size or 0)  # 0: the model's default
    arguments = [workload, str(n_prompts), batch, device, str(query_repeats), method]
    result = subprocess.run(
        [sys.executable, "-m", "atlas.bench", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise AtlasError(f"The benchmark run {workload} × {n_prompts} failed: {last}")
    return IngestFigures(**json.loads(result.stdout.strip().splitlines()[-1]))


def _child(arguments: list[str]) -> None:
    """``python -m atlas.bench WORKLOAD N BATCH_SIZE DEVICE QUERY_REPEATS [METHOD]``: one JSON
    line (``BATCH_SIZE`` 0: the model's default)."""
    from atlas.cli.quiet import quiet_libraries

    workload, n_prompts, batch_size, device, query_repeats, *rest = arguments
    method = rest[0] if rest else "sad"
    quiet_libraries()
    figures = bench_ingest(
        AtlasStore.connect(),
        workload,
        int(n_prompts),
        batch_size=int(batch_size) or None,
        device=device,
        query_repeats=int(query_repeats),
        method=method,
    )
    print(json.dumps(asdict(figures)))


# ----- synthetic writes (`circuit-atlas db bench`) -------------------------------------------

BENCH_MODEL = ModelRecord(id="bench-gpt2-shaped", n_layers=12, n_heads=12, d_model=768, d_head=64)
TERMS_PER_FIRING = 8
RELATIONSHIPS_PER_FIRING = 2 + TERMS_PER_FIRING + 2
FIRINGS_PER_PROMPT = 100


@dataclass(frozen=True)
class BenchResult:
    run_id: str
    relationships: int
    nodes: int
    batches: int
    write_seconds: float
    delete_seconds: float | None

    @property
    def relationships_per_second(self) -> float:
        return self.relationships / self.write_seconds


def synthetic_batch(run_id: str, first_prompt: int, n_prompts: int) -> RecordBatch:
    """Prompts ``first_prompt ..`` of a synthetic run, 100 firings each with two edges each."""
    firings, edges, prompts = [], [], []
    for prompt in range(first_prompt, first_prompt + n_prompts):
        prompts.append(
            PromptRecord(
                run_id=run_id,
                idx=prompt,
                text=f"prompt {prompt}",
                template="T",
                order="ABBA",
                io="Mary",
                s="John",
                roles={"IO": 2},
                tokens=["x"],
                logit_diff=1.0,
            )
        )
        for slot in range(FIRINGS_PER_PROMPT):
            layer, head = 1 + slot % 11, slot % 12
            terms = tuple(SparseTerm(k, k, 1.0 / (k + 1), 1) for k in range(TERMS_PER_FIRING))
            firing = FiringRecord(
                run_id=run_id,
                prompt=prompt,
                layer=layer,
                head=head,
                dest=14,
                src=2 + slot // 12,
                dest_role="END",
                src_role="IO",
                attn=0.7,
                score=3.0,
                n_svs=8,
                sparse_set=terms,
            )
            firings.append(firing)
            edges += [
                WriteEdgeRecord(
                    firing=firing.key,
                    writer_layer=layer - 1,
                    writer_head=head,
                    side="q",
                    weight=0.6,
                    pos=14,
                    role="END",
                ),
                WriteEdgeRecord(
                    firing=firing.key,
                    writer_layer=0,
                    writer_head=(head + 1) % 12,
                    side="k",
                    weight=0.3,
                    pos=2,
                    role="IO",
                ),
            ]
    return RecordBatch(prompts=prompts, firings=firings, edges=edges)


def run_benchmark(
    store: AtlasStore, relationships: int = 100_000, batch_prompts: int = 32, keep: bool = False
) -> BenchResult:
    """Write at least ``relationships`` relationships; time only the batch transactions."""
    from ingest.records.types import ComponentRecord, SingularVectorRecord

    store.write_model(BENCH_MODEL)
    run = RunRecord(
        id=f"bench-{uuid.uuid4().hex[:8]}",
        model_id=BENCH_MODEL.id,
        model_revision=None,
        method="bench",
        params={"relationships": relationships, "batch_prompts": batch_prompts},
        dataset={},
        versions={},
        git_commit=None,
    )
    store.create_run(run)
    shape = [(layer, head) for layer in range(12) for head in range(12)]
    store.write_batch(
        RecordBatch(
            components=[ComponentRecord(BENCH_MODEL.id, "head", *key) for key in shape],
            singular_vectors=[
                SingularVectorRecord(BENCH_MODEL.id, *key, index, 1.0)
                for key in shape
                for index in range(TERMS_PER_FIRING)
            ],
        )
    )
    per_prompt = FIRINGS_PER_PROMPT * RELATIONSHIPS_PER_FIRING + 1
    n_prompts = -(-relationships // per_prompt)
    total, batches, elapsed = WriteCounts(), 0, 0.0
    for first in range(0, n_prompts, batch_prompts):
        batch = synthetic_batch(run.id, first, min(batch_prompts, n_prompts - first))
        started = time.perf_counter()
        total += store.write_fresh_batch(replace(batch, done=BatchDone(run.id, batches)))
        elapsed += time.perf_counter() - started
        batches += 1
    delete_seconds = None
    if not keep:
        started = time.perf_counter()
        store.delete_run(run.id)
        delete_seconds = time.perf_counter() - started
    return BenchResult(
        run.id, total.relationships_created, total.nodes_created, batches, elapsed, delete_seconds
    )


if __name__ == "__main__":
    _child(sys.argv[1:])
