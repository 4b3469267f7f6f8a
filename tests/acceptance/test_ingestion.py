"""End-to-end ingestion on the toy model into the real Neo4j test server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.errors import AtlasError
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.decomposition.activations import model_qk_svd
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig, chunks, process_batch
from ingest.prompts.ioi import generate_prompts
from ingest.records.build import batch_records

CONFIG = IngestConfig(n_prompts=12, batch_size=4, seed=3)

SNAPSHOT_QUERIES = {
    "prompts": "MATCH (p:Prompt {run_id: $run_id}) RETURN p.idx, p.text, p.roles ORDER BY p.idx",
    "firings": """
        MATCH (p:Prompt {run_id: $run_id})<-[:IN_PROMPT]-(f:Firing)-[:OF_HEAD]->(h:Head)
        RETURN f.prompt, h.id, f.dest, f.src, f.dest_role, f.src_role, round(f.attn, 6),
               round(f.score, 5), f.n_svs
        ORDER BY f.prompt, h.id, f.dest, f.src""",
    "sparse_sets": """
        MATCH (f:Firing {run_id: $run_id})-[u:USES]->(sv:SingularVector)
        RETURN f.prompt, f.layer, f.head, f.dest, f.src, sv.index, u.rank, u.sign,
               round(u.term, 5)
        ORDER BY f.prompt, f.layer, f.head, f.dest, f.src, u.rank""",
    "edges": """
        MATCH (w:Component)-[e:WRITES]->(f:Firing {run_id: $run_id})
        RETURN w.id, f.prompt, f.layer, f.head, f.dest, f.src, e.side, e.pos, e.role,
               round(e.weight, 5)
        ORDER BY f.prompt, f.layer, f.head, f.dest, f.src, e.side, w.id""",
    "communicates": """
        MATCH (w:Component)-[c:COMMUNICATES {run_id: $run_id}]->(h:Head)
        RETURN w.id, h.id, c.side, c.role, c.n_prompts, round(c.mean_weight, 5)
        ORDER BY w.id, h.id, c.side, c.role""",
}


def snapshot(store: AtlasStore, run_id: str) -> dict[str, list[list[Any]]]:
    """Everything a run put in the graph, without its id, for comparing two runs."""
    return {
        name: [
            list(record.values())
            for record in store.driver.execute_query(query, run_id=run_id).records
        ]
        for name, query in SNAPSHOT_QUERIES.items()
    }


def unique_run_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def run_ids(atlas_store: AtlasStore):
    """Run ids a test creates; every one is deleted afterwards."""
    created: list[str] = []
    yield created
    for run_id in created:
        atlas_store.delete_run(run_id)


@pytest.fixture(scope="module")
def clean_run(atlas_store: AtlasStore, toy_model: LoadedModel):
    """One uninterrupted run of CONFIG on the toy model (shared by the comparisons)."""
    run_id = unique_run_id("clean")
    summary = ingest_run(atlas_store, toy_model, CONFIG, run_id=run_id, show_progress=False)
    yield run_id, summary, snapshot(atlas_store, run_id)
    atlas_store.delete_run(run_id)


def test_counts_in_neo4j_equal_counts_of_records(
    atlas_store: AtlasStore, toy_model: LoadedModel, clean_run
) -> None:
    run_id, summary, graph = clean_run
    # Records computed again here, without the store, batch by batch.
    svd = model_qk_svd(toy_model.bridge)
    prompts = generate_prompts(CONFIG.n_prompts, CONFIG.prompt_type, seed=CONFIG.seed)
    n_firings = n_edges = n_terms = 0
    for index, chunk in enumerate(chunks(prompts, CONFIG.batch_size)):
        result = process_batch(toy_model, svd, chunk, CONFIG.rule, trace=True)
        records = batch_records(run_id, result, index * CONFIG.batch_size, toy_model.tokenizer)
        n_firings += len(records.firings)
        n_edges += len(records.edges)
        n_terms += sum(len(f.sparse_set) for f in records.firings)
    assert n_firings > 0 and n_edges > 0
    assert (summary.prompts, summary.firings, summary.edges) == (12, n_firings, n_edges)
    assert len(graph["prompts"]) == 12
    assert len(graph["firings"]) == n_firings
    assert len(graph["edges"]) == n_edges
    assert len(graph["sparse_sets"]) == n_terms
    shown = atlas_store.show_run(run_id)
    assert shown is not None and shown["run"]["status"] == "complete"
    assert shown["communicates"] == summary.communicates > 0


def test_communicates_count_distinct_prompts(clean_run) -> None:
    """Recompute the aggregate from the snapshot's per-prompt edges, in Python."""
    _, _, graph = clean_run
    grouped: dict[tuple, tuple[set[int], list[float]]] = {}
    for writer, prompt, layer, head, _d, _s, side, _pos, role, weight in graph["edges"]:
        key = (writer, f"{layer}.{head}", side, role)
        prompts, weights = grouped.setdefault(key, (set(), []))
        prompts.add(prompt)
        weights.append(weight)
    expected = sorted(
        [w, h, side, role, len(p), round(sum(ws) / len(ws), 5)]
        for (w, h, side, role), (p, ws) in grouped.items()
    )
    found = sorted(graph["communicates"])
    assert [row[:5] for row in found] == [row[:5] for row in expected]
    for got, want in zip(found, expected, strict=True):
        assert got[5] == pytest.approx(want[5], abs=1e-4)


