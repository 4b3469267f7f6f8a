"""Cheap checks before heavy work: run ids are names, a wrong model or device is reported
before torch loads, and the command line itself starts without torch."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.cli.bench import WORKLOADS
from atlas.cli.options import MODEL_ALIASES, SHIPPED_MODELS, check_model_choice
from atlas.errors import ParameterError
from ingest.run_ids import InvalidRunIdError, check_run_id

CHECKOUT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("run_id", ["a", "toy-ioi-mixed-n256-seed0-0123abcd", "R_1.2", "x" * 64])
def test_names_are_run_ids(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("run_id", ["", ".hidden", "../esc/x", "a b", "a';DROP", "prüf", "x" * 65])
def test_other_text_is_not_a_run_id(run_id: str) -> None:
    with pytest.raises(InvalidRunIdError, match="Invalid run id") as caught:
        check_run_id(run_id)
    assert len(str(caught.value)) < 200


def test_a_long_id_is_shown_by_its_first_40_characters() -> None:
    with pytest.raises(InvalidRunIdError) as caught:
        check_run_id("y" * 10_000)
    assert "y" * 40 in str(caught.value) and "y" * 41 not in str(caught.value)
    assert "10,000 characters" in str(caught.value)


def test_default_run_ids_are_names() -> None:
    from ingest.pipeline import IngestConfig

    config = IngestConfig(n_prompts=10**9)
    for model_id in ("toy-ioi", "openai-community/gpt2", "/tmp/my model ü/" + "z" * 80):
        check_run_id(config.default_run_id(model_id))


def test_shipped_names_match_the_loader() -> None:
    from atlas.bench import ALL_WORKLOADS as BENCH_ALL_WORKLOADS
    from atlas.bench import WORKLOADS as BENCH_WORKLOADS
    from atlas.cli.bench import ALL_WORKLOADS
    from ingest.models.catalog import list_models
    from ingest.models.loading import HUB_ALIASES

    assert set(SHIPPED_MODELS) == {entry.name for entry in list_models()}
    assert set(MODEL_ALIASES) == set(HUB_ALIASES)
    assert (WORKLOADS, ALL_WORKLOADS) == (BENCH_WORKLOADS, BENCH_ALL_WORKLOADS)


@pytest.mark.parametrize(
    ("model", "device", "says"),
    [("toy-ioi", "tpu", "device 'tpu'"), ("no-such-model", "cpu", "Unknown model")],
)
def test_wrong_model_or_device(model: str, device: str, says: str) -> None:
    with pytest.raises(ParameterError, match=says):
        check_model_choice(model, None, device)


def test_good_choices_pass() -> None:
    for model in ("toy-ioi", "random-gpt2", "gpt2", "HuggingFaceTB/SmolLM2-135M"):
        check_model_choice(model, None, "cuda:1")


def test_the_command_line_starts_without_torch() -> None:
    code = "import sys, atlas.cli; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=CHECKOUT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_an_unknown_model_is_reported_at_once() -> None:
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["ingest", "--model", "no-such-model", "--run-id", "r"])
    assert result.exit_code == 1 and result.output.startswith("Error: Unknown model")
    assert time.perf_counter() - started < 2.0
