"""End-to-end ingestion on the toy model into the real Neo4j test server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.errors import AtlasError
from atlas.server.local import LocalServer
from atlas.store.connection import get_driver
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.decomposition.activations import model_qk_svd
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig, chunks, process_batch
from ingest.prompts.ioi import generate_prompts
from ingest.records.build import batch_records
from queries.templates import all_templates
from tests.fixtures.neo4j import free_port, small_server

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
    assert shown is not None and shown["run"]["status"] == "interrupted"
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


# Prompts of the fault tests' CLI ingest: in batches of one prompt, enough transactions that a
# signal sent after the first one lands mid-run even on a fast machine (12 did not, once).
FAULT_PROMPTS = 48


def cli_ingest(run_id: str, n_prompts: int = FAULT_PROMPTS) -> list[str]:
    """The CLI's ingest of toy-ioi in batches of one prompt (one transaction each), quiet."""
    return [
        sys.executable,
        "-c",
        "from atlas.cli import main; main()",
        "ingest",
        "--model",
        "toy-ioi",
        "--n-prompts",
        str(n_prompts),
        "--batch-size",
        "1",
        "--seed",
        "3",
        "--run-id",
        run_id,
        "--quiet",
    ]


@pytest.fixture(scope="module")
def clean_cli_run(atlas_store: AtlasStore, neo4j_env: dict[str, str]):
    """An uninterrupted CLI run of :func:`cli_ingest` (id, snapshot), for the fault tests."""
    run_id = unique_run_id("clean-cli")
    clean = subprocess.run(
        cli_ingest(run_id), env={**os.environ, **neo4j_env}, capture_output=True, text=True
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    yield run_id, snapshot(atlas_store, run_id)
    atlas_store.delete_run(run_id)


def start_ingest_until_first_batch(
    store: AtlasStore, command: list[str], env: dict[str, str], run_id: str
) -> subprocess.Popen[str]:
    """Start ``command`` and return once its first batch marker has committed.

    The child gets SIGINT's default action back, as a terminal user's ingest has: a shell
    without job control (CI scripts, ``cmd &``) starts its children with SIGINT ignored, and
    Python then never turns Ctrl-C into KeyboardInterrupt."""
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not store.done_batches(run_id) and time.monotonic() < deadline:
        if process.poll() is not None:
            assert process.stderr is not None
            pytest.fail(f"ingest ended early: {process.stderr.read()[-2000:]}")
        time.sleep(0.01)
    assert store.done_batches(run_id), "no batch was written within 300 s"
    return process


def assert_whole_batches(store: AtlasStore, run_id: str) -> None:
    """Nothing half-written: the prompts in the graph are exactly the marked batches'."""
    done = store.done_batches(run_id)
    prompts = store.driver.execute_query(
        "MATCH (p:Prompt {run_id: $run_id}) RETURN collect(p.idx) AS idx", run_id=run_id
    ).records[0]["idx"]
    assert sorted(prompts) == sorted(done)  # batches of one prompt: batch i is prompt i


def test_killed_process_is_interrupted_and_resumes_to_the_clean_graph(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], clean_cli_run, run_ids: list[str]
) -> None:
    """SIGKILL the CLI after its first committed batch: the run is shown ``interrupted`` (its
    writer is gone), lookups on it warn that it is incomplete; then --resume with the same
    command gives the uninterrupted graph. Batches of one prompt give 48 transactions, so the
    kill lands mid-run."""
    _, clean_graph = clean_cli_run
    killed_id = unique_run_id("killed")
    run_ids.append(killed_id)
    env = {**os.environ, **neo4j_env}

    process = start_ingest_until_first_batch(atlas_store, cli_ingest(killed_id), env, killed_id)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < len(atlas_store.done_batches(killed_id)) < FAULT_PROMPTS, "must land mid-run"
    assert_whole_batches(atlas_store, killed_id)

    shown = atlas_store.show_run(killed_id)
    assert shown is not None and shown["run"]["status"] == "interrupted"
    runner = CliRunner(env=neo4j_env)
    listed = runner.invoke(main, ["runs", "list"])
    assert listed.exit_code == 0, listed.output
    assert [line.split()[1] for line in listed.output.splitlines() if killed_id in line] == [
        "interrupted"
    ]
    lookup = runner.invoke(main, ["query", "firing_counts", "--run", killed_id])
    assert lookup.exit_code == 0, lookup.output
    warnings = [line for line in lookup.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings == [
        f"Warning: run '{killed_id}' is interrupted, not complete: answers cover only the "
        "batches written so far (finish it with `ingest ... --resume`)."
    ]

    resumed = subprocess.run(
        [*cli_ingest(killed_id), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "complete" in resumed.stdout
    assert atlas_store.run_status(killed_id) == "complete"
    assert snapshot(atlas_store, killed_id) == clean_graph


def test_ctrl_c_exits_in_one_line_and_resumes_to_the_clean_graph(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], clean_cli_run, run_ids: list[str]
) -> None:
    """SIGINT (Ctrl-C) after the first committed batch: exit status 1 with one line that says
    how to resume, only whole batches in the graph, the run ``interrupted``; --resume then
    gives the uninterrupted graph."""
    _, clean_graph = clean_cli_run
    run_id = unique_run_id("ctrl-c")
    run_ids.append(run_id)
    env = {**os.environ, **neo4j_env}

    process = start_ingest_until_first_batch(atlas_store, cli_ingest(run_id), env, run_id)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1] == (
        "Error: Interrupted. Batches written so far are kept; continue with the same command "
        f"plus --resume (run id {run_id})."
    )
    assert 0 < len(atlas_store.done_batches(run_id)) < FAULT_PROMPTS, "must land mid-run"
    assert_whole_batches(atlas_store, run_id)
    assert atlas_store.run_status(run_id) == "interrupted"

    resumed = subprocess.run(
        [*cli_ingest(run_id), "--resume"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert snapshot(atlas_store, run_id) == clean_graph


def test_queries_while_an_ingest_writes(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], toy_ioi_run: str, run_ids: list[str]
) -> None:
    """Every read template with a toy-ioi example, in a loop, on a run being written and on a
    complete one, while the CLI ingests: no errors. Latency is printed, not asserted (`-s`)."""
    writing_id = unique_run_id("written")
    run_ids.append(writing_id)
    templates = [t for t in all_templates() if t.mode == "read" and t.example_toy is not None]
    process = start_ingest_until_first_batch(
        atlas_store, cli_ingest(writing_id, n_prompts=64), {**os.environ, **neo4j_env}, writing_id
    )
    seconds: dict[str, list[float]] = {"written": [], "complete": []}
    loops = 0
    while process.poll() is None or loops == 0:
        for template in templates:
            for kind, run_id in (("written", writing_id), ("complete", toy_ioi_run)):
                started = time.perf_counter()
                atlas_store.read_template(
                    template.name, **{**template.example_toy, "run_id": run_id}
                )
                seconds[kind].append(time.perf_counter() - started)
        loops += 1
    _, stderr = process.communicate()
    assert process.returncode == 0, stderr[-2000:]
    assert atlas_store.run_status(writing_id) == "complete"
    for kind, values in seconds.items():
        p50, p95 = np.percentile(np.array(values) * 1000, [50, 95])
        print(
            f"\n{kind} run: {len(values)} template queries in {loops} loops during the ingest, "
            f"p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        )


def test_first_progress_comes_before_the_first_batch(
    atlas_store: AtlasStore, neo4j_env: dict[str, str], run_ids: list[str]
) -> None:
    """With progress bars on, stderr shows the settings check, the model loading and the run
    before the write bar counts its first prompt (the order of one process's own output; how
    soon, in seconds, `circuit-atlas bench` prints)."""
    run_id = unique_run_id("progress")
    run_ids.append(run_id)
    command = [arg for arg in cli_ingest(run_id, n_prompts=4) if arg != "--quiet"]
    result = subprocess.run(
        command, env={**os.environ, **neo4j_env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    first_written = re.search(r"write to Neo4j\s*:[^\r\n]*?\b1/4\b", result.stderr)
    assert first_written is not None, result.stderr[-2000:]
    before = result.stderr[: first_written.start()]
    for line in ("Checking the settings and Neo4j ...", "Loading toy-ioi on cpu ...", run_id):
        assert line in before


@pytest.fixture
def restartable_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A local server of this test's own (fresh database, free ports), so that stopping it
    disturbs no other test; stopped at the end."""
    server = small_server(tmp_path / "neo4j", free_port(), free_port())
    try:
        server.start()
    except AtlasError as error:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"a local Neo4j server could not start: {error}")
        pytest.skip(f"a local Neo4j server could not start: {error}")
    yield server
    server.stop()


def test_neo4j_restart_during_an_ingest_loses_nothing(
    restartable_server: LocalServer, clean_cli_run
) -> None:
    """Stop the server once the first batch has committed, start it again: the ingest rides
    through (its batch writes are retried), or stops with one line that says how to resume.
    Either way the run then equals an uninterrupted run of the same prompts (on the shared
    server: a snapshot holds no run id and no server's identity). A batch that
    committed while the connection broke is recognised by its marker and not written again
    (``test_fresh_batch_sent_again_after_its_commit_writes_nothing`` in the store tests forces
    that case; here it may or may not happen)."""
    server = restartable_server
    settings = server.start()  # already running: its settings
    store = AtlasStore(get_driver(settings), settings)
    env = {
        **os.environ,
        "NEO4J_URI": settings.uri,
        "NEO4J_USER": settings.user,
        "NEO4J_PASSWORD": settings.password,
    }
    _, clean_graph = clean_cli_run
    restarted_id = unique_run_id("restarted")
    process = start_ingest_until_first_batch(store, cli_ingest(restarted_id), env, restarted_id)
    assert len(store.done_batches(restarted_id)) < FAULT_PROMPTS, "the stop must land mid-run"
    server.stop()
    server.start()
    stdout, stderr = process.communicate(timeout=600)
    assert "Traceback" not in stderr and "ConstraintError" not in stderr, stderr[-3000:]
    if process.returncode == 0:
        outcome = "rode through the restart"
        assert f"Run {restarted_id} complete" in stdout
    else:
        outcome = "stopped, then resumed"
        last = stderr.splitlines()[-1]
        assert last.startswith("Error: ") and "--resume" in last, stderr[-3000:]
        assert_whole_batches(store, restarted_id)
        resumed = subprocess.run(
            [*cli_ingest(restarted_id), "--resume"],
            env=env,
            capture_output=True,
            text=True,
        )
        assert resumed.returncode == 0, resumed.stderr[-2000:]
    print(f"\nthe ingest {outcome}; its stderr:\n{stderr}")
    assert store.run_status(restarted_id) == "complete"
    assert snapshot(store, restarted_id) == clean_graph


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
