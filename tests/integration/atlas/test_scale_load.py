"""Two machines simulated on this one: shards traced by separate processes, loaded by one
writer, give exactly the graph a single-process ``ingest`` of the same prompts writes.

Also: loading twice changes nothing; a shard killed before its manifest is refused and can be
traced again; a loader stopped mid-shard resumes to the same graph; the same under Ray; an ACC
run traced without the tokenizer's BOS choice loads into the graph ``ingest`` writes for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from atlas.errors import AtlasError
from atlas.interchange.shards import MANIFEST, ShardSpec
from atlas.scale.load import load_shards
from atlas.scale.trace import ModelSpec, ShardJob, trace_shard, trace_shards
from atlas.settings import Neo4jSettings
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig
from ingest.runtime import torch_threads
from tests.fixtures.graphs import assert_same_graph, dump, totals

ROOT = Path(__file__).resolve().parents[3]
CONFIG = IngestConfig(n_prompts=48, batch_size=8, seed=3)
TRACE_ARGS = ["--model", "toy-ioi", "--n-prompts", "48", "--batch-size", "8", "--seed", "3"]


def trace_process(out: Path, run_id: str, shard: str, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "atlas.cli", "trace", *TRACE_ARGS]
    command += ["--run", run_id, "--shard", shard, "--out", str(out)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[tuple[str, Any]]:
    """A run id and the graph a single-process ingest of CONFIG writes under it (then removed,
    so the tests can write the same run from shards)."""
    run_id = f"test-scale-{uuid.uuid4().hex[:8]}"
    ingest_run(atlas_store, toy_model, CONFIG, run_id=run_id, show_progress=False)
    graph = dump(atlas_store, run_id)
    atlas_store.delete_run(run_id)
    yield run_id, graph
    atlas_store.delete_run(run_id)


@pytest.fixture(scope="module")
def two_machines(
    tmp_path_factory: pytest.TempPathFactory, reference: tuple[str, Any]
) -> list[Path]:
    """Shards 0/2 and 1/2 traced by two processes at once, each into its own folder."""
    run_id, _ = reference
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = [tmp_path_factory.mktemp("machine-a"), tmp_path_factory.mktemp("machine-b")]
    processes = [trace_process(out, run_id, f"{i}/2", env) for i, out in enumerate(outs)]
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    return outs


def test_two_shard_processes_load_into_the_ingested_graph(
    atlas_store: AtlasStore, reference: tuple[str, Any], two_machines: list[Path]
) -> None:
    run_id, expected = reference
    for out in two_machines:
        assert len(list(out.glob(f"*/{MANIFEST}"))) == 1
    summary = load_shards(atlas_store, run_id, two_machines)
    assert summary.complete and summary.shards_loaded == 2
    assert summary.batches_written == 6
    graph = dump(atlas_store, run_id)
    assert sum(graph["writes"].values()) > 1000
    assert_same_graph(graph, expected)
    run = atlas_store.show_run(run_id)
    assert run is not None
    assert run["run"]["status"] == "complete"
    assert sorted(run["run"]["loaded_shards"]) == ["0/2", "1/2"]

    # Loading the same shards again changes no count (and no value).
    before = totals(atlas_store)
    again = load_shards(atlas_store, run_id, two_machines)
    assert (again.shards_skipped, again.batches_written, again.relationships_created) == (2, 0, 0)
    assert totals(atlas_store) == before
    assert_same_graph(dump(atlas_store, run_id), graph)


@pytest.fixture(scope="module")
def routing_store(neo4j_settings: Neo4jSettings) -> AtlasStore:
    """The test server through a ``neo4j://`` (routing) URI: reads go to its READ role."""
    uri = neo4j_settings.uri.replace("bolt://", "neo4j://", 1)
    return AtlasStore.connect(replace(neo4j_settings, uri=uri))


def test_a_loader_stopped_mid_shard_resumes_to_the_same_graph(
    routing_store: AtlasStore, reference: tuple[str, Any], two_machines: list[Path]
) -> None:
    """Also the loader, and the store's reads, through a routing URI."""
    atlas_store = routing_store
    assert atlas_store.settings.uri.startswith("neo4j://")
    run_id, expected = reference
    atlas_store.delete_run(run_id)

    class Killed(Exception):
        pass

    def die_after_first(index: int) -> None:
        raise Killed(index)

    with pytest.raises(Killed):
        load_shards(atlas_store, run_id, two_machines, after_batch=die_after_first)
    assert atlas_store.done_batches(run_id) == {0}  # one batch committed, no shard marker
    run = atlas_store.show_run(run_id)
    assert run is not None and not run["run"].get("loaded_shards")

    summary = load_shards(atlas_store, run_id, two_machines)
    assert summary.complete and summary.batches_skipped == 1 and summary.batches_written == 5
    graph = dump(atlas_store, run_id)
    assert_same_graph(graph, expected)


