"""Options, output and error handling shared by the commands.

Every command that prints a table of results takes :func:`format_option` and prints through
:func:`echo_frame` or :func:`echo_records`, so scripts read JSON or CSV instead of prose.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the model stack (torch, transformers) loads only when a command needs it
    import pandas as pd

    from ingest.decomposition.sad import FiringRule
    from ingest.models.loading import LoadedModel
    from ingest.prompts.ioi import IOIPrompt


TABLE_FORMATS = click.Choice(["table", "json", "csv"])


FORMAT_HELP = "table: aligned text; json: a list of records; csv: a header and one line per row."


def format_option(command: Any = None, *, help: str = FORMAT_HELP) -> Any:
    """``--format table|json|csv`` for commands that print a table of results.

    Use it bare (``@format_option``) or with a command-specific help text
    (``@format_option(help=...)``); the value arrives as ``output_format``.
    """
    option = click.option(
        "--format",
        "output_format",
        type=TABLE_FORMATS,
        default="table",
        show_default=True,
        help=help,
    )
    return option if command is None else option(command)


def echo_frame(frame: pd.DataFrame, output_format: str) -> None:
    """Print a result in the chosen format (an empty table says so)."""
    if output_format == "json":  # full float precision, as CSV has (pandas' to_json: 10 digits)
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        click.echo(json.dumps(records, indent=2, ensure_ascii=False, default=_json_value))
    elif output_format == "csv":
        frame.to_csv(sys.stdout, index=False, lineterminator="\n")
    elif frame.empty:
        click.echo("No rows.")
    else:
        shown = frame.map(_table_cell)  # missing values (None, NaN, <NA>) read "-"
        click.echo(shown.to_string(index=False))


def _json_value(value: Any) -> Any:
    """numpy scalars and arrays (list cells) as plain JSON values."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _table_cell(value: Any) -> Any:
    import pandas as pd

    if isinstance(value, list):
        return " ".join(map(_cell, value))
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "-"
    return _cell(value)


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def echo_records(
    records: Sequence[Mapping[str, Any]],
    output_format: str,
    table: Callable[[Sequence[Mapping[str, Any]]], None] | None = None,
) -> None:
    """Print plain records (dicts) as JSON (a list, nesting kept), CSV or a table.

    CSV cells that are lists or maps hold their JSON. ``table`` prints the table format when
    a command has its own layout (default: aligned columns, as :func:`echo_frame`).
    """
    if output_format == "json":
        click.echo(json.dumps(list(records), indent=2, ensure_ascii=False, default=str))
    elif output_format == "csv":
        import csv

        fields = list(dict.fromkeys(key for record in records for key in record))
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow({key: _csv_cell(value) for key, value in record.items()})
    elif table is not None:
        table(records)
    else:
        import pandas as pd

        echo_frame(pd.DataFrame(list(records)), "table")


def _csv_cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list | dict) else value


def bos_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--bos/--no-bos``: start IOI prompts with BOS (default: as the tokenizer does)."""
    return click.option(
        "--bos/--no-bos",
        "prepend_bos",
        default=None,
        help="Prepend the tokenizer's BOS token to every prompt, or not. Default: follow the "
        "tokenizer (GPT-2 family: yes; SmolLM2: no).",
    )(command)


def model_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every model-running command shares (model, weights, device, prompts)."""
    options = [
        click.option(
            "--model",
            "model_name",
            default="openai-community/gpt2",
            show_default=True,
            help="Hugging Face model id (loaded from your HF cache), 'toy-ioi' (the trained IOI "
            "model shipped with the project), 'random-gpt2' (random GPT-2-small-shaped weights) "
            "or 'smollm2-135m' (after `circuit-atlas models install smollm2-135m`); "
            "`circuit-atlas models list` shows them.",
        ),
        click.option(
            "--model-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="A local Hugging Face model directory (config.json, weights, tokenizer); "
            "overrides --model.",
        ),
        click.option("--revision", help="Hub revision (branch, tag or commit) of --model."),
        click.option(
            "--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N]."
        ),
        click.option(
            "--n-prompts",
            default=256,
            show_default=True,
            type=click.IntRange(min=1),
            help="How many IOI prompts to generate.",
        ),
        click.option(
            "--prompt-type",
            type=click.Choice(["mixed", "ABBA", "BABA"]),
            default="mixed",
            show_default=True,
            help="IOI name order: ABBA, BABA, or an even mix.",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=int,
            help="Seed of the prompt generator (and of random-gpt2's weights).",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            help="Prompts per forward pass and per write transaction; memory grows with it, not "
            "with --n-prompts. [default: 32, fewer for models with many heads so that a "
            "transaction stays near 262k relationships: 16 for smollm2-135m]",
        ),
        click.option(
            "--min-attention",
            default=0.5,
            show_default=True,
            type=float,
            help="A pair fires when its attention probability is at least this.",
        ),
        click.option(
            "--min-layer",
            default=1,
            show_default=True,
            type=click.IntRange(min=0),
            help="Heads below this layer are not decomposed (layer 0 reads only embeddings).",
        ),
        click.option(
            "--sparse-fraction",
            default=1.0,
            show_default=True,
            type=float,
            help="The sparse set is the smallest descending prefix of terms whose sum exceeds "
            "this fraction of the score.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# Names ingest.models.loading knows without a hub (a unit test keeps them equal to its own):
# named here so that a wrong name is reported before torch loads.
SHIPPED_MODELS = ("toy-ioi", "random-gpt2", "smollm2-135m")
MODEL_ALIASES = ("gpt2", "gpt2-small")
_DEVICE = re.compile(r"cpu|cuda(:[0-9]+)?")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_model_choice(model_name: str, model_dir: Path | None, device: str) -> None:
    """Reject, before torch or a model loads, a device that is not ``cpu``/``cuda[:N]`` and a
    model that is neither shipped, an alias, a Hugging Face id (``owner/name``) nor a name
    found in the local Hugging Face cache. (CUDA's presence and the weights are checked when
    the model loads.)"""
    from atlas.errors import ParameterError

    if not _DEVICE.fullmatch(device):
        raise ParameterError(f"Unsupported device {device[:40]!r}: use 'cpu' or 'cuda[:N]'.")
    if model_dir is not None or model_name in SHIPPED_MODELS + MODEL_ALIASES:
        return
    if _HUB_ID.fullmatch(model_name) or _in_hub_cache(model_name):
        return
    raise ParameterError(
        f"Unknown model {model_name[:40]!r}: use {', '.join(SHIPPED_MODELS + MODEL_ALIASES)}, "
        "a Hugging Face id owner/name (from your cache, else the hub), or --model-dir DIR."
    )


def _in_hub_cache(name: str) -> bool:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name):
        return False
    home = os.environ.get("HF_HOME") or str(Path("~/.cache/huggingface").expanduser())
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(home) / "hub")
    return (cache / f"models--{name}").is_dir()


