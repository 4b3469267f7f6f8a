"""Browser deep links of the query commands and what the style reads, on the test server."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.store.schema import head_labels
from atlas.store.store import AtlasStore
from queries.templates import load_template


def editor_text_of(url: str) -> str:
    """What Neo4j Browser 5 puts in its editor for ``?cmd=edit&arg=...``: it replaces ``+``,
    decodes the whole URL, then takes every ``arg=`` up to ``&`` or ``#``, joined by newlines."""
    decoded = unquote(url.replace("+", " "))
    return "\n".join(re.findall(r"[?&]arg=([^&#]*)", decoded))


def test_circuit_link_prefills_the_same_query_and_parameters(
    runner: CliRunner, toy_ioi_run: str
) -> None:
    args = ["circuit", "--run", toy_ioi_run, "--root", "3.1", "--max-depth", "1", "--link"]
    result = runner.invoke(main, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    json_records = result.stdout  # the link goes to stderr, so JSON output stays parseable
    assert json_records.lstrip().startswith("[") and "Neo4j Browser:" not in json_records
    url = result.stderr.strip().removeprefix("Neo4j Browser: ")
    params, query = editor_text_of(url).split("\n", 1)
    assert params == (
        f':params {{"run_id": "{toy_ioi_run}", "layer": 3, "head": 1, "dest_role": "END", '
        '"src_role": "IO", "prompt": null};'
    )
    assert query == load_template("circuit").cypher.strip()


@pytest.mark.parametrize(
    ("args", "template", "expected"),
    [
        (["inputs", "3.1", "--side", "q"], "head_inputs", {"layer": 3, "head": 1, "side": "q"}),
        (["signals", "3.1"], "shared_signals", {"layer": 3, "head": 1}),
        (["query", "head_roles", "-p", "layer=2", "-p", "head=3"], "head_roles",
         {"layer": 2, "head": 3}),
        (["paths", "3.1", "0.2", "--min-prompts", "5"], "paths",
         {"from_layer": 0, "from_head": 2, "to_layer": 3, "to_head": 1, "min_prompts": 5}),
    ],
)  # fmt: skip
def test_query_commands_link_to_their_template_with_the_parameters_they_ran(
    runner: CliRunner, toy_ioi_run: str, args: list[str], template: str, expected: dict
) -> None:
    result = runner.invoke(main, [*args, "--run", toy_ioi_run, "--format", "csv", "--link"])
    assert result.exit_code == 0, result.output
    assert "Neo4j Browser:" not in result.stdout
    url = result.stderr.strip().removeprefix("Neo4j Browser: ")
    params_line, query = editor_text_of(url).split("\n", 1)
    sent = json.loads(params_line.removeprefix(":params ").removesuffix(";"))
    bound = load_template(template).bind({"run_id": toy_ioi_run, **expected})
    assert sent == bound  # every parameter, defaults filled in, as the command ran it
    assert query == load_template(template).cypher.strip()


def test_ingested_heads_and_singular_vectors_carry_what_the_style_reads(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    records = atlas_store.driver.execute_query(
        "MATCH (r:Run {id: $run_id}) MATCH (h:Head {model_id: r.model_id})-[:HAS_SV]->(sv) "
        "RETURN h.layer AS layer, h.ioi_class AS ioi_class, labels(h) AS labels, "
        "sv.index AS index, sv.sigma AS sigma, sv.caption AS caption",
        run_id=toy_ioi_run,
        database_=atlas_store.database,
    ).records
    assert records
    for record in records:
        assert set(head_labels(record["layer"], record["ioi_class"])) <= set(record["labels"])
        match = re.fullmatch(r"v(\d+) σ(-?[\d.]+)", record["caption"])
        assert match, record["caption"]
        assert int(match.group(1)) == record["index"]
        assert abs(float(match.group(2)) - record["sigma"]) <= 0.005 + 1e-9