def test_rewrite_of_the_same_run_creates_nothing_new(
    atlas_store: AtlasStore, toy_model: LoadedModel, clean_run
) -> None:
    run_id, _, graph = clean_run
    again = ingest_run(
        atlas_store, toy_model, CONFIG, run_id=run_id, rewrite=True, show_progress=False
    )
    assert again.batches_written == 3
    assert (again.nodes_created, again.relationships_created) == (0, 0)
    assert snapshot(atlas_store, run_id) == graph


def test_existing_run_needs_resume_or_rewrite(
    atlas_store: AtlasStore, toy_model: LoadedModel, clean_run
) -> None:
    run_id, _, _ = clean_run
    with pytest.raises(AtlasError, match="--resume"):
        ingest_run(atlas_store, toy_model, CONFIG, run_id=run_id, show_progress=False)
    other = IngestConfig(n_prompts=12, batch_size=4, seed=4)
    with pytest.raises(AtlasError, match="different dataset"):
        ingest_run(atlas_store, toy_model, other, run_id=run_id, resume=True, show_progress=False)


def test_interrupt_then_resume_gives_the_clean_graph(
    atlas_store: AtlasStore, toy_model: LoadedModel, clean_run, run_ids: list[str]
) -> None:
    _, _, clean_graph = clean_run
    run_id = unique_run_id("interrupted")
    run_ids.append(run_id)

    def interrupt_after_first(index: int) -> None:
        if index == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_run(
            atlas_store,
            toy_model,
            CONFIG,
            run_id=run_id,
            show_progress=False,
            after_batch=interrupt_after_first,
        )
    shown = atlas_store.show_run(run_id)
    assert shown is not None and shown["run"]["status"] == "failed"
    assert atlas_store.done_batches(run_id) == {0}
    assert shown["prompts"] == CONFIG.batch_size  # the first batch, whole, and nothing else

    resumed = ingest_run(
        atlas_store, toy_model, CONFIG, run_id=run_id, resume=True, show_progress=False
    )
    assert (resumed.batches_skipped, resumed.batches_written) == (1, 2)
    assert snapshot(atlas_store, run_id) == clean_graph


def test_two_runs_side_by_side_stay_separate(
    atlas_store: AtlasStore, toy_model: LoadedModel, clean_run, run_ids: list[str]
) -> None:
    clean_id, _, clean_graph = clean_run
    other_id = unique_run_id("other")
    run_ids.append(other_id)
    other = IngestConfig(n_prompts=8, batch_size=4, seed=5)
    ingest_run(atlas_store, toy_model, other, run_id=other_id, show_progress=False)
    assert snapshot(atlas_store, clean_id) == clean_graph
    assert len(snapshot(atlas_store, other_id)["prompts"]) == 8
    atlas_store.delete_run(other_id)
    assert snapshot(atlas_store, clean_id) == clean_graph


def test_killed_process_resumes_to_the_clean_graph(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], run_ids: list[str]
) -> None:
    """SIGKILL the CLI after its first committed batch, then --resume with the same command.

    Batches of one prompt give 12 transactions, so the kill lands mid-run.
    """
    clean_id, killed_id = unique_run_id("clean1"), unique_run_id("killed")
    run_ids += [clean_id, killed_id]
    env = {**os.environ, **neo4j_env}

    def command(run_id: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            "from atlas.cli import main; main()",
            "ingest",
            "--model",
            "toy-ioi",
            "--n-prompts",
            "12",
            "--batch-size",
            "1",
            "--seed",
            "3",
            "--run-id",
            run_id,
            "--quiet",
        ]

    clean = subprocess.run(command(clean_id), env=env, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]

    process = subprocess.Popen(command(killed_id), env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not atlas_store.done_batches(killed_id) and time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"ingest ended early: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < len(atlas_store.done_batches(killed_id)) < 12, "the kill must land mid-run"

    resumed = subprocess.run(
        [*command(killed_id), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "complete" in resumed.stdout
    assert snapshot(atlas_store, killed_id) == snapshot(atlas_store, clean_id)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "no-such-owner/no-such-model"], "Cannot load"),
        (["--model", "toy-ioi", "--device", "tpu"], "device"),
        (["--model", "toy-ioi", "--n-prompts", "4", "--prompt-type", "ABC"], "ABC"),
    ],
)
def test_bad_input_fails_fast_and_writes_nothing(
    atlas_store: AtlasStore, runner: CliRunner, arguments: list[str], message: str
) -> None:
    runs_before = atlas_store.list_runs()
    result = runner.invoke(main, ["ingest", *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert atlas_store.list_runs() == runs_before


def test_neo4j_down_fails_fast_naming_server_start(neo4j_env: dict[str, str]) -> None:
    env = {**neo4j_env, "NEO4J_URI": "bolt://127.0.0.1:1"}
    started = time.monotonic()
    result = CliRunner().invoke(main, ["ingest", "--model", "toy-ioi"], env=env)
    assert result.exit_code != 0
    assert "circuit-atlas server start" in result.output
    assert "Loading" not in result.output  # failed before loading the model
    assert time.monotonic() - started < 30


def test_ingest_stderr_holds_no_notifications_or_library_warnings(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], run_ids: list[str]
) -> None:
    """A first-time user's run: stderr has only our own lines (progress bars are off)."""
    run_id = unique_run_id("quiet")
    run_ids.append(run_id)
    command = [sys.executable, "-c", "from atlas.cli import main; main()", "ingest"]
    options = ["--model", "toy-ioi", "--n-prompts", "4", "--run-id", run_id, "--quiet"]
    result = subprocess.run(
        [*command, *options], env={**os.environ, **neo4j_env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "Checking the settings and Neo4j ...",
        "Loading toy-ioi on cpu ...",
        f"Run {run_id}",
    ]
