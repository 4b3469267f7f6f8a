"""Which package may import which (docs/architecture.md), checked on the source with ``ast``.

The rules:

- ``ingest`` (the job: model → records) never imports ``atlas`` or ``queries``, nor the Neo4j
  driver: the maths runs without a database.
- ``queries`` imports nothing of the project but ``atlas.errors``, and not the Neo4j driver.
- ``atlas.store`` never imports what sits above it: the Browser (``atlas.browser``), a file
  format (``atlas.interchange``), validation and reports (``atlas.check``), the analyst's
  questions (``atlas.ask``) or the CLI (``atlas.cli``).
- Only ``atlas.cli`` imports ``click``.

Every import counts, including those inside functions and under ``if TYPE_CHECKING:``: a
type-only import still ties the two packages together.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "atlas", "queries")

ABOVE_THE_STORE = (
    "atlas.browser",
    "atlas.interchange",
    "atlas.check",
    "atlas.ask",
    "atlas.scale",
    "atlas.cli",
)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. atlas.store.store
    target: str  # the imported module, absolute, e.g. atlas.interchange.graphml
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module ``path`` imports, relative imports resolved to absolute names."""
    module = module_name(path, root)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(Import(module, target, node.lineno))
    return found


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def broken_rule(imp: Import) -> str | None:
    """The rule ``imp`` breaks, or None."""
    source, target = imp.module, imp.target
    if within(source, "ingest"):
        if any(within(target, p) for p in ("atlas", "queries")):
            return "ingest never imports atlas or queries"
        if within(target, "neo4j"):
            return "ingest never talks to Neo4j"
    if within(source, "queries"):
        project = any(within(target, p) for p in PACKAGES)
        if project and not within(target, "queries") and not within(target, "atlas.errors"):
            return "queries imports only atlas.errors of the project"
        if within(target, "neo4j"):
            return "queries never talks to Neo4j itself"
    if within(source, "atlas.store") and any(within(target, p) for p in ABOVE_THE_STORE):
        return "atlas.store never imports the Browser, a file format, checks, asks or the CLI"
    if within(target, "click") and not within(source, "atlas.cli"):
        return "only atlas.cli imports click"
    return None


def violations(root: Path) -> dict[tuple[str, str], str]:
    """(module, target) → 'path:line: rule' for every import that breaks a rule under root."""
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for imp in imports_of(path, root):
                rule = broken_rule(imp)
                if rule is not None:
                    where = f"{path.relative_to(root)}:{imp.line}"
                    out[(imp.module, imp.target)] = f"{where}: imports {imp.target} ({rule})"
    return out


def test_every_package_is_scanned() -> None:
    modules = {
        module_name(path, ROOT) for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    assert {"ingest.pipeline", "atlas.store.store", "queries.templates", "atlas.cli"} <= modules


def test_no_import_breaks_the_layering() -> None:
    found = sorted(violations(ROOT).values())
    assert not found, "imports that break docs/architecture.md's rules:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("path", "source", "rule"),
    [
        ("ingest/pipeline.py", "from atlas.store.store import AtlasStore\n", "ingest never"),
        ("ingest/models/toy.py", "from ...atlas import cli\n", "ingest never"),
        ("ingest/tracing/upstream.py", "import neo4j\n", "ingest never talks"),
        ("queries/templates.py", "from atlas.settings import AtlasError\n", "queries imports"),
        ("queries/templates.py", "from atlas.errors import AtlasError\n", None),
        ("atlas/store/writer.py", "from ..browser import links\n", "atlas.store never"),
        (
            "atlas/store/schema.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from atlas.interchange.graphml import Edge\n",
            "atlas.store never",
        ),
        ("atlas/store/store.py", "from atlas.settings import var_dir\n", None),
        ("atlas/ask/lookups.py", "import click\n", "only atlas.cli"),
        ("atlas/cli/query.py", "import click\n", None),
    ],
)
def test_the_checker_catches_a_broken_rule(
    tmp_path: Path, path: str, source: str, rule: str | None
) -> None:
    """The rules, on a made-up tree: each bad import is found, each allowed one is not."""
    file = tmp_path / path
    file.parent.mkdir(parents=True)
    for parent in file.relative_to(tmp_path).parents:
        if parent != Path("."):
            (tmp_path / parent / "__init__.py").touch()
    file.write_text(source)
    messages = list(violations(tmp_path).values())
    if rule is None:
        assert messages == []
    else:
        assert len(messages) == 1 and rule in messages[0], messages
