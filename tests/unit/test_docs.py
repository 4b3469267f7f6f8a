"""The documentation's own rules (docs/development.md): a short README, the generated query
catalogue as a docs page, every page in the site's navigation, no references a reader cannot
follow. ``make docs`` (strict) checks links and anchors; these run without MkDocs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README_LIMIT = 12 * 1024


def test_readme_is_a_front_page() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move details into docs/"


def test_the_query_catalogue_page_is_the_generated_file() -> None:
    """docs/queries.md includes queries/catalogue.md, which tests/…/test_templates.py keeps
    equal to `circuit-atlas templates --markdown`: so the page is current whenever that is."""
    assert (DOCS / "queries.md").read_text().strip() == '--8<-- "queries/catalogue.md"'
    assert (ROOT / "queries" / "catalogue.md").is_file()


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [page for page in pages if f": {page}\n" not in nav]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


def test_no_reference_a_reader_cannot_follow() -> None:
    """Design notes and the ../shared folder are not part of the project: state the fact."""
    pattern = re.compile(r"shared/|DESIGN")
    texts = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in texts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found


def test_readme_links_point_at_files() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing
