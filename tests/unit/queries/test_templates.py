"""Template headers: parsing, parameter binding, and the generated catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from queries.templates import (
    TemplateError,
    all_templates,
    load_template,
    parse_template,
    render_catalogue,
    template_names,
)

HEADER = """// name: demo
// purpose: A demo template.
// param: run_id string — the run
// param: k int = 3 — how many
// param: ratio float = 0.5 — a share
// param: prompt int? = null — one prompt or all
// param: roles list<string> = ["END"] — roles
// param: strict bool = false — a flag
// returns: a string, b int?
// example: {"run_id": "r1"}
// example-toy: {"run_id": "toy", "k": 1}
//
// Notes, line one.
// Line two.
MATCH (n) RETURN n.a AS a, n.b AS b
"""


def test_header_fields_and_body_are_read() -> None:
    template = parse_template("demo", HEADER)
    assert template.purpose == "A demo template."
    assert template.mode == "read"
    assert [p.name for p in template.parameters] == [
        "run_id", "k", "ratio", "prompt", "roles", "strict",
    ]  # fmt: skip
    assert template.parameter("run_id").required
    assert template.parameter("prompt").nullable and template.parameter("prompt").default is None
    assert [(c.name, c.type) for c in template.returns] == [("a", "string"), ("b", "int?")]
    assert template.example == {"run_id": "r1"}
    assert template.example_toy == {"run_id": "toy", "k": 1}
    assert template.notes == "Notes, line one.\nLine two."
    assert template.cypher == "MATCH (n) RETURN n.a AS a, n.b AS b\n"


def test_bind_coerces_cli_strings_and_fills_defaults() -> None:
    template = parse_template("demo", HEADER)
    bound = template.bind({"run_id": "x", "k": "5", "roles": "END,IO", "strict": "true"})
    assert bound == {
        "run_id": "x", "k": 5, "ratio": 0.5, "prompt": None, "roles": ["END", "IO"],
        "strict": True,
    }  # fmt: skip
    assert template.bind({"run_id": "x", "ratio": 1, "prompt": "null"})["ratio"] == 1.0
    assert template.bind({"run_id": "x", "roles": '["S2"]'})["roles"] == ["S2"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "needs parameter 'run_id'"),
        ({"run_id": "x", "kk": "1"}, "has no parameter 'kk'"),
        ({"run_id": "x", "k": "three"}, "Parameter 'k' got 'three': expected int"),
        ({"run_id": "x", "k": True}, "expected int"),
        ({"run_id": None}, "may not be null"),
        ({"run_id": "x", "strict": "yes"}, "expected bool"),
    ],
)
def test_bind_rejects_bad_parameters_in_one_line(given: dict, message: str) -> None:
    with pytest.raises(TemplateError, match=message) as raised:
        parse_template("demo", HEADER).bind(given)
    assert "\n" not in str(raised.value)


def test_malformed_headers_are_refused() -> None:
    with pytest.raises(ValueError, match="header names it"):
        parse_template("other", HEADER)
    with pytest.raises(ValueError, match="cannot read parameter"):
        parse_template("demo", HEADER.replace("k int = 3", "k integer = 3"))
    with pytest.raises(ValueError, match="lacks 'returns:'"):
        parse_template("demo", HEADER.replace("// returns: a string, b int?\n", ""))


def test_unknown_template_names_a_close_match() -> None:
    with pytest.raises(TemplateError, match="Did you mean 'circuit'"):
        load_template("circuits")


def test_every_shipped_template_parses_and_its_example_binds() -> None:
    assert template_names()
    for template in all_templates():
        template.bind(template.example)
        if template.example_toy is not None:
            template.bind(template.example_toy)
        for parameter in template.parameters:
            assert f"${parameter.name}" in template.cypher, (template.name, parameter.name)


def test_catalogue_file_is_generated_from_the_headers() -> None:
    catalogue = Path(__file__).resolve().parents[3] / "queries" / "catalogue.md"
    assert catalogue.read_text() == render_catalogue(), (
        "queries/catalogue.md is out of date: regenerate it with "
        "`circuit-atlas templates --markdown > queries/catalogue.md`"
    )
