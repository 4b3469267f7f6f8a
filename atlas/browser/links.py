"""The Neo4j Browser as a way into the atlas: style, guide, their bundle, and deep links.

**Style** (``atlas/browser/assets/atlas.grass``): GraSS selectors name only labels and
relationship types, so heads carry display labels (:func:`atlas.store.schema.head_labels`:
``Layer<l>`` and, for GPT-2 small, the IOI class such as ``NameMover``) and the style colours
by them. Captions are property templates (``'{id}'``, ``'{dest_role}→{src_role}'``). GraSS
cannot map a property to a width, so the guide's circuit graph draws each ``COMMUNICATES``
edge as an APOC virtual relationship whose type is its support band (``SUPPORT_HIGH``: at
least 2/3 of the run's prompts, ``SUPPORT_MID``: at least 1/3, else ``SUPPORT_LOW``), each
band with its own ``shaft-width``.

**Guide** (:func:`render_guide`): Neo4j's HTML guide format (one ``<slide>`` per question,
``<pre class="runnable">`` blocks the Browser copies into its editor). The slides come from the
headers and bodies of ``queries/*.cypher`` (:data:`GUIDE_QUESTIONS`; templates that are not
there are left out), so the guide and the catalogue cannot drift. Parameters are set with
``:param name => value``, never pasted into the query.

**Serving**: Neo4j 5.26 serves ``/browser/`` from ``<home>/web/neo4j-browser.zip`` when that
file exists (else from the Browser jar on the classpath). :func:`write_bundle` writes that
zip: the Browser jar's files plus ``browser/atlas/atlas.grass`` and ``guide.html``, so the
local server serves style and guide itself, on the same origin as the Browser (no CORS, no
second process or port). :func:`browser_settings` are the ``neo4j.conf`` lines that apply
them on connect (``browser.post_connect_cmd``) and allow fetching them (the allowlist, named
``browser.remote_content_hostname_whitelist`` in Neo4j 5.26; the Browser reads either name).

**Deep links** (:func:`browser_url`): ``/browser/?cmd=edit&arg=...`` pre-fills the editor with
``:params {...};`` and the query; the user presses run.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atlas.errors import AtlasError
from queries.templates import Template, load_template, template_names

STYLE_FILE = Path(__file__).resolve().parent / "assets" / "atlas.grass"
CONTENT_PATH = "atlas"  # served at /browser/atlas/
STYLE_NAME = "atlas.grass"
GUIDE_NAME = "guide.html"
BUNDLE_NAME = "neo4j-browser.zip"  # the name Neo4j 5.26 looks for in <home>/web

# Guide slides in order: template name -> the question it answers.
GUIDE_QUESTIONS: dict[str, str] = {
    "circuit": "A circuit from a name mover",
    "head_roles": "Where a head fires",
    "head_inputs": "The strongest writers into a head",
    "redundant_writers": "Redundant writers",
    "shared_features": "Shared features",
    "paths": "A path between two heads",
}

# Support bands of the circuit graph (virtual relationship types; see the module docstring).
SUPPORT_BANDS = (("SUPPORT_HIGH", 2 / 3), ("SUPPORT_MID", 1 / 3), ("SUPPORT_LOW", 0.0))

LATEST_RUN = (
    "head(COLLECT { MATCH (r:Run) WHERE r.status = 'complete' "
    "RETURN r.id ORDER BY r.created_at DESC })"
)

RUNS_QUERY = """MATCH (r:Run)
RETURN r.id AS run, r.model_id AS model, r.method AS method, r.status AS status,
       COUNT { (r)-[:HAS_PROMPT]->() } AS prompts, toString(r.created_at) AS created
ORDER BY r.created_at DESC"""


def style_text() -> str:
    return STYLE_FILE.read_text(encoding="utf-8")


def cypher_literal(value: Any) -> str:
    """A Python value (from JSON) as a Cypher literal, for ``:param name => literal``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(cypher_literal(item) for item in value) + "]"
    raise TypeError(f"No Cypher literal for {value!r}")


def param_commands(params: Mapping[str, Any]) -> str:
    """``:param name => literal;`` lines, each merged into the Browser's parameters.

    (``:params {...}`` would replace all parameters, including the ``run_id`` chosen before.)
    """
    return "\n".join(f":param {name} => {cypher_literal(v)};" for name, v in params.items())


