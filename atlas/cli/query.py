"""`circuit-atlas templates`, `query` and the shortcuts analysts type: `paths`, `inputs`,
`outputs`, `signals`, `features`. Thin over :mod:`atlas.ask.lookups`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from atlas.cli.browse import echo_link, link_option
from atlas.cli.options import echo_frame, echo_records, format_option

if TYPE_CHECKING:
    pass


def run_option(command: Any) -> Any:
    return click.option(
        "--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`)."
    )(command)


def connect() -> Any:
    from atlas.store.store import AtlasStore

    return AtlasStore.connect()


def warn_if_incomplete(store: Any, run_id: str | None) -> None:
    """One line on stderr when the run asked about is not complete: its answers are partial
    (an interrupted ingest has WRITES for some batches and no COMMUNICATES yet)."""
    status = store.run_status(run_id) if isinstance(run_id, str) else None
    if status not in (None, "complete"):
        click.echo(
            f"Warning: run '{run_id}' is {status}, not complete: answers cover only the batches "
            "written so far (finish it with `ingest ... --resume`).",
            err=True,
        )


@click.command()
@click.option("--markdown", is_flag=True, help="Print queries/catalogue.md (generated).")
@format_option
def templates(markdown: bool, output_format: str) -> None:
    """List the Cypher templates with their parameters (`query NAME` runs one)."""
    from queries.templates import all_templates, render_catalogue

    if markdown:
        click.echo(render_catalogue(), nl=False)
        return
    records = [
        {
            "name": template.name,
            "mode": template.mode,
            "purpose": template.purpose,
            "parameters": template.signature(),
            "returns": [column.name for column in template.returns],
        }
        for template in all_templates()
    ]
    echo_records(records, output_format, table=_echo_templates)


def _echo_templates(records: Any) -> None:
    for record in records:
        write = "  [writes]" if record["mode"] == "write" else ""
        click.echo(f"{record['name']}{write}: {record['purpose']}")
        click.echo(f"    ({record['parameters']})")


@click.command()
@click.argument("name")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A template parameter (repeatable). Lists: a,b or JSON [..]; null for none.",
)
@click.option("--run", "run_id", help="Shorthand for --param run_id=RUN.")
@format_option
@link_option
def query(
    name: str, params: tuple[str, ...], run_id: str | None, output_format: str, link: bool
) -> None:
    """Run the template NAME (see `circuit-atlas templates`) with its parameters.

    Parameters are checked against the template's header and sent as Cypher parameters (never
    spliced into the query). Missing ones take their defaults.

    \b
    Examples:
      circuit-atlas query head_inputs --run RUN -p layer=9 -p head=9 -p side=q -p role=END
      circuit-atlas query compare --run RUN -p order_a=ABBA -p order_b=BABA -p layer=9 -p head=9
      circuit-atlas query alternative_routes --run RUN -p from_layer=7 -p from_head=3 \\
          -p to_layer=9 -p to_head=9 --format json
    """
    from atlas.ask.lookups import edge_disjoint_routes, routes_graph, run_query
    from atlas.errors import ParameterError

    given: dict[str, Any] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param takes KEY=VALUE, got {param!r}.")
        given[key.strip()] = value
    if run_id is not None:
        given["run_id"] = run_id
    store = connect()
    frame = run_query(store, name, **given)
    warn_if_incomplete(store, given.get("run_id"))
    if link:
        echo_link(name, given)
    echo_frame(frame, output_format)
    if name == "alternative_routes" and output_format == "table" and not frame.empty:
        graph = routes_graph(frame)
        source = f"{given['from_layer']}.{given['from_head']}"
        target = f"{given['to_layer']}.{given['to_head']}"
        disjoint = edge_disjoint_routes(graph, source, target)
        total = int(frame["total_routes"].iloc[0])
        click.echo(f"{total} routes {source} → {target}; {disjoint} edge-disjoint.")


@click.command()
@click.argument("source")
@click.argument("target")
@run_option
@click.option(
    "--max-hops",
    default=3,
    show_default=True,
    type=click.IntRange(1, 6),
    help="Longest route, in COMMUNICATES hops (1 to 6).",
)
@click.option(
    "--min-prompts",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Every hop seen in at least this many prompts.",
)
@click.option(
    "--any-role",
    is_flag=True,
    help="Also routes that are not role-consistent (see `templates`: paths).",
)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many routes listed (the counts below cover them all).",
)
@click.option(
    "--graphml",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write every route's hops as a GraphML graph to this file.",
)
@format_option
@link_option
def paths(
    source: str,
    target: str,
    run_id: str,
    max_hops: int,
    min_prompts: int,
    any_role: bool,
    limit: int,
    graphml: Path | None,
    output_format: str,
    link: bool,
) -> None:
    """Ranked routes between two heads, and how many are edge-disjoint (redundancy).

    SOURCE and TARGET are heads as layer.head; the earlier layer is the upstream end, so
    `paths 9.9 7.3` and `paths 7.3 9.9` ask the same. A route line reads
    `7.3 -q@END→ 8.6 -q@END→ 9.9`: 7.3 wrote into 8.6's query side at END, ...; routes are
    ranked by their weakest hop's prompt support.

    Example: circuit-atlas paths 7.3 9.9 --run gpt2-sad-256 --min-prompts 5
    """
    from atlas.ask.lookups import alternative_routes, head, run_query, write_graphml
    from atlas.errors import ParameterError

    (a_layer, a_head), (b_layer, b_head) = head(source), head(target)
    if (a_layer, a_head) > (b_layer, b_head):
        source, target = target, source
        (a_layer, a_head), (b_layer, b_head) = (b_layer, b_head), (a_layer, a_head)
    if a_layer == b_layer:
        raise ParameterError(
            f"{source} and {target} are in the same layer ({a_layer}): a route runs from a head "
            "to a head of a later layer, so none can join them. Pick heads of two layers."
        )
    store = connect()
    options = {"max_hops": max_hops, "min_prompts": min_prompts, "consistent": not any_role}
    params = dict(
        run_id=run_id,
        from_layer=a_layer,
        from_head=a_head,
        to_layer=b_layer,
        to_head=b_head,
        limit=limit,
        **options,
    )
    frame = run_query(store, "paths", **params)
    warn_if_incomplete(store, run_id)
    routes = alternative_routes(store, run_id, source, target, **options)
    if link:
        echo_link("paths", params)
    if output_format == "table":
        echo_frame(frame[["route", "hops", "min_prompts", "prompts"]], output_format)
        click.echo(
            f"{routes.routes} routes {source} → {target} (≤ {max_hops} hops, every hop in "
            f"≥ {min_prompts} prompts); {routes.edge_disjoint} edge-disjoint."
        )
    else:
        echo_frame(frame, output_format)
    if graphml is not None:
        write_graphml(routes.graph, graphml)
        click.echo(f"Wrote {routes.graph.number_of_edges()} hops to {graphml}.", err=True)


def echo_head_query(
    template: str, head_name: str, run_id: str, output_format: str, link: bool, **options: Any
) -> None:
    """Run a one-head template; options left unset (None) take the template's defaults."""
    from atlas.ask.lookups import head, run_query

    layer, index = head(head_name)
    given = {key: value for key, value in options.items() if value is not None}
    store = connect()
    frame = run_query(store, template, run_id=run_id, layer=layer, head=index, **given)
    warn_if_incomplete(store, run_id)
    if link:
        echo_link(template, dict(run_id=run_id, layer=layer, head=index, **given))
    echo_frame(frame, output_format)


