"""Load a transformer through TransformerLens's ``TransformerBridge`` in the form SAD needs.

Every model goes through the same path: a Hugging Face causal LM and its tokenizer are loaded
from a local directory (the user's Hugging Face cache, a ``--model-dir``, the shipped toy
fixture) or built in-process (``random-gpt2``), then booted into a bridge with

* ``enable_compatibility_mode()``: LayerNorm folded into the next linear maps, writing weights
  and unembedding centered, value biases folded. A head then reads ``x_t = resid_t / s_t``
  (``ln1.hook_normalized``), so its query/key maps are affine in ``x_t``.
* ``set_use_attn_result(True)``: per-head outputs ``hook_result`` for tracing.

Loading never downloads silently into a broken state: when weights are not found offline the
caller gets :class:`ModelUnavailableError`, whose message says how to provide them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from ingest.errors import IngestError

DEFAULT_MODEL = "openai-community/gpt2"
RANDOM_GPT2 = "random-gpt2"
TOY_IOI = "toy-ioi"
TOY_IOI_DIR = Path(__file__).parent / "fixtures" / "toy-ioi"
HUB_ALIASES = {"gpt2": DEFAULT_MODEL, "gpt2-small": DEFAULT_MODEL}
PROCESSING_FLAGS = {
    "fold_ln": True,
    "center_writing_weights": True,
    "center_unembed": True,
    "fold_value_biases": True,
    "use_attn_result": True,
}
_HUB_FILES = ["*.json", "*.safetensors", "merges.txt", "vocab.txt", "*.model", "*.tiktoken"]


class ModelUnavailableError(IngestError, RuntimeError):
    """The model's weights (or tokenizer) cannot be found locally and cannot be fetched."""


class UnsupportedModelError(IngestError, ValueError):
    """The model loads, but the decomposition's assumptions do not hold for it."""


class UnsupportedDeviceError(IngestError, ValueError):
    """The requested torch device is unknown or not available here."""


