"""Measure the paths past one machine on one workload: ``ingest`` vs ``trace`` + ``load`` vs
``trace`` + ``load --bulk``, and the trace stage on 1 vs 2 local workers.

Runs on a local server instance of its own (it is replaced by the bulk import), each traced
shard set in a fresh temporary folder. ``circuit-atlas bench --scale`` runs it per workload
and prints :func:`scale_table`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atlas.interchange.shards import ShardSpec
from atlas.scale.bulk import bulk_load
from atlas.scale.load import load_shards
from atlas.scale.trace import ModelSpec, ShardJob, trace_shards
from atlas.server.local import LocalServer
from atlas.settings import data_dir
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.models.loading import load_model
from ingest.pipeline import IngestConfig, default_batch_size

# The nodes and relationships that are not another model's (its Model node, heads, singular
# vectors): the toy-ioi warm-ups leave their model, and the bulk import replaces the database.
MODEL_TOTALS = """
MATCH (n)
WHERE coalesce(n.model_id, CASE WHEN n:Model THEN n.id END, $model) = $model
RETURN count(n) AS n
UNION ALL
MATCH (n)-[r]->(m)
WHERE coalesce(n.model_id, CASE WHEN n:Model THEN n.id END, $model) = $model
  AND coalesce(m.model_id, CASE WHEN m:Model THEN m.id END, $model) = $model
RETURN count(r) AS n
"""

# The bench's instance starts empty: an earlier workload's model-level nodes (an ACC run's MLP,
# bias and embedding components) outlive its runs and would count as the next ingest's.
# Relationships first, so that no inner transaction holds a hub node's every relationship.
EMPTY_DATABASE = (
    "MATCH ()-[r]->() CALL (r) { DELETE r } IN TRANSACTIONS OF 10000 ROWS",
    "MATCH (n) CALL (n) { DELETE n } IN TRANSACTIONS OF 10000 ROWS",
)


def _totals(store: AtlasStore, model_id: str) -> dict[str, int]:
    """Nodes and relationships of the database, less those of other models than ``model_id``."""
    records = store._execute(MODEL_TOTALS, model=model_id)
    return {"nodes": records[0]["n"], "relationships": records[1]["n"]}


def scale_bench(
    model: str = "toy-ioi",
    n_prompts: int = 1024,
    batch_size: int | None = None,
    bolt_port: int = 17797,
    workers: tuple[int, ...] = (1, 2),
    warmup_runs: int = 2,
    method: str = "sad",
) -> dict[str, Any]:
    """The measurements (seconds, counts, throughputs) as one dict, on a server instance of
    its own (Bolt ``bolt_port``, HTTP the next port; its database is replaced)."""
    out: dict[str, Any] = {
        "model": model,
        "method": method,
        "n_prompts": n_prompts,
        "load_average": [],
    }
    instance = data_dir() / f"neo4j-scale-bench-{bolt_port}"
    server = LocalServer(
        instance=instance,
        bolt_port=bolt_port,
        http_port=bolt_port + 1,
        credentials_file=instance / "credentials.json",
    )
    store = AtlasStore.connect(server.start())
    with store.driver.session(database=store.database) as session:  # auto-commit: batched
        for statement in EMPTY_DATABASE:
            session.run(statement).consume()
    store.init_schema()
    toy = load_model("toy-ioi")
    for n in range(warmup_runs):  # the JVM's JIT (docs/performance.md, Warm-up): toy-ioi 256
        ingest_run(store, toy, IngestConfig(), run_id=f"warmup-{n}", show_progress=False)
        store.delete_run(f"warmup-{n}")
    loaded = load_model(model)
    batch_size = batch_size or default_batch_size(loaded.n_layers * loaded.n_heads)
    config = IngestConfig(n_prompts=n_prompts, batch_size=batch_size, method=method)

    run_id = (
        f"scale-{model}-{n_prompts}" if method == "sad" else f"scale-{model}-{method}-{n_prompts}"
    )
    summary = ingest_run(store, loaded, config, run_id=run_id, show_progress=False)
    out["ingest"] = {
        "wall_seconds": summary.wall_seconds,
        "write_seconds": summary.stage_seconds["write"],
        "relationships": summary.relationships_created,
        "rel_per_s": summary.relationships_per_second(),
    }
    out["load_average"].append(os.getloadavg()[0])
    model_id = loaded.provenance.model_id
    reference = _totals(store, model_id)
    store.delete_run(run_id)

    folder = Path(tempfile.mkdtemp(prefix="atlas-scale-bench-"))
    try:
        for count in workers:
            target = folder / f"w{count}"
            jobs = [
                ShardJob(ModelSpec(model), config, run_id, ShardSpec(i, count), str(target))
                for i in range(count)
            ]
            started = time.perf_counter()
            results = trace_shards(jobs, workers=count)
            out[f"trace_{count}_workers_seconds"] = time.perf_counter() - started
            # The longest shard's own time: the wall less process start, imports, model load.
            out[f"trace_{count}_workers_compute_seconds"] = max(r.seconds for r in results)
            out["load_average"].append(os.getloadavg()[0])
        shards = folder / f"w{workers[-1]}"
        size = sum(p.stat().st_size for p in shards.rglob("*.parquet"))
        out["shard_bytes"] = size
        loaded_summary = load_shards(store, run_id, [shards])
        out["load"] = {
            "wall_seconds": loaded_summary.wall_seconds,
            "write_seconds": loaded_summary.write_seconds,
            "read_seconds": loaded_summary.read_seconds,
            "relationships": loaded_summary.relationships_created,
            "rel_per_s": loaded_summary.relationships_per_second(),
        }
        out["load_average"].append(os.getloadavg()[0])
        out["load_matches_ingest"] = _totals(store, model_id) == reference
        try:
            bulk = bulk_load([run_id], [shards], server=server)
        except Exception as error:  # keep the other measurements
            out["bulk_error"] = repr(error)
            return out
        out["bulk"] = {
            "wall_seconds": bulk.wall_seconds,
            "csv_seconds": bulk.csv_seconds,
            "import_seconds": bulk.import_seconds,
            "schema_seconds": bulk.schema_seconds,
            "nodes": bulk.nodes,
            "relationships": bulk.relationships,
            "records_per_s": bulk.records_per_second(),
        }
        store = AtlasStore.connect(server.start())
        out["bulk_totals"] = _totals(store, model_id)
        out["reference_totals"] = reference
        out["bulk_matches_ingest"] = out["bulk_totals"] == reference
        out["load_average"].append(os.getloadavg()[0])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        server.stop()
    return out


def _column(result: dict[str, Any]) -> list[str]:
    """``toy-ioi 1024``, ``smollm2-135m acc 256``: the method is named unless it is SAD."""
    method = [] if result.get("method", "sad") == "sad" else [result["method"]]
    return [result["model"], *method, str(result["n_prompts"])]


def scale_table(results: Sequence[dict[str, Any]]) -> str:
    """The measurements of :func:`scale_bench`, one column per workload."""
    names = [" ".join(_column(r)) for r in results]

    def row(label: str, value: Callable[[dict[str, Any]], Any], unit: str = "") -> str:
        cells = []
        for r in results:
            try:
                found = value(r)
            except (KeyError, TypeError):  # a stage that failed (bulk_error) or did not run
                cells.append("-")
                continue
            if isinstance(found, float):
                cells.append(f"{found:,.1f}{unit}")
            elif isinstance(found, int):
                cells.append(f"{found:,}{unit}")
            else:
                cells.append(f"{found}{unit}")
        return f"{label:<34}" + "".join(f"{c:>20}" for c in cells)

    def trace_load(r: dict[str, Any]) -> float:
        return float(r["trace_1_workers_seconds"] + r["load"]["wall_seconds"])

    def speedup(r: dict[str, Any]) -> float:
        return float(r["trace_1_workers_seconds"] / r["trace_2_workers_seconds"])

    def compute_speedup(r: dict[str, Any]) -> float:
        one, two = (r[f"trace_{n}_workers_compute_seconds"] for n in (1, 2))
        return float(one / two)

    lines = [
        f"{'':<34}" + "".join(f"{n:>20}" for n in names),
        row("ingest, wall", lambda r: float(r["ingest"]["wall_seconds"]), " s"),
        row("trace (1 worker) + load, wall", trace_load, " s"),
        row("trace, 1 worker", lambda r: float(r["trace_1_workers_seconds"]), " s"),
        row("trace, 2 workers", lambda r: float(r["trace_2_workers_seconds"]), " s"),
        row("trace speed-up, 2 vs 1 workers", speedup, "×"),
        row("  longest shard, 1 worker", lambda r: r["trace_1_workers_compute_seconds"], " s"),
        row("  longest shard, 2 workers", lambda r: r["trace_2_workers_compute_seconds"], " s"),
        row("  speed-up without process start", compute_speedup, "×"),
        row("load, wall", lambda r: float(r["load"]["wall_seconds"]), " s"),
        row("bulk (CSV+import+restart+schema)", lambda r: float(r["bulk"]["wall_seconds"]), " s"),
        row("relationships written", lambda r: int(r["load"]["relationships"])),
        row("ingest write, rel/s", lambda r: float(r["ingest"]["rel_per_s"])),
        row("load (online) write, rel/s", lambda r: float(r["load"]["rel_per_s"])),
        row("bulk import, records/s", lambda r: float(r["bulk"]["records_per_s"])),
        row("bulk import, s", lambda r: float(r["bulk"]["import_seconds"])),
        row("shards on disk, MiB", lambda r: r["shard_bytes"] / 2**20),
        row("load = ingest graph (counts)", lambda r: str(r["load_matches_ingest"])),
        row("bulk = ingest graph (counts)", lambda r: str(r["bulk_matches_ingest"])),
        row("load average (1 min), max", lambda r: max(r["load_average"])),
    ]
    errors = [f"{n}: bulk failed: {r['bulk_error']}" for n, r in zip(names, results, strict=True)
              if "bulk_error" in r]  # fmt: skip
    return "\n".join(lines + errors)
