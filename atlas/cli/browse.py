"""`circuit-atlas browse`: a Neo4j Browser link that pre-fills a query and its parameters."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from atlas.browser.links import BrowserLink


def browser_link(query: str, params: Mapping[str, Any], browser: str | None = None) -> BrowserLink:
    """:func:`atlas.browser.links.browser_url` for the configured Neo4j.

    The Browser address is ``browser`` if given, else ``NEO4J_BROWSER_URL``, else the local
    server's (``http://127.0.0.1:<http port>/browser/``); the link pre-fills the Bolt URI of
    the configured connection (``NEO4J_URI`` or the local server).
    """
    from atlas.browser.links import browser_url
    from atlas.errors import Neo4jUnavailableError
    from atlas.settings import load_settings

    try:
        connect_url: str | None = load_settings().uri
    except (
        Neo4jUnavailableError
    ):  # nothing configured yet: the Browser asks for the connection itself
        connect_url = None
    return browser_url(query, params, browser=browser_base(browser), connect_url=connect_url)


def link_option(command: Any) -> Any:
    """``--link``: the commands that print a result also print its Browser link."""
    return click.option(
        "--link",
        is_flag=True,
        help="Also print a Neo4j Browser link that pre-fills this query and its parameters "
        "(on stderr, so json/csv output stays clean).",
    )(command)


def echo_link(template: str, params: Mapping[str, Any]) -> None:
    """Print the Browser link of ``template`` with ``params`` (defaults filled in) on stderr."""
    from queries.templates import load_template

    bound = load_template(template).bind(params)
    click.echo(f"Neo4j Browser: {browser_link(template, bound).url}", err=True)


def browser_base(browser: str | None = None) -> str:
    """``browser``, else ``NEO4J_BROWSER_URL``, else the local server's Browser address."""
    from atlas.server.local import LocalServer

    return browser or os.environ.get("NEO4J_BROWSER_URL") or LocalServer.configured().browser_url


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``k=v`` pairs; values are JSON when they parse as JSON (3, null, [1,2]), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


@click.command()
@click.option("--run", "run_id", help="Run id: sets the query's $run_id (or the Browser's).")
@click.option(
    "--query",
    help="A template name (`queries/NAME.cypher`, e.g. circuit) or Cypher text. Without it, "
    "the link only sets $run_id and the guide opens on connect.",
)
@click.option(
    "--param", "params", multiple=True, metavar="NAME=VALUE", help="A query parameter (repeat)."
)
@click.option("--open", "open_link", is_flag=True, help="Also open the link in a web browser.")
@click.option(
    "--browser-url",
    help="The Neo4j Browser's address (default: NEO4J_BROWSER_URL, else the local server's).",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Instead, write the style (atlas.grass) and the guide (guide.html) into this folder, "
    "to serve them for a Docker or remote Neo4j.",
)
def browse(
    run_id: str | None,
    query: str | None,
    params: tuple[str, ...],
    open_link: bool,
    browser_url: str | None,
    export_dir: Path | None,
) -> None:
    """Print a Neo4j Browser link that pre-fills a query and its parameters.

    The link opens the Browser with `:params {...};` and the query in its editor (press
    Ctrl+Enter to run it); template parameters are checked against the template's header and
    its defaults filled in. The local server also applies the atlas style and opens the atlas
    guide when the Browser connects.

    \b
    Examples:
      circuit-atlas browse --run gpt2-sad-256 --query circuit --param layer=9 --param head=9
      circuit-atlas browse --run gpt2-sad-256 --query 'MATCH (h:Head) RETURN h LIMIT 5' --open
    """
    from atlas.browser.links import cypher_literal

    if export_dir is not None:
        from atlas.browser.links import export_content

        for path in export_content(export_dir):
            click.echo(f"Wrote {path}")
        return
    given = _parse_params(params)
    if query is not None and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", query.strip()):
        from queries.templates import load_template

        load_template(query.strip())  # one word is a template name, never Cypher: check it
    if query is not None:
        if run_id is not None:
            given["run_id"] = run_id
        url = browser_link(query, given, browser_url).url
    elif run_id is not None:
        url = browser_link(f":param run_id => {cypher_literal(run_id)}", {}, browser_url).url
    else:
        url = browser_base(browser_url)
    click.echo(url)
    if open_link:
        import webbrowser

        webbrowser.open(url)
