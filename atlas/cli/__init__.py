"""The ``circuit-atlas`` command line: one click group; each command group lives in its own
module of this package, thin over a library function that Python users can call too."""

from __future__ import annotations

import click

from atlas.cli.bench import bench
from atlas.cli.browse import browse
from atlas.cli.circuit import circuit
from atlas.cli.decompose import decompose
from atlas.cli.ingest import ingest
from atlas.cli.interchange import export_command, import_group
from atlas.cli.models import models
from atlas.cli.query import features, inputs, outputs, paths, query, signals, templates
from atlas.cli.replicate import replicate
from atlas.cli.report import report
from atlas.cli.runs import runs
from atlas.cli.server import db, server
from atlas.cli.toy import train_toy
from atlas.cli.validate import validate

# `circuit-atlas --help` lists the commands in these groups, in this order.
SECTIONS: tuple[tuple[str, tuple[click.Command, ...]], ...] = (
    ("Build the atlas", (decompose, ingest, import_group, train_toy)),
    (
        "Ask the atlas",
        (circuit, paths, inputs, outputs, signals, features, query, templates, browse),
    ),
    ("Check and report", (validate, report, replicate)),
    ("Runs, exports and the database", (runs, models, export_command, server, db, bench)),
)


class SectionedGroup(click.Group):
    """A click group whose help lists its commands by :data:`SECTIONS` instead of A to Z."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = formatter.width - 6 - max(len(name) for name in self.commands)
        for title, commands in SECTIONS:
            rows = [(c.name or "", c.get_short_help_str(limit=width)) for c in commands]
            with formatter.section(title):
                formatter.write_dl(rows)


@click.group(
    cls=SectionedGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
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