def load_model_quietly(
    model_name: str, model_dir: Path | None, revision: str | None, device: str, seed: int
) -> LoadedModel:
    """:func:`ingest.models.load_model` after one "Loading ..." line on stderr, with the model
    libraries' progress bars and advisory warnings silenced
    (:func:`atlas.cli.quiet.quiet_libraries`). Its errors are reported by :mod:`atlas.cli`.
    """
    from atlas.cli.quiet import quiet_libraries
    from ingest.models.loading import load_model

    quiet_libraries()
    click.echo(f"Loading {model_dir or model_name} on {device} ...", err=True)
    return load_model(model_name, model_dir=model_dir, revision=revision, device=device, seed=seed)


def batch_size_for(model: LoadedModel, batch_size: int | None) -> int:
    """``--batch-size``, or the model's default (:func:`ingest.pipeline.default_batch_size`)."""
    from ingest.pipeline import default_batch_size

    return batch_size or default_batch_size(model.n_layers * model.n_heads)


METHOD_HELP = (
    "sad: Franco & Crovella 2024, raw scores of pairs with attention ≥ --min-attention, heads "
    "as writers. acc: their NeurIPS 2025 follow-up, relative attention per side of pairs "
    "attended above uniform, every upstream component (heads per source token, MLPs, "
    "attention biases, embeddings), traced from the IO − S answer (--min-attention and "
    "--min-layer are SAD's and do not apply)."
)


def method_option(command: Any = None, *, help: str = METHOD_HELP) -> Any:
    """``--method sad|acc`` (default sad); the value arrives as ``method``."""
    option = click.option(
        "--method",
        type=click.Choice(["sad", "acc"]),
        default="sad",
        show_default=True,
        help=help,
    )
    return option if command is None else option(command)


def run_method_option(command: Any) -> Any:
    """``--method sad|acc`` of a command reading a run: the method the run must have been
    made with (default: whatever it was)."""
    return click.option(
        "--method",
        type=click.Choice(["sad", "acc"]),
        default=None,
        help="Check that the run was made with this method (sad, or acc: ingested with "
        "--method acc or imported from the authors' ACC format); default: the run's own.",
    )(command)


def check_run_method(store: Any, run_id: str, method: str | None) -> str:
    """The run's method (``sad`` or ``acc``); a mismatch with ``method`` is one-line error."""
    from atlas.errors import ParameterError, UnknownRunError

    shown = store.run_model(run_id)
    if shown is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas (see `circuit-atlas runs list`)."
        )
    actual = str(shown["method"])
    if method is not None and method != actual:
        raise ParameterError(
            f"Run '{run_id}' was made with method {actual}, not {method}; drop --method or "
            f"choose a {method} run (`circuit-atlas runs list` shows each run's method)."
        )
    return actual


def acc_rule_or_exit(sparse_fraction: float) -> Any:
    """ACC's firing rule (above uniform) with the sparse sets' ``--sparse-fraction``."""
    from ingest.decomposition.acc import AccFiringRule

    try:
        return AccFiringRule(sparse_fraction=sparse_fraction)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


def firing_rule_or_exit(min_attention: float, min_layer: int, sparse_fraction: float) -> FiringRule:
    from ingest.decomposition.sad import FiringRule

    try:
        return FiringRule(
            min_attention=min_attention, min_layer=min_layer, sparse_fraction=sparse_fraction
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


def prompts_or_exit(
    n_prompts: int, prompt_type: str, seed: int, tokenizer: Any = None
) -> Iterator[IOIPrompt]:
    """The seeded prompts, drawn lazily (memory does not grow with ``n_prompts``); bad
    settings are a usage error at once."""
    from ingest.prompts.ioi import iter_prompts

    try:
        return iter_prompts(n_prompts, prompt_type, seed=seed, tokenizer=tokenizer)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
