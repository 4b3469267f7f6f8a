"""The atlas in a real Neo4j Browser: headless Chromium against the local test server.

Logs in through a deep link, checks that the style and the guide arrive on connect
(``browser.post_connect_cmd``), runs the guide's circuit frame on the shared toy-ioi run and
reads the drawn graph from the DOM: one node per head of the circuit (from the ``circuit``
template's rows), captioned ``l.h`` and filled with its layer's colour from the style, and
``COMMUNICATES`` edges captioned ``side@role``. Saves a screenshot to
``var/browser-test/circuit-graph.png``. Then runs every question slide of the guide with its
toy-ioi parameters.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps``); skipped without
them, except under CI (``CI=true``), where ``.ci/run`` installs them and their absence fails.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas.browser.links import (
    GUIDE_QUESTIONS,
    browser_url,
    cypher_literal,
    param_commands,
    style_text,
)
from atlas.settings import Neo4jSettings
from atlas.store.store import AtlasStore
from queries.templates import load_template, template_names
from tests.fixtures.neo4j import local_test_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "browser-test"  # git-ignored
WAIT = 90.0  # seconds any single Browser step may take on a busy 2-core machine
ROOT = {"layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "prompt": None}


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if shutil.which(path) is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if missing:
        message = (
            f"No headless browser: {', '.join(missing)} missing. Install Debian's chromium and "
            "chromium-driver with `make browser-deps` (apt-get, as root)."
        )
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def driver() -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.25).until(condition)
    except TimeoutException:
        shot = _screenshot(driver, "failure.png")
        raise AssertionError(f"The Browser never showed {what} (screenshot: {shot})") from None


def _screenshot(driver: Any, name: str) -> str:
    folder = SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))
    return str(folder / name)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _run_editor(driver: Any, done: Any, what: str) -> Any:
    """Run the editor's content; wait for a new frame on top for which ``done(frame)`` holds.

    (New frames go on top; the Browser keeps at most 15, so frames are not counted.)
    """
    previous = _css(driver, "[data-testid=frame]")[0].id
    _css(driver, "[data-testid=editor-Run]")[0].click()

    def finished(d: Any) -> Any:
        newest = _css(d, "[data-testid=frame]")[0]
        return newest.id != previous and done(newest) and newest

    return _wait(driver, finished, what)


def _run_params(driver: Any, statements: int) -> None:
    """Run the editor's `:param` statements; wait until all are set (each runs a query).

    One statement gets a frame saying so; several get one frame listing each with a status.
    """

    def done(frame: Any) -> bool:
        if statements == 1:
            return "Successfully set your parameters" in frame.text
        icons = frame.find_elements("css selector", '[title="Status: success"]')
        return len(icons) == statements

    _run_editor(driver, done, f"{statements} parameter(s) set")


def _show_guide_block(driver: Any, text: str) -> None:
    """Click the guide's runnable block whose text is ``text`` (or starts with it)."""

    def block(d: Any) -> Any:
        found = [p for p in _css(d, "[data-testid=guidesDrawer] pre.runnable") if p.text]
        exact = [p for p in found if p.text.strip() == text.strip()]
        return (exact or [p for p in found if p.text.startswith(text)] or [False])[0]

    _wait(driver, block, f"a guide block {text[:40]!r}").click()


def _log_in(driver: Any, url: str, settings: Neo4jSettings) -> None:
    """Open ``url``, log in, and wait for the atlas guide that the server opens on connect.

    The Browser runs ``browser.post_connect_cmd`` when its settings arrive after the
    connection; once (of many runs) it missed them, so a second page load is allowed.
    """
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def guide_shown(d: Any) -> bool:
        return any("Circuit Atlas" in g.text for g in _css(d, "[data-testid=guidesDrawer]"))

    for attempt in (1, 2):
        driver.get(url)
        form = _wait(
            driver,
            lambda d: _css(d, "[data-testid=password]") or guide_shown(d),
            "the login form",
        )
        if form is not True:  # else the Browser reconnected with credentials it kept
            _css(driver, "[data-testid=username]")[0].send_keys(settings.user)
            _css(driver, "[data-testid=password]")[0].send_keys(settings.password)
            _css(driver, "[data-testid=connect]")[0].click()
        if attempt == 2:
            _wait(driver, guide_shown, "the atlas guide in the sidebar")
            return
        try:
            WebDriverWait(driver, 30, poll_frequency=0.25).until(guide_shown)
            return
        except TimeoutException:
            _screenshot(driver, "no-guide-first-load.png")


