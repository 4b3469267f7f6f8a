from click.testing import CliRunner

from atlas.cli import main


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Circuit Atlas" in result.output
