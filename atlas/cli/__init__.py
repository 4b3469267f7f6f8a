"""The ``circuit-atlas`` command line: one click group; each command group lives in its own
module of this package, thin over a library function that Python users can call too.

Errors: the library raises :class:`atlas.errors.AtlasError` and ``ingest`` raises
:class:`ingest.errors.IngestError` for problems the user can fix; :class:`AtlasGroup` turns
both into one line, ``Error: <message>``, and exit status 1, here and nowhere else. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from atlas.cli.bench import bench
from atlas.cli.browse import browse
from atlas.cli.circuit import circuit
from atlas.cli.decompose import decompose
from atlas.cli.ingest import ingest
from atlas.cli.interchange import export_command, import_group
from atlas.cli.models import models
from atlas.cli.patch import compare_circuits, patch
from atlas.cli.query import features, inputs, outputs, paths, query, signals, templates
from atlas.cli.replicate import replicate
from atlas.cli.report import report
from atlas.cli.runs import runs
from atlas.cli.scale import load, trace
from atlas.cli.server import db, server
from atlas.cli.toy import train_toy
from atlas.cli.validate import validate
from ingest.runtime import DATA_DIR_VARIABLE

# `circuit-atlas --help` lists the commands in these groups, in this order.
SECTIONS: tuple[tuple[str, tuple[click.Command, ...]], ...] = (
    ("Build the atlas", (decompose, ingest, trace, load, import_group, train_toy)),
    (
        "Ask the atlas",
        (circuit, paths, inputs, outputs, signals, features, query, templates, browse),
    ),
    ("Check and report", (validate, patch, compare_circuits, report, replicate)),
    ("Runs, exports and the database", (runs, models, export_command, server, db, bench)),
)


def one_line(error: BaseException) -> str:
    """The error's message on one line (line breaks and runs of spaces become one space)."""
    return " ".join(str(error).split()) or type(error).__name__


class AtlasGroup(click.Group):
    """The top-level group: help lists commands by :data:`SECTIONS` instead of A to Z, and the
    library's errors become one-line messages (the one place where that happens)."""

    def invoke(self, ctx: click.Context) -> Any:
        from atlas.errors import AtlasError
        from ingest.errors import IngestError

        try:
            return super().invoke(ctx)
        except (AtlasError, IngestError) as error:
            raise click.ClickException(one_line(error)) from error

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = formatter.width - 6 - max(len(name) for name in self.commands)
        for title, commands in SECTIONS:
            rows = [(c.name or "", c.get_short_help_str(limit=width)) for c in commands]
            with formatter.section(title):
                formatter.write_dl(rows)


def _set_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """``--data-dir`` sets ``$CIRCUIT_ATLAS_HOME`` for this process (and the processes it
    starts) before any command reads it."""
    if value is not None:
        os.environ[DATA_DIR_VARIABLE] = str(value.expanduser().absolute())


@click.group(
    cls=AtlasGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    is_eager=True,
    expose_value=False,
    callback=_set_data_dir,
    help=f"Per-user folder for the local Neo4j server (jars, data, logs) and its password file. "
    f"Default: ${DATA_DIR_VARIABLE}, else $XDG_DATA_HOME/circuit-atlas, else "
    "~/.local/share/circuit-atlas.",
)
@click.version_option(package_name="circuit-atlas")
def main() -> None:
    """Circuit Atlas: sparse attention decomposition of IOI circuits, stored in Neo4j.

    Typical flow: `decompose` to inspect a model's attention decisions, `server start` to run
    Neo4j locally, `ingest` to write a run into the atlas, then ask it: `templates` and `query`,
    the shortcuts `paths`, `inputs`, `outputs`, `signals`, `features`, `circuit`, or Cypher;
    `browse` prints a Neo4j Browser link (the atlas style and guide load on connect).
    """


for _, section in SECTIONS:
    for command in section:
        main.add_command(command)