def circuit_graph_cypher(circuit: Template) -> str:
    """The circuit as a graph: heads joined by their ``COMMUNICATES`` edges of the run.

    Wraps the ``circuit`` template's body unchanged in ``CALL () {...}``; every distinct
    (writer, head, side, role) of its rows becomes a virtual relationship whose type is the
    support band of the stored ``COMMUNICATES`` edge (``n_prompts`` / the run's prompts).
    """
    body = circuit.cypher.strip()
    bands = " ".join(f"WHEN support >= {low!r} THEN '{name}'" for name, low in SUPPORT_BANDS[:-1])
    return (
        "CALL () {\n"
        + body
        + "\n}\n"
        + "WITH DISTINCT writer, layer, head, side, role\n"
        + "MATCH (r:Run {id: $run_id})\n"
        + "MATCH (w:Component {model_id: r.model_id, id: writer})\n"
        + "      -[c:COMMUNICATES {run_id: $run_id, side: side, role: role}]->\n"
        + "      (h:Head {model_id: r.model_id, layer: layer, head: head})\n"
        + "WITH w, c, h, toFloat(c.n_prompts) / COUNT { (r)-[:HAS_PROMPT]->() } AS support\n"
        + "RETURN w, h, apoc.create.vRelationship(w,\n"
        + f"  CASE {bands} ELSE '{SUPPORT_BANDS[-1][0]}' END,\n"
        + "  c {.*, support: support}, h) AS communicates"
    )


# ----- the guide -------------------------------------------------------------------------------


def _runnable(text: str) -> str:
    return f'<pre class="code runnable">{html.escape(text)}</pre>'


def _example_blocks(template: Template) -> list[str]:
    """Runnable ``:param`` blocks for the template's GPT-2 and toy-ioi examples (no run_id)."""
    blocks = []
    examples = [("GPT-2 small", template.example), ("toy-ioi", template.example_toy)]
    for model, example in examples:
        if example is None:
            continue
        params = {k: v for k, v in template.bind(example).items() if k != "run_id"}
        if params:
            heading = f"<p>Parameters, e.g. for {model}:</p>"
            blocks.append(heading + _runnable(param_commands(params)))
    return blocks


def _template_slide(question: str, template: Template) -> str:
    parts = [
        f"<h3>{html.escape(question)}</h3>",
        f"<p>{html.escape(template.purpose)} <em>(template <code>{template.name}</code>; "
        f"parameters: <code>{html.escape(template.signature())}</code>)</em></p>",
        *_example_blocks(template),
    ]
    if template.name == "circuit":
        parts += [
            "<p>The same circuit as a graph: heads (coloured by layer or IOI class) joined "
            "by their <code>COMMUNICATES</code> edges, thicker the more of the run's prompts "
            "use them (virtual relationships <code>SUPPORT_HIGH</code> ≥ 2/3, "
            "<code>SUPPORT_MID</code> ≥ 1/3, <code>SUPPORT_LOW</code>; needs APOC):</p>",
            _runnable(circuit_graph_cypher(template)),
        ]
    parts += [
        "<p>The template (uses <code>$run_id</code> and the parameters above):</p>",
        _runnable(template.cypher.strip()),
    ]
    return "<slide>\n" + "\n".join(parts) + "\n</slide>"


def render_guide(names: list[str] | None = None) -> str:
    """The atlas guide (Neo4j Browser HTML guide), from the templates present in ``queries/``."""
    present = set(template_names())
    names = [n for n in (names or list(GUIDE_QUESTIONS)) if n in present]
    intro = "\n".join(
        [
            "<slide>",
            "<h3>Circuit Atlas</h3>",
            "<p>Each slide answers one question about the SAD communication atlas with a "
            "Cypher template of <code>queries/</code>. Click a grey block to copy it into "
            "the editor, then run it (Ctrl+Enter). Parameters are set with "
            "<code>:param</code>, so a query is never edited by hand.</p>",
            "<p>Runs in the atlas:</p>",
            _runnable(RUNS_QUERY),
            "<p>Choose the run every slide uses (the newest complete run; edit the id to "
            "pick another):</p>",
            _runnable(f":param run_id => {LATEST_RUN};"),
            "</slide>",
        ]
    )
    slides = [intro] + [_template_slide(GUIDE_QUESTIONS[n], load_template(n)) for n in names]
    return (
        '<article class="guide">\n<carousel class="deck container-fluid">\n'
        + "\n".join(slides)
        + "\n</carousel>\n</article>\n"
    )


# ----- the bundle Neo4j serves under /browser/ -----------------------------------------------


