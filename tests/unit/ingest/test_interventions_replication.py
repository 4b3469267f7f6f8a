"""`replicate` without GPT-2 weights: one line that says what it needs."""

from __future__ import annotations

from click.testing import CliRunner


def test_replicate_without_weights_says_what_it_needs(tmp_path) -> None:
    from atlas.cli import main

    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = CliRunner(env=env).invoke(main, ["replicate", "--model", "gpt2"])
    assert result.exit_code != 0
    assert "--model-dir" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
