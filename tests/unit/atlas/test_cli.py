"""The top-level `circuit-atlas` group: every command reachable and listed once, by section."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from atlas.cli import SECTIONS, main


def test_help_lists_every_command_once_under_its_section() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [command.name for _, commands in SECTIONS for command in commands]
    assert len(listed) == len(set(listed)), "a command is in two sections"
    assert set(listed) == set(main.commands)
    lines = result.output.splitlines()
    for title, commands in SECTIONS:
        start = lines.index(f"{title}:")
        block = []
        for line in lines[start + 1 :]:
            if not line.startswith("  "):
                break
            block.append(line.split()[0])
        assert block == [command.name for command in commands], title


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_that_teaches(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and len(result.output.splitlines()) > 4


def test_result_commands_share_the_format_option() -> None:
    """Every command that prints a table of results takes --format table|json|csv."""
    from atlas.cli.options import TABLE_FORMATS

    def formats(*path: str) -> list[str] | None:
        command = main
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        option = next((p for p in command.params if p.name == "output_format"), None)
        return None if option is None else list(option.type.choices)

    for path in [
        ("runs", "list"), ("runs", "show"), ("server", "status"), ("templates",), ("query",),
        ("paths",), ("inputs",), ("outputs",), ("signals",), ("features",), ("validate",),
        ("decompose",), ("replicate",),
    ]:  # fmt: skip
        assert formats(*path) == list(TABLE_FORMATS.choices), path


def test_templates_as_json_and_csv() -> None:
    import csv
    import io
    import json

    as_json = CliRunner().invoke(main, ["templates", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.output)
    counts = next(r for r in records if r["name"] == "run_counts")
    assert counts["mode"] == "read" and counts["parameters"] == "run_id: string"
    assert counts["returns"][:2] == ["prompts", "firings"]  # a list, not JSON text
    as_csv = CliRunner().invoke(main, ["templates", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert [row["name"] for row in rows] == [record["name"] for record in records]
    assert json.loads(rows[0]["returns"]) == records[0]["returns"]


def test_server_status_as_json(tmp_path) -> None:
    import json

    result = CliRunner(env={"CIRCUIT_ATLAS_HOME": str(tmp_path)}).invoke(
        main, ["server", "status", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["installed"] is False and status["running"] is False
    assert status["jars"] == str(tmp_path / "neo4j")


def test_models_list_shows_what_is_installed_in_the_data_directory(tmp_path) -> None:
    import json

    runner = CliRunner(env={"CIRCUIT_ATLAS_HOME": str(tmp_path)})
    result = runner.invoke(main, ["models", "list", "--format", "json"])
    assert result.exit_code == 0, result.output
    installed = {row["name"]: row["installed"] for row in json.loads(result.output)}
    assert installed == {"toy-ioi": True, "random-gpt2": True, "smollm2-135m": False}


def test_a_missing_smollm2_says_how_to_install_it_in_one_line(tmp_path) -> None:
    runner = CliRunner(env={"CIRCUIT_ATLAS_HOME": str(tmp_path)})
    result = runner.invoke(main, ["decompose", "--model", "smollm2-135m", "--n-prompts", "1"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]  # after the "Loading …" progress line
    assert error.startswith("Error: ") and "circuit-atlas models install smollm2-135m" in error
