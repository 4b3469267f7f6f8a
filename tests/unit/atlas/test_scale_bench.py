"""`bench --scale`'s table: one column per workload, the figures computed from the measurements."""

from __future__ import annotations

from atlas.scale.bench import scale_table


def result(model: str, trace_1: float, trace_2: float) -> dict[str, object]:
    return {
        "model": model,
        "n_prompts": 64,
        "load_average": [1.5, 2.5],
        "ingest": {"wall_seconds": 30.0, "rel_per_s": 40_000.0},
        "trace_1_workers_seconds": trace_1,
        "trace_2_workers_seconds": trace_2,
        "shard_bytes": 3 * 2**20,
        "load": {"wall_seconds": 12.0, "relationships": 500_000, "rel_per_s": 50_000.0},
        "load_matches_ingest": True,
        "bulk": {"wall_seconds": 90.0, "import_seconds": 5.0, "records_per_s": 120_000.0},
        "bulk_matches_ingest": True,
    }


def test_the_table_shows_each_workload_and_the_derived_figures() -> None:
    table = scale_table([result("toy-ioi", 20.0, 12.5), result("smollm2-135m", 90.0, 60.0)])
    lines = {line[:34].strip(): line[34:].split("  ") for line in table.splitlines()}
    header = table.splitlines()[0]
    assert "toy-ioi 64" in header and "smollm2-135m 64" in header
    cells = {label: [c.strip() for c in line if c.strip()] for label, line in lines.items()}
    assert cells["trace (1 worker) + load, wall"] == ["32.0 s", "102.0 s"]
    assert cells["trace speed-up, 2 vs 1 workers"] == ["1.6×", "1.5×"]
    assert cells["bulk import, records/s"] == ["120,000.0", "120,000.0"]
    assert cells["relationships written"] == ["500,000", "500,000"]
    assert cells["load average (1 min), max"] == ["2.5", "2.5"]


def test_a_failed_bulk_import_is_shown_not_hidden() -> None:
    failed = result("toy-ioi", 20.0, 10.0)
    del failed["bulk"], failed["bulk_matches_ingest"]
    failed["bulk_error"] = "AtlasError('neo4j-admin import failed')"
    table = scale_table([failed])
    assert "toy-ioi 64: bulk failed: AtlasError('neo4j-admin import failed')" in table
    [bulk_rate] = [line for line in table.splitlines() if line.startswith("bulk import, rec")]
    assert bulk_rate[34:].split() == ["-"]
