"""The toy IOI model's training: deterministic per seed; `train-toy` refuses a bad model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from ingest.models.toy import (
    ToyConfig,
    train_toy,
)

TINY = ToyConfig(
    n_layers=2, d_model=16, n_heads=2, steps=3, batch_size=8, eval_prompts=16,
    io_curriculum_steps=2,
)  # fmt: skip


def test_training_is_deterministic_per_seed() -> None:
    first, again = train_toy(TINY), train_toy(TINY)
    other = train_toy(replace(TINY, seed=1))
    assert first.losses == again.losses
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, again.model.state_dict()[name]), name
    assert first.losses != other.losses


def test_train_toy_command_refuses_to_save_an_unconverged_model(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atlas.cli import main

    out = tmp_path / "toy"
    result = CliRunner().invoke(main, ["train-toy", "--out", str(out), "--steps", "2"])
    assert result.exit_code == 1
    assert "did not converge" in result.output
    assert not out.exists()
