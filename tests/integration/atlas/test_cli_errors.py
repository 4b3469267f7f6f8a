"""One place for errors, one data directory: the CLI reports the library's errors as one line,
and everything the local server keeps lives under the data directory (option or environment)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from atlas.cli import AtlasGroup, main
from atlas.errors import (
    AtlasError,
    Neo4jUnavailableError,
    ParameterError,
    ServerError,
    UnknownRunError,
)
from atlas.settings import (
    Neo4jSettings,
    data_dir,
    default_credentials_file,
    read_credentials,
    server_dir,
    write_credentials,
)
from ingest.errors import IngestError
from ingest.models.loading import ModelUnavailableError, UnsupportedDeviceError
from ingest.models.toy import ToyTrainingError
from queries.templates import TemplateError, load_template

pytestmark = pytest.mark.unit

# No Neo4j and no data directory from the caller's environment (None unsets a variable).
CLEAN_ENV: dict[str, str | None] = {
    "NEO4J_URI": None,
    "NEO4J_USER": None,
    "NEO4J_PASSWORD": None,
    "NEO4J_DATABASE": None,
    "CIRCUIT_ATLAS_HOME": None,
    "XDG_DATA_HOME": None,
}


def failing_group(error: BaseException) -> click.Group:
    """A group of the CLI's class with one command that raises ``error``."""

    @click.command("fail")
    def fail() -> None:
        raise error

    return AtlasGroup(name="circuit-atlas", commands=[fail])


def test_the_library_does_not_depend_on_click() -> None:
    assert not issubclass(AtlasError, click.ClickException)
    assert issubclass(TemplateError, ParameterError)
    for kind in (Neo4jUnavailableError, UnknownRunError, ParameterError, ServerError):
        assert issubclass(kind, AtlasError)
    for kind in (ModelUnavailableError, UnsupportedDeviceError, ToyTrainingError):
        assert issubclass(kind, IngestError)


def test_main_is_the_group_that_reports_errors() -> None:
    assert isinstance(main, AtlasGroup)


@pytest.mark.parametrize(
    "error",
    [
        AtlasError("Something the user can fix.\n  Here is how."),
        UnknownRunError("Run 'x' is not in the atlas."),
        TemplateError("Parameter 'layer' got 'x': not an int."),
        ModelUnavailableError("Cannot load 'gpt2': weights are not cached."),
        UnsupportedDeviceError("Device 'cuda' requested but CUDA is not available here."),
        ToyTrainingError("Training did not converge."),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_library_error_is_one_line_and_exit_1(error: Exception) -> None:
    result = CliRunner().invoke(failing_group(error), ["fail"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # click's exit, not the error itself
    assert result.output == "Error: " + " ".join(str(error).split()) + "\n"
    assert "Traceback" not in result.output


def test_any_other_exception_is_a_bug_and_keeps_its_traceback() -> None:
    result = CliRunner().invoke(failing_group(KeyError("bug")), ["fail"])
    assert isinstance(result.exception, KeyError)


def test_a_real_command_without_neo4j_says_so_in_one_line(tmp_path: Path) -> None:
    result = CliRunner(env=CLEAN_ENV).invoke(main, ["--data-dir", str(tmp_path), "runs", "list"])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: No Neo4j is configured")
    assert str(tmp_path / "neo4j" / "credentials.json") in line


def test_a_bad_template_parameter_is_one_line(tmp_path: Path) -> None:
    """`browse` checks parameters against the template and needs no running Neo4j."""
    args = ["--data-dir", str(tmp_path), "browse", "--run", "r", "--query", "head_roles"]
    result = CliRunner(env=CLEAN_ENV).invoke(main, [*args, "--param", "layer=x"])
    assert result.exit_code == 1
    (line,) = result.output.splitlines()
    assert line.startswith("Error: Parameter 'layer' got 'x'"), line


# ----- the data directory -------------------------------------------------------------------


def status(args: list[str], env: dict[str, str | None]) -> dict[str, str]:
    result = CliRunner(env={**CLEAN_ENV, **env}).invoke(main, [*args, "server", "status"])
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines())


def test_data_dir_option_places_server_and_password(tmp_path: Path) -> None:
    shown = status(["--data-dir", str(tmp_path / "home")], {})
    assert Path(shown["jars"].strip()) == tmp_path / "home" / "neo4j"
    assert Path(shown["data"].strip()) == tmp_path / "home" / "neo4j" / "data"
    assert Path(shown["credentials"].strip()) == tmp_path / "home" / "neo4j" / "credentials.json"


def test_data_dir_environment_variable(tmp_path: Path) -> None:
    shown = status([], {"CIRCUIT_ATLAS_HOME": str(tmp_path)})
    assert Path(shown["jars"].strip()) == tmp_path / "neo4j"


def test_data_dir_option_wins_over_the_environment(tmp_path: Path) -> None:
    shown = status(["--data-dir", str(tmp_path / "a")], {"CIRCUIT_ATLAS_HOME": str(tmp_path)})
    assert Path(shown["jars"].strip()) == tmp_path / "a" / "neo4j"


def test_data_dir_follows_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CIRCUIT_ATLAS_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert data_dir() == tmp_path / "circuit-atlas"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert data_dir() == tmp_path / "user" / ".local" / "share" / "circuit-atlas"
    assert server_dir() == data_dir() / "neo4j"
    assert default_credentials_file().parent == server_dir()


def test_password_file_is_mode_0600(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CIRCUIT_ATLAS_HOME", str(tmp_path))
    settings = Neo4jSettings("bolt://127.0.0.1:1", "neo4j", "secret", source="test")
    path = default_credentials_file()
    previous = os.umask(0)  # the most permissive umask: the file is still created 0600
    try:
        write_credentials(path, settings)
    finally:
        os.umask(previous)
    assert path == tmp_path / "neo4j" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)  # rewritten files are made private again
    write_credentials(path, settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = read_credentials(path)
    assert stored is not None and stored.password == "secret"


def test_template_errors_still_name_the_parameter() -> None:
    with pytest.raises(ParameterError, match="needs parameter 'layer'"):
        load_template("head_inputs").bind({"run_id": "r", "head": 1})
