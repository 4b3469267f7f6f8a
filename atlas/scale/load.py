"""The one idempotent loader: complete shards of a run written into the atlas by one writer.

Per database there is one writer (Neo4j orders every write through one leader, and hub
relationships to heads, singular vectors and the run lock their end nodes, so concurrent
writers would only contend). :func:`load_shards`:

1. reads every shard's manifest (a folder without one is refused: an incomplete shard is never
   loaded) and checks each file's size and sha256, and that all shards are of run ``R`` with
   the same provenance;
2. writes the model, its heads, singular vectors and ALIGNED pairs (MERGE: nothing new when
   they are there) and the run (as ``ingest`` does: an existing run must match);
3. per shard whose marker (``i/N`` in ``Run.loaded_shards``) is not in the database yet: every
   batch not yet marked done (``Run.done_batches``, the marker ``ingest`` commits with each
   batch) is CREATEd with its marker in one transaction, exactly as ``ingest`` writes it
   (:meth:`~atlas.store.store.AtlasStore.prepare_fresh_batch`), the next batch read and prepared
   while the writer thread sends the previous one; then the shard's marker, last;
4. recomputes the run's aggregates (``COMMUNICATES``, the counts the whole-run templates read)
   from the stored rows (:meth:`~atlas.store.runs.RunLifecycle.aggregate_run`, never an
   increment) and
   completes the run once every batch of it is in (a load that wrote nothing into a complete
   run leaves it as it is: Neo4j's ``avg`` adds in storage order, so a recomputation may move a
   mean's last bits).

A loader killed anywhere leaves whole batches (each commits with its marker); loading again
skips them and writes the rest, so the graph ends as an uninterrupted load's, and loading a
shard twice changes no count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from atlas.errors import AtlasError
from atlas.interchange.shards import Shard, read_shard, shard_folders
from atlas.store.connection import explained_errors
from atlas.store.store import AtlasStore, PreparedWrite, WriteCounts
from atlas.store.writer import check_resumable, rare_gc_passes
from ingest.records.types import RecordBatch

RUN_STATUS = "MATCH (r:Run {id: $run_id}) RETURN r.status AS status"
LOADED_SHARDS = "MATCH (r:Run {id: $run_id}) RETURN coalesce(r.loaded_shards, []) AS loaded"

# Committed after every batch of the shard: a shard is one or more transactions, marker last.
MARK_SHARD_LOADED = """
MATCH (r:Run {id: $run_id})
SET r.loaded_shards = [s IN coalesce(r.loaded_shards, []) WHERE s <> $shard] + $shard
RETURN count(r) AS written
"""


@dataclass
class LoadSummary:
    """What a load wrote; ``write_seconds`` is the time inside write transactions."""

    run_id: str
    shards_loaded: int = 0
    shards_skipped: int = 0
    batches_written: int = 0
    batches_skipped: int = 0
    prompts: int = 0
    firings: int = 0
    edges: int = 0
    communicates: int = 0
    complete: bool = False
    nodes_created: int = 0
    relationships_created: int = 0
    write_seconds: float = 0.0
    read_seconds: float = 0.0
    wall_seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def relationships_per_second(self) -> float:
        seconds = self.write_seconds
        return self.relationships_created / seconds if seconds else 0.0


def open_shards(run_id: str, paths: Sequence[Path], *, verify: bool = True) -> list[Shard]:
    """The complete shards of ``run_id`` under ``paths``, checked; refuses incomplete ones,
    shards of other runs, and shards that disagree on the run's provenance or overlap."""
    return open_runs_shards([run_id], paths, verify=verify)[run_id]


def open_runs_shards(
    run_ids: Sequence[str], paths: Sequence[Path], *, verify: bool = True
) -> dict[str, list[Shard]]:
    """Per run of ``run_ids``, its complete shards under ``paths``, checked as
    :func:`open_shards` checks one run's; refuses a run without shards there."""
    folders = shard_folders(paths)
    incomplete = []
    shards = []
    for folder in folders:
        try:
            shards.append(read_shard(folder, verify=verify))
        except AtlasError:
            if (folder / "manifest.json").exists():
                raise
            incomplete.append(folder)
    if incomplete:
        raise AtlasError(
            f"Incomplete shards (no manifest.json: their trace job did not finish) are never "
            f"loaded: {', '.join(map(str, incomplete))}. Run their `circuit-atlas trace "
            "--shard i/N` again, then load."
        )
    others = sorted({s.manifest["run"]["id"] for s in shards} - set(run_ids))
    if others:
        runs = f"run{'s' if len(run_ids) > 1 else ''} {', '.join(run_ids)}"
        raise AtlasError(f"Shards of other runs ({', '.join(others)}) given to load {runs}.")
    return {run_id: _checked_run_shards(run_id, shards, paths) for run_id in run_ids}


