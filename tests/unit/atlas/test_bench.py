"""`circuit-atlas bench`'s library: the report's medians and the reference check (no server)."""

from __future__ import annotations

from atlas.bench import ROW_STAGES, BenchReport, IngestFigures, bench_reference


def ingest_figures(write_seconds: float, relationships: int = 100_000) -> IngestFigures:
    stages = dict.fromkeys(ROW_STAGES, 1.0) | {"write": write_seconds}
    return IngestFigures(
        workload="toy-ioi",
        n_prompts=256,
        stage_seconds=stages,
        wall_seconds=9.0,
        firings=10,
        edges=20,
        relationships=relationships,
        peak_rss_mb=500.0,
        load_average=1.0,
    )


def test_warmup_runs_are_reported_apart_from_the_medians() -> None:
    report = BenchReport(
        measurements=[ingest_figures(2.0), ingest_figures(4.0), ingest_figures(1.0)],
        reference=None,
        machine="a machine",
        warmup=[ingest_figures(10.0)],
    )
    (median,) = report.medians().values()
    assert median["relationships_per_second"] == 50_000  # the warm-up's 10,000 is not in it
    table = report.table()
    assert "Warm-up first, not in the medians: 1 toy-ioi 256-prompt run(s)" in table
    assert "written rel/s 10,000" in table
    assert [f["relationships_per_second"] for f in report.to_json()["warmup"]] == [10_000]


def test_reference_and_vectorized_decomposition_agree() -> None:
    figures = bench_reference(n_prompts=2)
    assert figures.firings > 0
    assert figures.identical
    assert figures.reference_seconds > 0 and figures.vectorized_seconds > 0