def head_options(*extra: Any) -> Any:
    """HEAD, --run, --format, --link and the command's own options."""

    def decorate(command: Any) -> Any:
        for option in reversed([*extra, run_option, format_option, link_option]):
            command = option(command)
        return click.argument("head_name", metavar="HEAD")(command)

    return decorate


SIDE = click.option(
    "--side", type=click.Choice(["q", "k"]), help="Query or key side (default: both)."
)
ROLE = click.option("--role", help="Role of the position written: END, IO, S2, ... (default: all).")
MIN_PROMPTS = click.option(
    "--min-prompts", type=click.IntRange(min=1), help="Hide edges seen in fewer prompts (1)."
)
LIMIT = click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
DEST_ROLE = click.option("--dest-role", help="The firings' query role (default END).")
SRC_ROLE = click.option("--src-role", help="The firings' key role (default IO).")


@click.command()
@head_options(SIDE, ROLE, MIN_PROMPTS, LIMIT)
def inputs(head_name: str, run_id: str, output_format: str, link: bool, **options: Any) -> None:
    """The writers into HEAD over a run (aggregated COMMUNICATES), most prompts first.

    Example: circuit-atlas inputs 9.9 --run gpt2-sad-256 --side q --role END
    """
    echo_head_query("head_inputs", head_name, run_id, output_format, link, **options)


@click.command()
@head_options(SIDE, ROLE, MIN_PROMPTS, LIMIT)
def outputs(head_name: str, run_id: str, output_format: str, link: bool, **options: Any) -> None:
    """The heads HEAD writes into over a run, on which side and at which role.

    Example: circuit-atlas outputs 8.6 --run gpt2-sad-256
    """
    echo_head_query("head_outputs", head_name, run_id, output_format, link, **options)


@click.command()
@head_options(
    DEST_ROLE,
    SRC_ROLE,
    click.option(
        "--min-share", type=float, help="Vectors in at least this share of firings (0.5)."
    ),
    click.option("--writers", type=click.IntRange(min=1), help="Writers listed per vector (5)."),
)
def signals(head_name: str, run_id: str, output_format: str, link: bool, **options: Any) -> None:
    """The singular vectors HEAD uses in most of its DEST-ROLE→SRC-ROLE firings (its recurring
    signal), per side, with the writers credited through each vector (WRITES.parts).

    Example: circuit-atlas signals 9.9 --run gpt2-sad-256 --min-share 0.5
    """
    echo_head_query("shared_signals", head_name, run_id, output_format, link, **options)


@click.command()
@head_options(
    DEST_ROLE,
    SRC_ROLE,
    click.option(
        "--min-share", type=float, help="The head's vectors in this share of firings (0.3)."
    ),
    click.option("--min-cos", type=float, help="Least |cos| of an aligned pair (0.5)."),
    LIMIT,
)
def features(head_name: str, run_id: str, output_format: str, link: bool, **options: Any) -> None:
    """Features HEAD reads that other heads read too (ALIGNED singular vectors), with the
    writers that broadcast each feature into both.

    Example: circuit-atlas features 9.9 --run gpt2-sad-256
    """
    echo_head_query("shared_features", head_name, run_id, output_format, link, **options)