def _checked_run_shards(run_id: str, found: list[Shard], paths: Sequence[Path]) -> list[Shard]:
    """The run's shards among ``found``, ordered, once they agree on the run's settings and
    do not overlap."""
    shards = [shard for shard in found if shard.manifest["run"]["id"] == run_id]
    if not shards:
        raise AtlasError(f"No shards of run {run_id} in {', '.join(map(str, paths))}.")
    first = shards[0]
    keys = ("model_id", "params", "dataset")
    for shard in shards[1:]:
        if any(shard.manifest["run"][k] != first.manifest["run"][k] for k in keys):
            raise AtlasError(
                f"{shard.folder} and {first.folder} were traced with different settings."
            )
    seen: dict[int, Path] = {}
    for shard in shards:
        for index in shard.batches:
            if index in seen and seen[index] != shard.folder:
                raise AtlasError(
                    f"Batch {index} of run {run_id} is in two shards ({seen[index]} and "
                    f"{shard.folder}); load shards of one split (same N)."
                )
            seen[index] = shard.folder
    return sorted(shards, key=lambda s: (s.spec.count, s.spec.index))


def write_model_records(store: AtlasStore, shard: Shard) -> None:
    """The shard's model, its heads and singular vectors (MERGE: nothing new when they are
    there) and its ALIGNED pairs (replaced when computed with other parameters)."""
    components, vectors, aligned = shard.model_records()
    store.write_model(shard.model)
    store.write_batch(RecordBatch(components=components, singular_vectors=vectors))
    params = shard.manifest["align_params"]
    if store.aligned_params(shard.model.id) != params:
        store.replace_aligned(shard.model.id, aligned, params)


def loaded_shards(store: AtlasStore, run_id: str) -> set[str]:
    with explained_errors(store.settings):
        records = store.driver.execute_query(
            LOADED_SHARDS, run_id=run_id, database_=store.database
        ).records
    return set(records[0]["loaded"]) if records else set()


def load_shards(
    store: AtlasStore,
    run_id: str,
    paths: Sequence[Path],
    *,
    after_batch: Callable[[int], None] | None = None,
    verify: bool = True,
) -> LoadSummary:
    """Write the complete shards of ``run_id`` under ``paths`` (see the module docstring)."""
    started = time.perf_counter()
    summary = LoadSummary(run_id)
    shards = open_shards(run_id, paths, verify=verify)
    first = shards[0]
    run = first.run
    check_resumable(store, run, resume=True, rewrite=False)
    with explained_errors(store.settings):
        status = store.driver.execute_query(
            RUN_STATUS, run_id=run_id, database_=store.database
        ).records
    was_complete = bool(status) and status[0]["status"] == "complete"
    write_model_records(store, first)
    if not status:  # an existing run keeps its record and status (check_resumable matched it)
        store.create_run(run)

    already = loaded_shards(store, run_id)
    done = store.done_batches(run_id)
    seconds = summary.stage_seconds

    def timed_write(prepared: PreparedWrite) -> tuple[WriteCounts, float]:
        clock = time.perf_counter()
        return store.write_prepared(prepared), time.perf_counter() - clock

    def committed(index: int, records: RecordBatch, future: Future[tuple[WriteCounts, float]]):
        counts, elapsed = future.result()
        summary.write_seconds += elapsed
        summary.batches_written += 1
        summary.prompts += len(records.prompts)
        summary.firings += len(records.firings)
        summary.edges += len(records.edges)
        summary.nodes_created += counts.nodes_created
        summary.relationships_created += counts.relationships_created
        done.add(index)
        if after_batch is not None:
            after_batch(index)

    with rare_gc_passes(), ThreadPoolExecutor(1, thread_name_prefix="atlas-loader") as writer:
        for shard in shards:
            if shard.marker in already:
                summary.shards_skipped += 1
                continue
            pending: tuple[int, RecordBatch, Future[tuple[WriteCounts, float]]] | None = None
            clock = time.perf_counter()
            for index, records in shard.record_batches():
                if index in done:
                    summary.batches_skipped += 1
                    continue
                prepared = store.prepare_fresh_batch(records)
                seconds["read"] = seconds.get("read", 0.0) + time.perf_counter() - clock
                if pending is not None:
                    committed(*pending)
                pending = (index, records, writer.submit(timed_write, prepared))
                clock = time.perf_counter()
            if pending is not None:
                committed(*pending)
            with explained_errors(store.settings):
                store.driver.execute_query(
                    MARK_SHARD_LOADED, run_id=run_id, shard=shard.marker, database_=store.database
                )
            already.add(shard.marker)
            summary.shards_loaded += 1

    summary.read_seconds = seconds.get("read", 0.0)
    clock = time.perf_counter()
    summary.complete = set(range(first.manifest["n_batches"])) <= done
    if summary.complete and not summary.batches_written and was_complete:
        pass  # nothing new: the stored aggregate stands (recomputing only jitters float bits)
    elif summary.complete:
        store.record_behaviour(run_id)
        summary.communicates = store.complete_run(run_id)
    else:
        summary.communicates = store.aggregate_run(run_id)
    seconds["aggregate"] = time.perf_counter() - clock
    summary.wall_seconds = time.perf_counter() - started
    return summary
