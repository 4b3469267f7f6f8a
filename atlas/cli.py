"""The ``circuit-atlas`` command line: one click group, every command defined in this file."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="circuit-atlas")
def main() -> None:
    """Circuit Atlas: sparse attention decomposition of IOI circuits, stored in Neo4j.

    Typical flow: `decompose` to inspect a model's attention decisions, `server start` to run
    Neo4j locally, `ingest` to write a run into the atlas, then `circuit` or Cypher to query it.
    """
