"""`circuit-atlas circuit`: the SAD circuit of a root head, as a tree, JSON or CSV."""

from __future__ import annotations

import json
import sys

import click

from atlas.cli.browse import echo_link, link_option
from atlas.cli.options import check_run_method, run_method_option


@click.command()
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option(
    "--root",
    required=True,
    help="The root head as layer.head, e.g. 9.9; on an ACC run also logit: the IO−S logit "
    "direction (every seed firing is a root).",
)
@click.option("--prompt", type=click.IntRange(min=0), help="One prompt's firings (default: all).")
@click.option("--dest-role", default="END", show_default=True, help="The root's query role.")
@click.option("--src-role", default="IO", show_default=True, help="The root's key role.")
@click.option("--max-depth", type=click.IntRange(min=1), help="Show at most this many levels.")
@click.option(
    "--min-prompts",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hide aggregated edges seen in fewer prompts.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["tree", "json", "csv"]),
    default="tree",
    show_default=True,
    help="tree: indented text; json/csv: one record per edge (with depth).",
)
@run_method_option
@link_option
def circuit(
    run_id: str,
    root: str,
    prompt: int | None,
    dest_role: str,
    src_role: str,
    max_depth: int | None,
    min_prompts: int,
    output_format: str,
    method: str | None,
    link: bool,
) -> None:
    """Trace a head's circuit upstream (the SAD recursion) and print it as a tree.

    Starts at the root head's firings DEST-ROLE→SRC-ROLE (a name mover attending from END to
    IO, by default). For each upstream head that wrote into such a firing (query side q at the
    destination, key side k at the source), it continues into that writer's own firing at the
    position it wrote to, and so on until a writer does not fire there (layer 0 never does).
    With --prompt, the tree shows one prompt's firings with positions and weights w; without,
    it is aggregated over prompts: n = prompts with that edge, mean = its mean weight.

    A line `q  8.6 @END→S2  n=150  mean=+1.234` reads: 8.6 wrote the query side at END in 150
    prompts, and fires END→S2 there itself (the tree continues below it).

    On an ACC run (--method acc) the root is a head whose END firings carry the answer (its
    seeds), or `--root logit`: the IO−S logit direction, every seed firing a root (one tree per
    seed head and roles; --dest-role/--src-role do not apply). Writers include MLPs, attention
    biases and the embedding (leaves), and a head writer continues into its firing at the source
    token it read. A SAD run has no logit root.

    Example: circuit-atlas circuit --run gpt2-sad-256 --root 9.9 --max-depth 3 --min-prompts 20
    """
    import csv

    from atlas.ask.circuits import circuit_edges, fetch_circuit, render_tree
    from atlas.store.store import AtlasStore

    store = AtlasStore.connect()
    check_run_method(store, run_id, method)
    found = fetch_circuit(store, run_id, root, dest_role, src_role, prompt)
    from atlas.cli.query import warn_if_incomplete

    warn_if_incomplete(store, run_id)
    if link:
        from atlas.ask.circuits import LOGIT_ROOT, parse_head

        layer, head = (None, None) if root == LOGIT_ROOT else parse_head(root)
        echo_link(
            "circuit",
            dict(
                run_id=run_id,
                layer=layer,
                head=head,
                dest_role=dest_role,
                src_role=src_role,
                prompt=prompt,
            ),
        )
    if output_format == "tree":
        click.echo(render_tree(found, max_depth, min_prompts))
        return
    records = circuit_edges(found, max_depth, min_prompts)
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    fields = list(records[0]) if records else []
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "writer_firings": ";".join(record["writer_firings"])})
