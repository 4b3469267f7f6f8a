"""`--method sad|acc` end to end through the CLI on toy-ioi (small prompt counts): decompose,
circuit and bench give ACC output with `--method acc`, the same output as before with
`--method sad` (the default), and a bad method is one `Error:` line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from atlas.cli import main

DECOMPOSE = ["decompose", "--model", "toy-ioi", "--n-prompts", "4", "--seed", "0"]


def invoke(runner: CliRunner, arguments: list[str]) -> str:
    result = runner.invoke(main, arguments)
    assert result.exit_code == 0, (arguments, result.output)
    assert "Traceback" not in result.output
    return result.stdout


def test_decompose_method(runner: CliRunner) -> None:
    default = json.loads(invoke(runner, [*DECOMPOSE, "--format", "json"]))
    sad = json.loads(invoke(runner, [*DECOMPOSE, "--format", "json", "--method", "sad"]))
    acc = json.loads(invoke(runner, [*DECOMPOSE, "--format", "json", "--method", "acc"]))
    assert sad == default and "seeds" not in sad[0]
    assert {"seeds", "mean_svs_dest"} <= set(acc[0])
    # ACC fires above uniform in every layer; SAD at A ≥ 0.5 from layer 1 on
    assert sum(h["firings"] for h in acc if h["layer"] == 0) > 0
    assert sum(h["firings"] for h in sad if h["layer"] == 0) == 0
    assert sum(h["seeds"] for h in acc) > 0


def test_circuit_method(runner: CliRunner, toy_ioi_run: str, toy_ioi_acc_run: str) -> None:
    circuit = ["circuit", "--root", "3.1", "--format", "json"]
    default = json.loads(invoke(runner, [*circuit, "--run", toy_ioi_run]))
    sad = json.loads(invoke(runner, [*circuit, "--run", toy_ioi_run, "--method", "sad"]))
    acc = json.loads(invoke(runner, [*circuit, "--run", toy_ioi_acc_run, "--method", "acc"]))
    assert sad == default and len(sad) > 0
    sad_writers = {row["writer"] for row in sad}
    acc_writers = {row["writer"] for row in acc}
    assert all(writer[0].isdigit() for writer in sad_writers)  # heads only
    assert acc_writers & {"embed", "mlp0", "mlp1", "mlp2"}  # ACC: every component
    wrong = runner.invoke(main, [*circuit, "--run", toy_ioi_acc_run, "--method", "sad"])
    assert wrong.exit_code == 1 and wrong.output.strip().count("\n") == 0
    assert wrong.output.startswith("Error: ") and "made with method acc" in wrong.output


@pytest.mark.parametrize("command", [DECOMPOSE, ["circuit", "--run", "x", "--root", "3.1"],
                                     ["bench", "--workload", "toy-ioi"]])  # fmt: skip
def test_a_bad_method_is_one_error_line(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(main, [*command, "--method", "lasso"])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert len(errors) == 1 and "'lasso' is not one of 'sad', 'acc'" in errors[0]


def test_replicate_acc_runs_for_shape_on_random_gpt2(runner: CliRunner) -> None:
    """`replicate --method acc` on GPT-2-shaped random weights (no real GPT-2 here): every
    published ACC value with ours and the difference beside it (the numbers themselves differ)."""
    from ingest.interventions.replication_acc import ACC_PAPER

    arguments = ["replicate", "--model", "random-gpt2", "--method", "acc", "--n-prompts", "2",
                 "--batch-size", "2"]  # fmt: skip
    rows = json.loads(invoke(runner, [*arguments, "--format", "json"]))
    assert [row["quantity"] for row in rows] == [v.quantity for v in ACC_PAPER.values()]
    assert [row["paper"] for row in rows] == [v.paper for v in ACC_PAPER.values()]
    assert all({"ours", "difference"} <= set(row) for row in rows)
    table = invoke(runner, arguments)
    assert table.startswith("random-gpt2, 2 mixed prompts, seed 0, acc")