def bundle_files() -> dict[str, bytes]:
    """The project's files inside the Browser bundle, by path below ``browser/``."""
    return {
        f"{CONTENT_PATH}/{STYLE_NAME}": style_text().encode(),
        f"{CONTENT_PATH}/{GUIDE_NAME}": render_guide().encode(),
    }


def export_content(folder: Path) -> list[Path]:
    """Write the style and the guide into ``folder`` (to serve them for another Neo4j)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in bundle_files().items():
        path = folder / Path(name).name
        path.write_bytes(content)
        written.append(path)
    return written


def write_bundle(home: Path) -> Path | None:
    """Write ``<home>/web/neo4j-browser.zip`` (Browser + style + guide) unless it is current.

    Returns the zip's path, or None when ``<home>/lib`` has no Browser jar (then Neo4j serves
    no Browser at all). The zip is written to a temporary file and renamed into place, so a
    server starting at the same time reads either the old or the new bundle.
    """
    jars = sorted((home / "lib").glob("neo4j-browser-*.jar"))
    if not jars:
        return None
    jar = jars[-1]
    extra = bundle_files()
    digest = hashlib.sha256(jar.name.encode())
    for name, content in sorted(extra.items()):
        digest.update(name.encode() + b"\0" + content)
    web = home / "web"
    target, stamp = web / BUNDLE_NAME, web / ".circuit-atlas-bundle.sha256"
    if target.exists() and stamp.exists() and stamp.read_text().strip() == digest.hexdigest():
        return target
    web.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=web, prefix=".bundle-", suffix=".tmp")
    os.close(fd)
    try:
        with (
            zipfile.ZipFile(jar) as source,
            zipfile.ZipFile(temporary, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out,
        ):
            for info in source.infolist():  # `browser/` (the served root) comes first
                if info.filename.startswith("browser/"):
                    out.writestr(info, source.read(info))
            out.writestr(f"browser/{CONTENT_PATH}/", b"")  # Neo4j creates folders from entries
            for name, content in extra.items():
                out.writestr(f"browser/{name}", content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    stamp.write_text(digest.hexdigest() + "\n")
    return target


def content_url(http_port: int, name: str) -> str:
    return f"http://127.0.0.1:{http_port}/browser/{CONTENT_PATH}/{name}"


def browser_settings(http_port: int) -> dict[str, str]:
    """``neo4j.conf`` settings that apply the style and open the guide on connect.

    On connect the Browser also turns off "Connect result nodes" (``autoComplete``): every
    pair of heads has dozens of ``COMMUNICATES`` edges (runs × sides × roles), which that
    setting would add to every graph; a query shows the edges it returns. No telemetry.
    """
    return {
        "browser.post_connect_cmd": (
            f"style {content_url(http_port, STYLE_NAME)}; "
            "config autoComplete: false; "
            f"guide {content_url(http_port, GUIDE_NAME)}"
        ),
        "browser.remote_content_hostname_whitelist": "127.0.0.1,localhost",
        "client.allow_telemetry": "false",
    }


# ----- deep links ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrowserLink:
    """A Browser URL and the editor text it pre-fills."""

    url: str
    editor_text: str


def browser_url(
    query: str,
    params: Mapping[str, Any] | None = None,
    *,
    browser: str = "http://127.0.0.1:7474/browser/",
    connect_url: str | None = None,
) -> BrowserLink:
    """A Browser link whose editor holds ``:params {...};`` and the query, ready to run.

    ``query`` is a template name (its parameters are checked against the header and its
    defaults filled in) or Cypher text (``params`` are sent as given). ``connect_url`` (a
    Bolt URI) pre-fills the Browser's connection. The Browser decodes the whole URL before it
    splits it at ``&`` and ``#``, so a query containing either cannot be carried by a link.
    """
    given = dict(params or {})
    if query in template_names():
        template = load_template(query)
        cypher, bound = template.cypher.strip(), template.bind(given)
    else:
        cypher, bound = query.strip(), given
    text = (f":params {json.dumps(bound, ensure_ascii=False)};\n" if bound else "") + cypher
    for char in "&#":
        if char in text:
            raise AtlasError(
                f"A Browser link cannot carry {char!r} (the Browser splits its URL there); "
                "remove it from the query or its parameters."
            )
    arguments = ([("dbms", connect_url)] if connect_url else []) + [("cmd", "edit"), ("arg", text)]
    query_string = "&".join(f"{key}={quote(value, safe='')}" for key, value in arguments)
    return BrowserLink(url=f"{browser}?{query_string}", editor_text=text)
