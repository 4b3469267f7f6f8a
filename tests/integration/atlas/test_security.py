"""The security note (docs/security.md), tested where it can be: the local server listens on
loopback only, parameters are values in every template (never Cypher), and no command prints
the password. (The password file's mode 0600: tests/integration/atlas/test_cli_errors.py.)"""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.errors import ParameterError
from atlas.settings import Neo4jSettings
from atlas.store.store import AtlasStore
from queries.templates import all_templates
from tests.fixtures.neo4j import TEST_BOLT_PORT, TEST_HTTP_PORT, local_test_server
from tests.integration.atlas.test_bad_input import graph_size

INJECTIONS = [
    "x' OR 1=1 //",
    '"}) MATCH (n) DETACH DELETE n //',
    "END` DETACH DELETE n //",
    "$run_id; DROP CONSTRAINT run_id",
    "\\u0027 RETURN 1 UNION MATCH (n) DELETE n //",
]


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.skipif(bool(os.environ.get("NEO4J_URI")), reason="a server this suite did not start")
def test_the_local_server_listens_on_loopback_only(neo4j_settings: Neo4jSettings) -> None:
    conf = (local_test_server().instance / "conf" / "neo4j.conf").read_text()
    for key in ("default_listen_address", "bolt.listen_address", "http.listen_address"):
        (line,) = [line for line in conf.splitlines() if line.startswith(f"server.{key}=")]
        assert line.split("=", 1)[1].split(":")[0] == "127.0.0.1", line
    with socket.create_connection(("127.0.0.1", TEST_BOLT_PORT), timeout=5):
        pass  # it answers on loopback ...
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to try")
    for port in (TEST_BOLT_PORT, TEST_HTTP_PORT):
        with pytest.raises(OSError):  # ... and nowhere else
            socket.create_connection((address, port), timeout=5).close()


def injected(template_parameters: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The template's toy example with each string parameter in turn replaced by ``text``."""
    variants = []
    for name, value in template_parameters.items():
        if isinstance(value, str) and name != "run_id":
            variants.append({**template_parameters, name: text})
        if isinstance(value, list):
            variants.append({**template_parameters, name: [text]})
    if "run_id" in template_parameters:
        variants.append({**template_parameters, "run_id": text})
    return variants


@pytest.mark.parametrize("template", [t for t in all_templates() if t.mode == "read"],
                         ids=lambda t: t.name)  # fmt: skip
def test_every_template_takes_injection_strings_as_values(
    template: Any, atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    example = dict(template.example_toy or template.example)
    if "run_id" in {p.name for p in template.parameters}:
        example["run_id"] = toy_ioi_run
    for p in template.parameters:  # optional strings too, so every string is tried
        if p.type == "string" and p.name not in example and not p.choices:
            example[p.name] = p.default if isinstance(p.default, str) else "END"
    before = graph_size(atlas_store)
    for text in INJECTIONS:
        for parameters in injected(example, text):
            try:
                rows = atlas_store.read_template(template.name, **parameters)
            except ParameterError as error:  # a value its header refuses (side: q or k)
                assert "got" in str(error)
                continue
            if parameters.get("run_id") == text:
                assert rows == [] or all(not any(r.values()) for r in rows), rows[:2]
    assert graph_size(atlas_store) == before


def test_no_command_prints_the_password(neo4j_env: dict[str, str], toy_ioi_run: str) -> None:
    password = neo4j_env["NEO4J_PASSWORD"]
    runner = CliRunner(env=neo4j_env)
    commands = [
        ["server", "status"],
        ["server", "status", "--format", "json"],
        ["runs", "list", "--format", "json"],
        ["runs", "show", toy_ioi_run, "--format", "json"],
        [
            "browse",
            "--run",
            toy_ioi_run,
            "--query",
            "circuit",
            "--param",
            "layer=3",
            "--param",
            "head=1",
        ],
        ["inputs", "3.1", "--run", toy_ioi_run, "--link"],
    ]
    for args in commands:
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        assert password not in result.output, args
    wrong = CliRunner(env={**neo4j_env, "NEO4J_PASSWORD": "not-the-password-123"})
    assert "not-the-password-123" not in wrong.invoke(main, ["runs", "list"]).output
