"""The Browser style, guide, bundle and deep links (atlas/browser/, `browse`), no server."""

from __future__ import annotations

import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from click.testing import CliRunner

from atlas.browser.links import (
    GUIDE_QUESTIONS,
    browser_settings,
    browser_url,
    circuit_graph_cypher,
    cypher_literal,
    param_commands,
    render_guide,
    style_text,
    write_bundle,
)
from atlas.cli import main
from atlas.errors import AtlasError
from atlas.store.schema import head_labels
from ingest.records.build import GPT2_IOI_CLASSES
from queries.templates import TemplateError, load_template, template_names


def parse_grass(text: str) -> dict[str, dict[str, str]]:
    """GraSS read the way Neo4j Browser 5 reads it: quote characters toggle a string (braces in
    it are text) and are dropped, whitespace outside rules is dropped, declarations are split
    at ``;`` and kept only when they hold exactly one ``:``."""
    bodies: dict[str, str] = {}
    selector = body = ""
    in_string = in_rule = False
    for char in text:
        if char in "'\"":
            in_string = not in_string
        elif char == "{" and not in_string and not in_rule:
            in_rule = True
        elif char == "}" and not in_string and in_rule:
            bodies[selector], selector, body, in_rule = body, "", "", False
        elif in_rule:
            body += char
        elif not char.isspace():
            selector += char
    rules = {}
    for name, rule in bodies.items():
        pairs = [d.split(":") for d in rule.split(";")]
        rules[name] = {p[0].strip(): p[1].strip() for p in pairs if len(p) == 2}
    return rules


def editor_text_of(url: str) -> str:
    """What Neo4j Browser 5 puts in its editor for ``?cmd=edit&arg=...``: it replaces ``+``,
    decodes the whole URL, then takes every ``arg=`` up to ``&`` or ``#``, joined by newlines."""
    decoded = unquote(url.replace("+", " "))
    return "\n".join(re.findall(r"[?&]arg=([^&#]*)", decoded))


def test_style_has_a_rule_for_every_label_the_atlas_writes() -> None:
    text = style_text()
    assert "/*" not in text, "the Browser's GraSS reader has no comments"
    rules = parse_grass(text)
    declarations = re.findall(r"[\w-]+\s*:[^;]*;", text)
    assert sum(map(len, rules.values())) == len(declarations), "a declaration has two ':'"
    labels = ["Component", "Head", "Firing", "SingularVector", "Prompt", "Run", "Model"]
    labels += [f"Layer{layer}" for layer in range(12)]
    labels += [head_labels(0, name)[1] for name in GPT2_IOI_CLASSES]
    for label in labels:
        assert "color" in rules[f"node.{label}"], label
    assert rules["node.Head"]["caption"] == "{id}"
    assert rules["node.Firing"]["caption"] == "{dest_role}→{src_role}"
    assert rules["node.SingularVector"]["caption"] == "{caption}"  # v3 σ12.35, set by the store
    widths = [float(rules[f"relationship.SUPPORT_{band}"]["shaft-width"][:-2]) for band in
              ("LOW", "MID", "HIGH")]  # fmt: skip
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert rules["relationship.COMMUNICATES"]["caption"] == "{side}@{role} n={n_prompts}"


def test_head_labels_and_cypher_literals() -> None:
    assert head_labels(9, "name mover") == ["Layer9", "NameMover"]
    assert head_labels(7, "S-inhibition") == ["Layer7", "SInhibition"]
    assert head_labels(2, None) == ["Layer2"]
    assert cypher_literal("it's") == "'it\\'s'"
    assert cypher_literal([1, None, True, 2.5]) == "[1, null, true, 2.5]"
    assert (
        param_commands({"layer": 3, "role": "END"}) == ":param layer => 3;\n:param role => 'END';"
    )


