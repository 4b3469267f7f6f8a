"""The paths past one machine through the CLI, on the toy model and the real test server:
``trace --shard i/N`` twice then ``load`` writes the graph ``ingest`` writes, and ``trace
--workers 2`` writes the same shards as two ``--shard`` jobs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from atlas.cli import main
from atlas.interchange.shards import MANIFEST, RUN_TABLES
from atlas.store.store import AtlasStore
from tests.fixtures.graphs import assert_same_graph, dump

RUN_OPTIONS = ["--model", "toy-ioi", "--n-prompts", "12", "--batch-size", "4", "--seed", "5"]


def invoke(runner: CliRunner, *arguments: str) -> str:
    result = runner.invoke(main, list(arguments), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_trace_two_shards_then_load_writes_the_ingested_graph_and_workers_agree(
    runner: CliRunner, atlas_store: AtlasStore, tmp_path: Path
) -> None:
    run_id = f"test-cli-scale-{uuid.uuid4().hex[:8]}"
    try:
        invoke(runner, "ingest", *RUN_OPTIONS, "--run-id", run_id, "--quiet")
        expected = dump(atlas_store, run_id)
        atlas_store.delete_run(run_id)

        jobs = tmp_path / "jobs"
        for shard in ("0/2", "1/2"):
            invoke(runner, "trace", *RUN_OPTIONS, "--run", run_id, "--shard", shard, "--out",
                   str(jobs))  # fmt: skip
        output = invoke(runner, "load", run_id, str(jobs))
        assert f"Run {run_id} complete: 2 shard(s) loaded" in output
        assert_same_graph(dump(atlas_store, run_id), expected)

        pool = tmp_path / "pool"
        invoke(runner, "trace", *RUN_OPTIONS, "--run", run_id, "--workers", "2", "--out",
               str(pool))  # fmt: skip
        folders = sorted(p.name for p in pool.iterdir())
        assert folders == sorted(p.name for p in jobs.iterdir())
        for name in folders:
            assert (pool / name / MANIFEST).exists()
            for table in RUN_TABLES:
                file = f"{table}.parquet"
                assert pq.read_table(pool / name / file).equals(pq.read_table(jobs / name / file))
        output = invoke(runner, "load", run_id, str(pool))  # the same shards: nothing to write
        assert "0 shard(s) loaded, 2 already there; 0 batches written" in output
    finally:
        atlas_store.delete_run(run_id)