def _layer_colour(layer: int) -> str:
    match = re.search(rf"node\.Layer{layer} {{ color: (#[0-9A-Fa-f]{{6}});", style_text())
    assert match, f"the style has no colour for Layer{layer}"
    return match.group(1).upper()


def test_guide_circuit_frame_draws_the_styled_circuit(
    driver: Any, neo4j_settings: Neo4jSettings, atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    if os.environ.get("NEO4J_URI"):
        pytest.skip("The style and guide are served by the local test server, not NEO4J_URI's.")
    server = local_test_server()
    rows = atlas_store.read_template("circuit", run_id=toy_ioi_run, **ROOT)
    assert rows, "the toy-ioi run has no circuit from 3.1 END→IO"
    heads = {f"{r['layer']}.{r['head']}" for r in rows} | {r["writer"] for r in rows}
    edges = {(r["writer"], r["layer"], r["head"], r["side"], r["role"]) for r in rows}

    # Log in through a deep link that pre-fills the run; the Browser connects to the test server.
    link = browser_url(
        f":param run_id => {cypher_literal(toy_ioi_run)}",
        browser=server.browser_url,
        connect_url=neo4j_settings.uri,
    )
    _log_in(driver, link.url, neo4j_settings)
    _wait(driver, lambda d: _css(d, "[data-testid=exportGraSSButton]"), "the :style frame")
    _run_params(driver, 1)  # the deep link's `:param run_id => ...`

    # The guide's circuit slide: the toy-ioi parameter block, then the graph block.
    circuit_slide = list(GUIDE_QUESTIONS).index("circuit") + 2  # after the intro slide
    _css(driver, f"[data-testid=pagination-{circuit_slide}]")[0].click()
    toy = load_template("circuit").bind(load_template("circuit").example_toy or {})
    toy_params = {k: v for k, v in toy.items() if k != "run_id"}
    _show_guide_block(driver, param_commands(toy_params))
    _run_params(driver, len(toy_params))
    _show_guide_block(driver, "CALL () {")
    frame = _run_editor(
        driver,
        lambda f: len(f.find_elements("css selector", "g.node")) == len(heads),
        f"the circuit graph with {len(heads)} heads",
    )
    nodes = driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('g.node')).map(n => ["
        "n.querySelector('text.caption').textContent.trim(),"
        "n.querySelector('circle.b-outline').getAttribute('fill')])",
        frame,
    )
    captions = driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('g.relationship text'))"
        ".map(t => t.textContent.trim())",
        frame,
    )
    shot = _screenshot(driver, "circuit-graph.png")

    assert {caption for caption, _ in nodes} == heads, shot
    for caption, fill in nodes:  # every head filled with its layer's colour from the style
        if re.fullmatch(r"\d+\.\d+", caption):
            assert fill.upper() == _layer_colour(int(caption.split(".")[0])), (caption, fill)
    assert len(captions) == len(edges), shot
    assert all(re.match(r"^[qk]@", caption) for caption in captions), captions


def test_every_guide_slide_runs_on_the_toy_run(
    driver: Any, neo4j_settings: Neo4jSettings, toy_ioi_run: str
) -> None:
    """Each question slide: its toy-ioi `:param` block, then its template, without an error."""
    if os.environ.get("NEO4J_URI"):
        pytest.skip("The style and guide are served by the local test server, not NEO4J_URI's.")
    link = browser_url(
        f":param run_id => {cypher_literal(toy_ioi_run)}",
        browser=local_test_server().browser_url,
        connect_url=neo4j_settings.uri,
    )
    _log_in(driver, link.url, neo4j_settings)
    _run_params(driver, 1)
    present = [name for name in GUIDE_QUESTIONS if name in template_names()]
    for slide, name in enumerate(present, start=2):
        _css(driver, f"[data-testid=pagination-{slide}]")[0].click()
        template = load_template(name)
        toy = template.bind(template.example_toy or {})
        toy_params = {k: v for k, v in toy.items() if k != "run_id"}
        _show_guide_block(driver, param_commands(toy_params))
        _run_params(driver, len(toy_params))
        _show_guide_block(driver, template.cypher.strip())
        frame = _run_editor(
            driver,
            lambda f: "completed after" in f.text or "ERROR" in f.text,
            f"the result of {name}",
        )
        assert "ERROR" not in frame.text, (name, frame.text[:500])