@dataclass(frozen=True)
class ModelProvenance:
    """Where a loaded model came from and how it was processed; stored with every run."""

    model_id: str
    source: str  # "hub-cache" | "hub" | "directory" | "fixture" | "random"
    revision: str | None
    path: str | None
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    seed: int | None = None
    processing: dict[str, bool] = field(default_factory=lambda: dict(PROCESSING_FLAGS))
    versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A processed bridge plus its provenance."""

    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    provenance: ModelProvenance

    @property
    def tokenizer(self) -> Any:
        return self.bridge.tokenizer

    @property
    def n_layers(self) -> int:
        return self.provenance.n_layers

    @property
    def n_heads(self) -> int:
        return self.provenance.n_heads


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a run's numbers."""
    names = ["circuit-atlas", "transformer-lens", "transformers", "torch"]
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def load_model(
    model: str = DEFAULT_MODEL,
    *,
    model_dir: str | Path | None = None,
    revision: str | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> LoadedModel:
    """Load ``model`` (a hub id, ``random-gpt2`` or ``toy-ioi``) or the weights in ``model_dir``.

    ``model_dir`` wins over ``model`` and must hold a Hugging Face checkpoint (``config.json``,
    weights, tokenizer files). ``seed`` only matters for ``random-gpt2``.
    """
    _check_device(device)
    if model_dir is not None:
        path = Path(model_dir).expanduser().resolve()
        return _boot_from_directory(path, model_id=str(path), source="directory", device=device)
    if model == TOY_IOI:
        return _boot_from_directory(TOY_IOI_DIR, model_id=TOY_IOI, source="fixture", device=device)
    if model == RANDOM_GPT2:
        return random_gpt2(seed=seed, device=device)
    hub_id = HUB_ALIASES.get(model, model)
    path, source = _resolve_hub_snapshot(hub_id, revision)
    return _boot_from_directory(path, model_id=hub_id, source=source, device=device)


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise UnsupportedDeviceError(
            f"Unknown device {device!r}: use 'cpu' or 'cuda' (or 'cuda:N')."
        ) from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedDeviceError(
            f"Device {device!r} requested but CUDA is not available here; use 'cpu'."
        )
    if parsed.type not in ("cpu", "cuda"):
        raise UnsupportedDeviceError(f"Unsupported device {device!r}: use 'cpu' or 'cuda'.")


def _resolve_hub_snapshot(hub_id: str, revision: str | None) -> tuple[Path, str]:
    """Find ``hub_id`` in the local Hugging Face cache, else try the hub, else explain."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    cache_dir = _hub_cache_dir()
    try:
        cached = snapshot_download(
            hub_id,
            revision=revision,
            allow_patterns=_HUB_FILES,
            local_files_only=True,
            cache_dir=cache_dir,
        )
        return Path(cached), "hub-cache"
    except HFValidationError as error:
        raise ModelUnavailableError(
            f"{hub_id!r} is not a model name this tool knows ({TOY_IOI}, {RANDOM_GPT2}) nor a "
            "valid Hugging Face model id (owner/name). For weights on disk use --model-dir DIR."
        ) from error
    except OSError:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ModelUnavailableError(_missing_weights_message(hub_id, "HF_HUB_OFFLINE is set"))
    try:
        fetched = snapshot_download(
            hub_id, revision=revision, allow_patterns=_HUB_FILES, cache_dir=cache_dir
        )
    except Exception as error:  # connection, unknown repo, gated repo: all end the same way
        raise ModelUnavailableError(_missing_weights_message(hub_id, str(error))) from error
    return Path(fetched), "hub"


def _hub_cache_dir() -> str | None:
    """The hub cache as the environment names it now (``HF_HUB_CACHE``, else ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _missing_weights_message(hub_id: str, reason: str) -> str:
    cache = _hub_cache_dir() or "~/.cache/huggingface/hub"
    return (
        f"Cannot load {hub_id!r}: its weights are not in the local Hugging Face cache ({cache}) "
        f"and fetching them failed ({reason.splitlines()[0] if reason else 'unknown reason'}). "
        "Provide the weights in one of these ways: copy a Hugging Face cache that holds the "
        "model onto this machine and point HF_HOME at it; or pass --model-dir DIR with a "
        "directory holding config.json, model.safetensors (or pytorch_model.bin) and the "
        "tokenizer files (e.g. made by `save_pretrained`); or, for offline work without GPT-2, "
        f"use --model {TOY_IOI} (trained IOI model shipped with the project) or --model "
        f"{RANDOM_GPT2} (random weights of GPT-2 small's shape)."
    )


def _boot_from_directory(path: Path, *, model_id: str, source: str, device: str) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelUnavailableError(
            f"{path} is not a Hugging Face model directory: config.json is missing. Pass a "
            "directory written by `save_pretrained` (config.json, weights, tokenizer files)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        hf_model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation="eager"
        )
    except OSError as error:
        raise ModelUnavailableError(f"Cannot load the model in {path}: {error}") from error
    revision = path.name if source == "hub-cache" or source == "hub" else _weights_digest(path)
    return _boot(
        hf_model,
        tokenizer,
        model_id=model_id,
        source=source,
        path=path,
        revision=revision,
        device=device,
    )


def _weights_digest(path: Path) -> str | None:
    """``sha256:<first 16 hex>`` of the weight files, so a directory's content is identifiable."""
    weight_files = sorted([*path.glob("*.safetensors"), *path.glob("*.bin")])
    if not weight_files:
        return None
    digest = hashlib.sha256()
    for weight_file in weight_files:
        with weight_file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:16]


def random_gpt2(
    *,
    seed: int = 0,
    device: str = "cpu",
    n_layers: int = 12,
    n_heads: int = 12,
    d_model: int = 768,
) -> LoadedModel:
    """A GPT-2 with seeded random weights; GPT-2 small's shape and tokenizer by default."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ingest.models.gpt2_tokenizer import load_gpt2_tokenizer

    _check_device(device)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        config = GPT2Config(n_layer=n_layers, n_head=n_heads, n_embd=d_model)
        hf_model = GPT2LMHeadModel(config)
    finally:
        torch.random.set_rng_state(generator_state)
    small = (n_layers, n_heads, d_model) == (12, 12, 768)
    return _boot(
        hf_model,
        load_gpt2_tokenizer(),
        model_id=RANDOM_GPT2 if small else f"{RANDOM_GPT2}-{n_layers}x{n_heads}x{d_model}",
        source="random",
        path=None,
        revision=f"seed={seed}",
        device=device,
        seed=seed,
    )


def _boot(
    hf_model: Any,
    tokenizer: Any,
    *,
    model_id: str,
    source: str,
    path: Path | None,
    revision: str | None,
    device: str,
    seed: int | None = None,
) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        str(path) if path is not None else "gpt2",
        hf_model=hf_model.eval(),
        tokenizer=tokenizer,
        device=device,
    )
    _check_supported(bridge, model_id)
    bridge.enable_compatibility_mode(disable_warnings=True)
    bridge.set_use_attn_result(True)
    bridge.eval()
    cfg = bridge.cfg
    provenance = ModelProvenance(
        model_id=model_id,
        source=source,
        revision=revision,
        path=str(path) if path is not None else None,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
        d_model=cfg.d_model,
        d_head=cfg.d_head,
        seed=seed,
        versions=package_versions(),
    )
    return LoadedModel(bridge=bridge, provenance=provenance)


def _check_supported(bridge: Any, model_id: str) -> None:
    """SAD's bilinear form needs absolute (or no) positions and one key head per query head."""
    cfg = bridge.cfg
    positional = getattr(cfg, "positional_embedding_type", "standard")
    if positional not in ("standard", "shortformer"):
        raise UnsupportedModelError(
            f"{model_id} uses {positional!r} positional embeddings; the query-key bilinear "
            "decomposition assumes position enters only through the residual stream "
            "(GPT-2-style learned absolute positions)."
        )
    n_kv = getattr(cfg, "n_key_value_heads", None)
    if n_kv not in (None, cfg.n_heads):
        raise UnsupportedModelError(
            f"{model_id} uses grouped-query attention ({n_kv} key heads for {cfg.n_heads} query "
            "heads), which this decomposition does not support yet."
        )