def test_a_shard_killed_before_its_manifest_is_refused_and_can_be_rerun(
    atlas_store: AtlasStore, toy_model: LoadedModel, tmp_path: Path
) -> None:
    run_id = f"test-scale-killed-{uuid.uuid4().hex[:8]}"
    kill_after_first_batch = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from atlas.interchange.shards import ShardSpec\n"
        "from atlas.scale.trace import trace_shard\n"
        "from ingest.models.loading import load_model\n"
        "from ingest.pipeline import IngestConfig\n"
        "config = IngestConfig(n_prompts=48, batch_size=8, seed=3)\n"
        "trace_shard(load_model('toy-ioi'), config, sys.argv[1], ShardSpec(0, 2), "
        "Path(sys.argv[2]), after_batch=lambda i: os.kill(os.getpid(), signal.SIGKILL))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-c", kill_after_first_batch, run_id, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert killed.returncode == -9
    folder = tmp_path / ShardSpec(0, 2).folder_name(run_id)
    assert any(folder.glob("*.parquet")) and not (folder / MANIFEST).exists()

    with pytest.raises(AtlasError, match=r"(?i)incomplete shard"):
        load_shards(atlas_store, run_id, [tmp_path])
    assert atlas_store.show_run(run_id) is None  # nothing was written

    with torch_threads(1):  # traced again here (the CLI's `trace --shard 0/2` runs this)
        trace_shard(toy_model, CONFIG, run_id, ShardSpec(0, 2), tmp_path)
    assert (folder / MANIFEST).exists()
    try:
        summary = load_shards(atlas_store, run_id, [tmp_path])
        assert summary.batches_written == 3 and not summary.complete  # shard 1/2 not traced
        assert atlas_store.show_run(run_id)["run"]["status"] == "running"  # type: ignore[index]
    finally:
        atlas_store.delete_run(run_id)


def test_two_ray_tasks_write_the_same_shards(
    atlas_store: AtlasStore, reference: tuple[str, Any], tmp_path: Path
) -> None:
    ray = pytest.importorskip(
        "ray", reason="Ray is not installed (optional extra: pip install 'circuit-atlas[ray]')"
    )
    run_id, expected = reference
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # fmt: skip
    try:
        jobs = [
            ShardJob(ModelSpec("toy-ioi"), CONFIG, run_id, ShardSpec(i, 2), str(tmp_path))
            for i in range(2)
        ]
        results = trace_shards(jobs, executor="ray")
    finally:
        ray.shutdown()
    assert [r.shard for r in results] == ["0/2", "1/2"]
    atlas_store.delete_run(run_id)
    summary = load_shards(atlas_store, run_id, [tmp_path])
    assert summary.complete
    graph = dump(atlas_store, run_id)
    assert_same_graph(graph, expected)


def test_an_acc_run_with_the_other_bos_choice_loads_into_the_ingested_graph(
    atlas_store: AtlasStore, toy_model: LoadedModel, tmp_path: Path
) -> None:
    """``trace`` carries what ``ingest --method acc --no-bos`` (or ``--bos``) writes: the ACC
    firing fields, the non-head writers with their source positions, and the prompts as
    tokenized without (with) BOS."""
    config = replace(CONFIG, n_prompts=16, method="acc")
    bos = not toy_model.prepend_bos  # the choice the tokenizer would not make
    run_id = f"test-scale-acc-{uuid.uuid4().hex[:8]}"
    default = toy_model.prepend_bos
    toy_model.prepend_bos = bos
    try:
        ingest_run(atlas_store, toy_model, config, run_id=run_id, show_progress=False)
    finally:
        toy_model.prepend_bos = default
    expected = dump(atlas_store, run_id)
    atlas_store.delete_run(run_id)
    try:
        spec = ModelSpec("toy-ioi", prepend_bos=bos)
        jobs = [ShardJob(spec, config, run_id, ShardSpec(i, 2), str(tmp_path)) for i in range(2)]
        trace_shards(jobs)
        summary = load_shards(atlas_store, run_id, [tmp_path])
        assert summary.complete and summary.shards_loaded == 2
        graph = dump(atlas_store, run_id)
        assert {dict(dict(f)["p"]).get("method") for f in graph["firings"]} == {"acc"}
        assert any(dict(dict(e)["p"]).get("writer_pos") is not None for e in graph["writes"])
        assert any("." not in dict(e)["w"] for e in graph["writes"])  # an MLP, the embedding
        assert_same_graph(graph, expected)
    finally:
        atlas_store.delete_run(run_id)
