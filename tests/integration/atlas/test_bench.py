"""`circuit-atlas bench` on the toy model and the test server."""

from __future__ import annotations

import json

from click.testing import CliRunner

from atlas.bench import ROW_STAGES, bench_ingest
from atlas.cli import main
from atlas.store.store import AtlasStore
from queries.templates import all_templates


def toy_templates() -> set[str]:
    return {t.name for t in all_templates() if t.mode == "read" and t.example_toy is not None}


def test_bench_ingest_measures_a_run_and_deletes_it(atlas_store: AtlasStore) -> None:
    runs_before = atlas_store.list_runs()
    figures = bench_ingest(atlas_store, "toy-ioi", 8, batch_size=4, query_repeats=2)
    assert set(ROW_STAGES) <= set(figures.stage_seconds)
    assert figures.firings > 0 and figures.edges > 0
    assert figures.relationships > figures.firings + figures.edges  # OF_HEAD, USES, ...
    assert figures.relationships_per_second > 0 and figures.peak_rss_mb > 0
    assert set(figures.query_latency) == toy_templates()
    for times in figures.query_latency.values():
        assert 0 < times["p50"] <= times["p95"]
    assert atlas_store.list_runs() == runs_before


def test_bench_cli_json_of_both_methods(runner: CliRunner, atlas_store: AtlasStore) -> None:
    """One CLI bench of both methods: the warm-up apart, a median per method, the reference
    check, every toy template timed, and the first feedback of a CLI ingest (seconds from
    the process start: the first line, the model loaded, the first batch). Every run it
    started is deleted. Timings are printed by `bench`, not asserted."""
    runs_before = atlas_store.list_runs()
    arguments = ["bench", "--workload", "toy-ioi", "--n-prompts", "4", "--repeats", "1",
                 "--batch-size", "4", "--reference-prompts", "1", "--query-repeats", "1",
                 "--warmup-runs", "1", "--method", "sad", "--method", "acc"]  # fmt: skip
    result = runner.invoke(main, [*arguments, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (warmup,) = report["warmup"]  # reported apart, not in the medians
    assert (warmup["workload"], warmup["n_prompts"]) == ("toy-ioi", 4)
    assert warmup["relationships"] > 0
    assert len(report["measurements"]) == 2
    by_label = {row["workload"]: row for row in report["medians"]}
    assert set(by_label) == {"toy-ioi", "toy-ioi acc"}
    assert all(row["n_prompts"] == 4 for row in by_label.values())
    assert by_label["toy-ioi"]["firings"] > 0 and by_label["toy-ioi"]["relationships"] > 0
    assert by_label["toy-ioi"]["decompose"] > 0
    assert by_label["toy-ioi acc"]["decompose"] == 0  # ACC's firings are counted in trace
    assert report["reference"]["identical"] is True
    assert set(report["query_latency_ms"]) == toy_templates()
    (feedback,) = report["first_feedback"]
    assert feedback["first_line"] == "Checking the settings and Neo4j ..."
    assert 0 < feedback["first_line_seconds"] <= feedback["model_loaded_seconds"]
    assert feedback["model_loaded_seconds"] <= feedback["first_batch_seconds"]
    assert atlas_store.list_runs() == runs_before


def test_bench_cli_table(runner: CliRunner) -> None:
    arguments = ["bench", "--workload", "toy-ioi", "--n-prompts", "4", "--repeats", "1"]
    arguments += ["--reference-prompts", "0", "--query-repeats", "0", "--warmup-runs", "0"]
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert "Warm-up" not in result.stdout
    assert "| stage | toy-ioi 4 |" in result.stdout
    assert "First feedback (toy-ioi, `circuit-atlas ingest --n-prompts 4`" in result.stdout
    assert "| written rel/s |" in result.stdout
