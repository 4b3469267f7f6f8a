"""Bad input through the CLI against the real Neo4j test server: every case exits non-zero with
one short message (no Python traceback), and leaves the graph as it was.

The table below is what a new user types wrong, across the commands: unknown names, mistyped,
out-of-range and oversized parameters, malformed files, unwritable paths, run ids that are not
names, and connection settings that cannot work. Set ``CIRCUIT_ATLAS_BAD_INPUT_TABLE=FILE`` to
also write the table as it ran (kind, command, exit code, message) into FILE as Markdown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.store.store import AtlasStore

RUN = "{run}"  # replaced by the session's toy-ioi run id
LONG_ID = "x" * 10_000
MAX_OUTPUT_LINES = 5  # click's usage errors: "Usage: …", "Try …", "", "Error: …"
MAX_OUTPUT_CHARS = 1_200


@dataclass(frozen=True)
class Case:
    kind: str
    args: tuple[str, ...]
    env: dict[str, str | None] = field(default_factory=dict)
    # Output that must appear (a word of the message: the parameter or value named).
    says: str = ""


def case(kind: str, *args: str, says: str = "", **env: str | None) -> Case:
    return Case(kind, args, env, says)


HEAD_INPUTS = ("query", "head_inputs", "--run", RUN, "-p", "layer=3", "-p", "head=1")
PATHS = ("query", "paths", "--run", RUN, "-p", "from_layer=0", "-p", "from_head=2")
PATHS += ("-p", "to_layer=3", "-p", "to_head=1")
COMPARE = ("query", "compare", "--run", RUN, "-p", "layer=3", "-p", "head=1")
INGEST = ("ingest", "--model", "toy-ioi", "--n-prompts", "8", "--quiet")

CASES: list[Case] = [
    # ----- templates and their parameters (`query`) -------------------------------------------
    case("unknown template", "query", "head_input", "--run", RUN, says="head_inputs"),
    case("missing parameter", "query", "head_inputs", "--run", RUN, "-p", "layer=3", says="head"),
    case("unknown parameter", *HEAD_INPUTS, "-p", "bogus=1", says="bogus"),
    case("parameter without =", *HEAD_INPUTS, "-p", "limit", says="KEY=VALUE"),
    case("int that is text", *HEAD_INPUTS, "-p", "limit=many", says="limit"),
    case("negative limit", *HEAD_INPUTS, "-p", "limit=-1", says="limit"),
    case("zero limit", *HEAD_INPUTS, "-p", "limit=0", says="limit"),
    case("int beyond 64 bits", *HEAD_INPUTS, "-p", "min_prompts=" + "9" * 30, says="min_prompts"),
    case("negative layer", "query", "head_inputs", "--run", RUN, "-p", "layer=-1", "-p", "head=1"),
    case("float for an int", *HEAD_INPUTS, "-p", "min_prompts=1.5", says="min_prompts"),
    case("null for a non-null", *HEAD_INPUTS, "-p", "min_prompts=null", says="min_prompts"),
    case("side not q or k", *HEAD_INPUTS, "-p", "side=x", says="side"),
    case("negative hops", *PATHS, "-p", "max_hops=-3", says="max_hops"),
    case("too many hops", *PATHS, "-p", "max_hops=100", says="max_hops"),
    case("bool that is not", *PATHS, "-p", "consistent=maybe", says="consistent"),
    case("malformed JSON list", *COMPARE, "-p", "templates_a=[1,2", says="templates_a"),
    case("list of wrong items", *COMPARE, "-p", "templates_a=[1,2]", says="templates_a"),
    case("share above 1", "signals", "3.1", "--run", RUN, "--min-share", "2", says="share"),
    case(
        "negative prompt",
        "query",
        "head_roles",
        "--run",
        RUN,
        "-p",
        "layer=3",
        "-p",
        "head=1",
        "-p",
        "prompt=-5",
        says="prompt",
    ),
    # ----- runs and heads in the shortcuts --------------------------------------------------
    case("unknown run", "inputs", "3.1", "--run", "no-such-run", says="no-such-run"),
    case("head not layer.head", "inputs", "three", "--run", RUN, says="three"),
    case("head outside the model", "inputs", "99.0", "--run", RUN, says="99"),
    case("paths within one layer", "paths", "3.1", "3.2", "--run", RUN, says="layer"),
    case("paths zero hops", "paths", "0.2", "3.1", "--run", RUN, "--max-hops", "0"),
    case("circuit bad root", "circuit", "--run", RUN, "--root", "nine", says="nine"),
    case(
        "circuit unknown role",
        "circuit",
        "--run",
        RUN,
        "--root",
        "3.1",
        "--dest-role",
        "FOO",
        says="FOO",
    ),
    case("circuit unknown run", "circuit", "--run", "nope", "--root", "3.1", says="nope"),
    case("runs show unknown", "runs", "show", "nope", says="nope"),
    case("runs delete unknown", "runs", "delete", "nope", "--yes", says="nope"),
    case("browse unknown template", "browse", "--query", "nope_template", says="nope_template"),
    # ----- files ------------------------------------------------------------------------------
    case("report unwritable out", "report", "--run", RUN, "--out", "/proc/x", says="/proc/x"),
    case(
        "report unknown roles",
        "report",
        "--run",
        RUN,
        "--out",
        "{tmp}/report",
        "--root",
        "3.1:FOO:BAR",
        says="FOO",
    ),
    case("export unknown run", "export", "--run", "nope", "--out", "{tmp}/x.graphml"),
    case("export unwritable", "export", "--run", RUN, "--out", "/proc/x/y.graphml", says="/proc"),
    case("import missing file", "import", "graphml", "{tmp}/none.graphml", "--run-id", "imp"),
    case("import not XML", "import", "graphml", "{tmp}/text.graphml", "--run-id", "imp"),
    case("import empty file", "import", "graphml", "{tmp}/empty.graphml", "--run-id", "imp"),
    case("import truncated", "import", "graphml", "{tmp}/truncated.graphml", "--run-id", "imp"),
    case("import binary", "import", "graphml", "{tmp}/binary.graphml", "--run-id", "imp"),
    case("import other XML", "import", "graphml", "{tmp}/other.graphml", "--run-id", "imp"),
    case(
        "import run id a path",
        "import",
        "graphml",
        "{tmp}/other.graphml",
        "--run-id",
        "../x",
        says="run id",
    ),
    # ----- run ids and ingest settings (checked before the model loads) -----------------------
    case("empty run id", *INGEST, "--run-id", "", says="run id"),
    case("10,000-char run id", *INGEST, "--run-id", LONG_ID, says="run id"),
    case("run id a path", *INGEST, "--run-id", "../esc/x", says="../esc/x"),
    case("run id with quote", *INGEST, "--run-id", "a';DROP", says="run id"),
    case("run id unicode", *INGEST, "--run-id", "prüfung", says="run id"),
    case("run id leading dot", *INGEST, "--run-id", ".hidden", says="run id"),
    case("run id exists", *INGEST, "--run-id", RUN, says="--resume"),
    case("unknown model", "ingest", "--model", "no-such-model", "--quiet", says="no-such-model"),
    case("unknown device", *INGEST, "--device", "tpu", says="tpu"),
    case("edge fraction above 1", *INGEST, "--edge-fraction", "2", says="edge"),
    case("resume and rewrite", *INGEST, "--resume", "--rewrite", says="--rewrite"),
    case("zero prompts", *INGEST, "--n-prompts", "0"),
    # ----- connection settings ----------------------------------------------------------------
    case("URI unknown scheme", "runs", "list", NEO4J_URI="foo://127.0.0.1:7687", says="foo"),
    case("URI port not a number", "runs", "list", NEO4J_URI="bolt://127.0.0.1:port", says="port"),
    case("missing database", "runs", "list", NEO4J_DATABASE="nosuchdb", says="nosuchdb"),
    case("wrong password", "runs", "list", NEO4J_PASSWORD="wrong-password", says="NEO4J"),
    case("password without URI", "runs", "list", NEO4J_URI=None, says="NEO4J_URI"),
]

_rows: list[tuple[str, str, int, str]] = []


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    (folder / "text.graphml").write_text("this is not XML\n")
    (folder / "empty.graphml").write_bytes(b"")
    (folder / "truncated.graphml").write_text(
        '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns"><graph>'
    )
    (folder / "binary.graphml").write_bytes(bytes(range(256)) * 4)
    (folder / "other.graphml").write_text('<?xml version="1.0"?><html><body/></html>\n')
    return folder


def graph_size(store: AtlasStore) -> tuple[int, int]:
    (row,) = store._execute(
        "CALL () { MATCH (n) RETURN count(n) AS nodes } "
        "CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships } "
        "RETURN nodes, relationships"
    )
    return row["nodes"], row["relationships"]


@pytest.fixture(scope="module", autouse=True)
def table_file() -> Iterator[None]:
    yield
    target = os.environ.get("CIRCUIT_ATLAS_BAD_INPUT_TABLE")
    if target and _rows:
        lines = ["| kind | command | exit | message |", "|---|---|---|---|"]
        for kind, command, code, message in _rows:
            escaped = message.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {kind} | `{command}` | {code} | {escaped} |")
        Path(target).write_text("\n".join(lines) + "\n")


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.kind for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=lambda c: c.kind.replace(" ", "-"))
def test_bad_input_is_one_line_and_changes_nothing(
    bad: Case,
    bad_files: Path,
    neo4j_env: dict[str, str],
    atlas_store: AtlasStore,
    toy_ioi_run: str,
) -> None:
    args = [a.replace(RUN, toy_ioi_run).replace("{tmp}", str(bad_files)) for a in bad.args]
    before = graph_size(atlas_store)
    env = {**neo4j_env, "HF_HUB_OFFLINE": "1", **bad.env}
    if bad.env.get("NEO4J_URI"):  # a URI of its own: no credentials that belong to another
        env["NEO4J_PASSWORD"] = "x"
    result = CliRunner(env=env).invoke(main, args)
    output = result.output
    shown = " ".join(a if len(a) <= 40 else a[:20] + f"…({len(a)} chars)" for a in args)
    shown = " ".join([*(f"{k}={v or ''}" for k, v in bad.env.items()), "circuit-atlas", shown])
    _rows.append((bad.kind, shown, result.exit_code, output.strip()))

    assert result.exit_code != 0, output
    # click's own exit (a reported error), never an exception that escaped the commands
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= MAX_OUTPUT_LINES, output
    assert len(output) <= MAX_OUTPUT_CHARS, output[:2000]
    assert any(line.startswith("Error:") for line in lines), output
    assert bad.says.lower() in output.lower(), output
    assert graph_size(atlas_store) == before
