"""The top-level `circuit-atlas` group: every command reachable and listed once, by section."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from atlas.cli import SECTIONS, main

pytestmark = pytest.mark.unit


def test_help_lists_every_command_once_under_its_section() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    listed = [command.name for _, commands in SECTIONS for command in commands]
    assert len(listed) == len(set(listed)), "a command is in two sections"
    assert set(listed) == set(main.commands)
    lines = result.output.splitlines()
    for title, commands in SECTIONS:
        start = lines.index(f"{title}:")
        block = []
        for line in lines[start + 1 :]:
            if not line.startswith("  "):
                break
            block.append(line.split()[0])
        assert block == [command.name for command in commands], title


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_that_teaches(name: str) -> None:
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output and len(result.output.splitlines()) > 4
