"""A built wheel works outside the checkout: install it into a new virtualenv, then run
`server install`, `server start`, a toy-ioi `ingest`, `runs list` and `server stop` there.

What it proves: the package data a run needs (Maven pom, Browser assets, query templates, the
toy-ioi weights) is in the wheel, and nothing reads or writes beside the code (the server, its
data and its password go to ``--data-dir``). The new virtualenv sees only the wheel's packages:
it runs from a temporary folder with no ``PYTHONPATH``, so neither the checkout nor the
editable install is importable (checked before anything else runs).

Its dependencies are not installed again (torch alone is gigabytes): a ``.pth`` file puts this
interpreter's site-packages on the new virtualenv's path. A directory named in a ``.pth`` file
is searched, but its own ``.pth`` files are not run, so the editable install's import hook in
there stays off. The wheel is built with ``pip wheel --no-build-isolation`` (this virtualenv's
setuptools, no network) from a copy of the sources, so no ``build/`` is left in the checkout.

Maven reuses the jars cached in ``~/.m2`` (the first run downloads them, as `server install`
does). About two minutes on a busy 2-core machine; any failing step fails the test with its
output.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.neo4j import free_port

pytestmark = pytest.mark.acceptance

CHECKOUT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "atlas", "ingest", "queries")
STEP_TIMEOUT = 600  # seconds; Maven's first download or a slow Neo4j start-up


def run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    """Run one step; a non-zero exit fails the test with the step's whole output."""
    shown = " ".join(str(part) for part in command)
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        pytest.fail(f"`{shown}` exited with {result.returncode}:\n{output}", pytrace=False)
    return output


def build_wheel(work: Path) -> Path:
    source = work / "source"
    for name in SOURCES:
        origin = CHECKOUT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = work / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*command, "--quiet", "--wheel-dir", dist, source], cwd=work, env=dict(os.environ))
    (wheel,) = dist.glob("circuit_atlas-*.whl")
    return wheel


def clean_venv(work: Path, wheel: Path) -> Path:
    """A new virtualenv holding the wheel, with this interpreter's packages as dependencies."""
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work, env=dict(os.environ))
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
    run([*install, "--no-deps", "--no-index", wheel], cwd=work, env=dict(os.environ))
    purelib = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], work, {})
        .strip()
        .splitlines()[-1]
    )
    dependencies = [path for path in site.getsitepackages() if Path(path).is_dir()]
    (purelib / "circuit_atlas_test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return venv


@pytest.fixture
def stopped_afterwards() -> Iterator[list[list[str | Path]]]:
    """Commands that stop what a test started, run at teardown even when a step failed."""
    stops: list[list[str | Path]] = []
    yield stops
    for command in stops:
        subprocess.run([str(part) for part in command], capture_output=True, timeout=120)


def test_wheel_installs_and_runs_outside_the_checkout(
    tmp_path: Path, stopped_afterwards: list[list[str | Path]]
) -> None:
    work = tmp_path / "outside"
    work.mkdir()
    assert not work.resolve().is_relative_to(CHECKOUT)
    wheel = build_wheel(tmp_path / "wheel")
    venv = clean_venv(tmp_path / "wheel", wheel)
    data = tmp_path / "data"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NEO4J_", "CIRCUIT_ATLAS_", "PYTHON", "VIRTUAL_ENV"))
        and key not in {"XDG_DATA_HOME"}
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    where = run(
        [
            venv / "bin" / "python",
            "-c",
            "import sys, atlas, ingest, queries; "
            "print(*[m.__file__ for m in (atlas, ingest, queries)], sep='\\n'); "
            "print(*sys.path, sep='\\n')",
        ],
        work,
        env,
    ).splitlines()
    for module_file in where[:3]:
        assert Path(module_file).is_relative_to(venv), f"{module_file} is not the wheel's"
    assert str(CHECKOUT) not in where[3:], "the checkout is on the new virtualenv's sys.path"

    cli = [venv / "bin" / "circuit-atlas", "--data-dir", data]
    bolt, http = free_port(), free_port()
    installed = run([*cli, "server", "install"], work, env)
    assert str(data / "neo4j") in installed
    stopped_afterwards.append([*cli, "server", "stop"])
    started = run([*cli, "server", "start", "--bolt-port", bolt, "--http-port", http], work, env)
    assert f"bolt://127.0.0.1:{bolt}" in started
    credentials = data / "neo4j" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    ingest = ["ingest", "--model", "toy-ioi", "--n-prompts", "8", "--batch-size", "8", "--quiet"]
    ingested = run([*cli, *ingest, "--run-id", "wheel-check"], work, env)
    assert "Run wheel-check complete: 8 prompts" in ingested, ingested
    listed = run([*cli, "runs", "list"], work, env)
    assert "wheel-check" in listed and "toy-ioi" in listed, listed
    stopped = run([*cli, "server", "stop"], work, env)
    assert "stopped" in stopped, stopped
    assert (data / "neo4j" / "data" / "databases" / "neo4j").is_dir()
