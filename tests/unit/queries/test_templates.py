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


RANGED = """// name: ranged
// purpose: Ranges in headers.
// param: limit int[1..] = 20 — at most this many
// param: hops int[1..6] = 3 — hops
// param: share float[0..1] = 0.5 — a share
// param: prompt int[0..]? = null — one prompt
// param: side string[q|k]? = null — a side
// param: layers list<int>[0..]? = null — layers
// returns: a int
// example: {}
MATCH (n) RETURN 1 AS a
"""


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("limit", "0", "at least 1"),
        ("limit", "-1", "at least 1"),
        ("limit", "9" * 30, "beyond a 64-bit integer"),
        ("hops", "-3", "must lie in 1..6"),
        ("hops", 7, "must lie in 1..6"),
        ("share", "1.5", "must lie in 0..1"),
        ("share", "nan", "not a number"),
        ("prompt", "-5", "at least 0"),
        ("side", "x", "one of q, k"),
        ("layers", "[0,-1]", "at least 0"),
        ("layers", "[1,2", "not a JSON list"),
    ],
)
def test_ranges_are_checked_where_parameters_are_parsed(name: str, value: object, why: str) -> None:
    template = parse_template("ranged", RANGED)
    with pytest.raises(TemplateError, match=f"Parameter '{name}' got .*{why}"):
        template.bind({name: value})


def test_values_in_range_pass_and_signatures_show_the_range() -> None:
    template = parse_template("ranged", RANGED)
    bound = template.bind({"limit": "1", "hops": 6, "share": "0", "prompt": "0", "side": "k"})
    assert (bound["limit"], bound["hops"], bound["share"], bound["side"]) == (1, 6, 0.0, "k")
    assert template.parameter("hops").signature() == "hops: int[1..6] = 3"
    assert template.parameter("side").signature() == "side: string[q|k]? = null"


def test_a_default_outside_its_range_is_a_header_error() -> None:
    with pytest.raises(TemplateError):
        parse_template("ranged", RANGED.replace("int[1..] = 20", "int[1..] = 0"))


def test_every_shipped_limit_and_hop_count_has_a_range() -> None:
    for template in all_templates():
        for parameter in template.parameters:
            if parameter.name in {"limit", "max_hops", "min_prompts", "layer", "head", "prompt"}:
                assert parameter.low is not None, (template.name, parameter.name)


def test_paths_and_alternative_routes_find_routes_alike() -> None:
    """The two templates match routes with the same Cypher (one copy could drift), one branch
    per hop count up to the highest `max_hops` their headers admit."""

    def routes_part(name: str) -> str:
        cypher = load_template(name).cypher
        return cypher[cypher.index("CALL (a, b) {") : cypher.index("\n}\n")]

    routes = routes_part("paths")
    assert routes == routes_part("alternative_routes")
    for name in ("paths", "alternative_routes"):
        (max_hops,) = [p for p in load_template(name).parameters if p.name == "max_hops"]
        assert routes.count("UNION ALL") + 1 == max_hops.high
        assert f"$max_hops >= {max_hops.high}" in routes
