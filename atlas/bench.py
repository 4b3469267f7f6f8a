"""Write-throughput benchmark: synthetic firings with sparse sets and edges, in batches.

Each firing brings 12 relationships (OF_HEAD, IN_PROMPT, 8 USES, 2 WRITES), so the default
100k relationships are ~8.3k firings. The benchmark run is deleted afterwards unless kept.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from atlas.store import AtlasStore, WriteCounts
from ingest.records import (
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SparseTerm,
    WriteEdgeRecord,
)

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


def synthetic_batch(run_id: str, first_firing: int, n_firings: int) -> RecordBatch:
    """Firings ``first_firing ..`` of a synthetic run, with their prompts and two edges each."""
    firings, edges, prompts = [], [], {}
    for n in range(first_firing, first_firing + n_firings):
        prompt, slot = divmod(n, FIRINGS_PER_PROMPT)
        layer, head = 1 + slot % 11, slot % 12
        terms = tuple(SparseTerm(k, k, 1.0 / (k + 1), 1) for k in range(TERMS_PER_FIRING))
        firing = FiringRecord(run_id, prompt, layer, head, 14, 2, "END", "IO", 0.7, 3.0, 8, terms)
        firings.append(firing)
        edges += [
            WriteEdgeRecord(firing.key, layer - 1, head, "q", 0.6, 14, "END"),
            WriteEdgeRecord(firing.key, 0, (head + 1) % 12, "k", 0.3, 2, "IO"),
        ]
        prompts[prompt] = PromptRecord(
            run_id, prompt, f"prompt {prompt}", "T", "ABBA", "Mary", "John", {"IO": 2}, ["x"]
        )
    return RecordBatch(prompts=list(prompts.values()), firings=firings, edges=edges)


def run_benchmark(
    store: AtlasStore, relationships: int = 100_000, batch_firings: int = 2500, keep: bool = False
) -> BenchResult:
    """Write at least ``relationships`` relationships; time only the batch transactions."""
    store.write_model(BENCH_MODEL)
    run = RunRecord(
        id=f"bench-{uuid.uuid4().hex[:8]}",
        model_id=BENCH_MODEL.id,
        model_revision=None,
        method="bench",
        params={"relationships": relationships, "batch_firings": batch_firings},
        dataset={},
        versions={},
        git_commit=None,
    )
    store.create_run(run)
    n_firings = -(-relationships // RELATIONSHIPS_PER_FIRING)
    total, batches, elapsed = WriteCounts(), 0, 0.0
    for first in range(0, n_firings, batch_firings):
        batch = synthetic_batch(run.id, first, min(batch_firings, n_firings - first))
        started = time.perf_counter()
        total += store.write_batch(batch)
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