class _Guide(HTMLParser):
    """Slides and their runnable blocks, parsed back out of the guide's HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.slides: list[list[str]] = []
        self._in_block = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "slide":
            self.slides.append([])
        self._in_block = tag == "pre" and "runnable" in (dict(attrs).get("class") or "")
        if self._in_block:
            self.slides[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_block = self._in_block and tag != "pre"

    def handle_data(self, data: str) -> None:
        if self._in_block:
            self.slides[-1][-1] += data


def test_guide_has_a_slide_per_present_template_with_its_exact_cypher() -> None:
    guide = _Guide()
    guide.feed(render_guide())
    present = [name for name in GUIDE_QUESTIONS if name in template_names()]
    assert {"circuit", "head_roles"} <= set(present)
    assert len(guide.slides) == 1 + len(present)
    assert guide.slides[0][1].startswith(":param run_id => head(COLLECT {")
    for slide, name in zip(guide.slides[1:], present, strict=True):
        template = load_template(name)
        assert template.cypher.strip() in slide  # the template's body, unchanged
        for block in slide:
            assert "$" not in block or "$run_id" in block or block.startswith(("CALL", "MATCH"))
        toy = {k: v for k, v in template.bind(template.example_toy or {}).items() if k != "run_id"}
        if toy:
            assert param_commands(toy) in slide
    assert circuit_graph_cypher(load_template("circuit")) in guide.slides[1]


def test_browser_url_round_trips_through_the_browsers_url_reading() -> None:
    link = browser_url(
        "circuit", {"run_id": "toy-1", "layer": "3", "head": 1}, connect_url="bolt://h:1"
    )
    text = editor_text_of(link.url)
    assert text == link.editor_text
    first, query = text.split("\n", 1)
    assert first == (
        ':params {"run_id": "toy-1", "layer": 3, "head": 1, "dest_role": "END", '
        '"src_role": "IO", "prompt": null};'
    )
    assert query == load_template("circuit").cypher.strip()
    assert "dbms=bolt%3A%2F%2Fh%3A1" in link.url and " " not in link.url and "+" not in link.url
    raw = browser_url("MATCH (n) WHERE n.x > 1 RETURN n", {"x": [1, 2]})
    assert editor_text_of(raw.url) == ':params {"x": [1, 2]};\nMATCH (n) WHERE n.x > 1 RETURN n'
    with pytest.raises(TemplateError, match="needs parameter 'writer'"):
        browser_url("edge_firings", {"run_id": "r"})
    with pytest.raises(AtlasError, match="cannot carry '&'"):
        browser_url("RETURN 'a&b'")


def test_browser_settings_apply_style_and_guide_from_the_server_itself() -> None:
    settings = browser_settings(7474)
    commands = [c.strip() for c in settings["browser.post_connect_cmd"].split(";")]
    assert commands == [
        "style http://127.0.0.1:7474/browser/atlas/atlas.grass",
        "config autoComplete: false",
        "guide http://127.0.0.1:7474/browser/atlas/guide.html",
    ]
    assert "127.0.0.1" in settings["browser.remote_content_hostname_whitelist"].split(",")


def test_bundle_is_the_browser_jar_plus_style_and_guide(tmp_path: Path) -> None:
    jar = tmp_path / "lib" / "neo4j-browser-9.9.9.jar"
    jar.parent.mkdir()
    with zipfile.ZipFile(jar, "w") as out:
        out.writestr("META-INF/MANIFEST.MF", "x")
        out.writestr("browser/", b"")
        out.writestr("browser/index.html", "<html/>")
    bundle = write_bundle(tmp_path)
    assert bundle == tmp_path / "web" / "neo4j-browser.zip"
    with zipfile.ZipFile(bundle) as built:
        names = built.namelist()
        assert names[0] == "browser/" and "META-INF/MANIFEST.MF" not in names
        assert names.index("browser/atlas/") < names.index("browser/atlas/guide.html")
        assert built.read("browser/atlas/atlas.grass").decode() == style_text()
        assert built.read("browser/atlas/guide.html").decode() == render_guide()
    stamp = bundle.stat().st_mtime_ns
    assert write_bundle(tmp_path) == bundle and bundle.stat().st_mtime_ns == stamp  # current
    assert write_bundle(tmp_path / "nothing") is None


def test_browse_prints_a_link_and_checks_template_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:7999")
    runner = CliRunner()
    base = "http://127.0.0.1:7998/browser/"
    result = runner.invoke(
        main,
        ["browse", "--run", "r1", "--query", "head_roles", "--param", "layer=3",
         "--param", "head=1", "--browser-url", base],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith(base + "?dbms=bolt%3A%2F%2F127.0.0.1%3A7999&cmd=edit&arg=")
    assert editor_text_of(url).startswith(':params {"run_id": "r1", "layer": 3, "head": 1')
    only_run = runner.invoke(main, ["browse", "--run", "r1", "--browser-url", base])
    assert editor_text_of(only_run.output.strip()) == ":param run_id => 'r1'"
    bad = runner.invoke(
        main, ["browse", "--run", "r", "--query", "head_roles", "--param", "layer=x"]
    )
    assert bad.exit_code != 0 and "expected int" in bad.output and "Traceback" not in bad.output
