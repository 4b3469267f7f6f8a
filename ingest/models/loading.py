"""Load a transformer through TransformerLens's ``TransformerBridge`` in the form SAD needs.

Every model goes through the same path: a Hugging Face causal LM and its tokenizer are loaded
from a local directory (the user's Hugging Face cache, a ``--model-dir``, the shipped toy
fixture) or built in-process (``random-gpt2``), then booted into a bridge with

* ``enable_compatibility_mode()``: LayerNorm folded into the next linear maps, writing weights
  and unembedding centered, value biases folded. A head then reads ``x_t = resid_t / s_t``
  (``ln1.hook_normalized``), so its query/key maps are affine in ``x_t``.
* ``set_use_attn_result(True)``: per-head outputs ``hook_result`` for tracing.

Llama-family models (rotary positions, grouped-query attention, RMSNorm, no biases) load the
same way: RMSNorm's gain is folded into W_Q/W_K, so a head again reads ``x_t = resid_t / s_t``
(``s_t`` the RMS, ``ln1.hook_scale``). The loader takes the rotary base θ from the Hugging Face
config (``rope_parameters["rope_theta"]``, else ``rope_theta``) and sets it on the bridge's
config: TransformerLens 4.3 reads the old ``rope_theta`` attribute only and would otherwise
report 10,000 for every model whose config moved it (a wrong θ breaks exactness, see
:mod:`ingest.decomposition.rotary`). Models whose scores are not a bilinear form of the head's
input are refused in one line before booting (:func:`check_decomposable`).

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
SMOLLM2 = "smollm2-135m"  # installed with `circuit-atlas models install smollm2-135m`
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
    source: str  # "hub-cache" | "hub" | "directory" | "fixture" | "random" | "installed"
    revision: str | None
    path: str | None
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    seed: int | None = None
    processing: dict[str, bool] = field(default_factory=lambda: dict(PROCESSING_FLAGS))
    versions: dict[str, str] = field(default_factory=dict)
    positional: str = "standard"  # TransformerLens's positional_embedding_type
    rotary_base: float | None = None
    n_kv_heads: int | None = None
    weights: dict[str, str] = field(default_factory=dict)  # e.g. GGUF file, sha256, conversion

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadedModel:
    """A processed bridge plus its provenance."""

    bridge: Any  # transformer_lens.model_bridge.TransformerBridge
    provenance: ModelProvenance
    # Whether IOI prompts start with BOS; the loader follows the tokenizer (see
    # ingest.prompts.ioi.default_prepend_bos), callers may override it.
    prepend_bos: bool = True

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
    if model == SMOLLM2:
        return _load_installed_smollm2(device)
    hub_id = HUB_ALIASES.get(model, model)
    path, source = _resolve_hub_snapshot(hub_id, revision)
    return _boot_from_directory(path, model_id=hub_id, source=source, device=device)


def _load_installed_smollm2(device: str) -> LoadedModel:
    """The converted SmolLM2-135M checkpoint (see :mod:`ingest.models.catalog`)."""
    from ingest.models.catalog import not_installed_message, read_manifest, smollm2_dir

    path = smollm2_dir()
    manifest = read_manifest(path)
    if manifest is None:
        raise ModelUnavailableError(not_installed_message())
    return _boot_from_directory(
        path,
        model_id=SMOLLM2,
        source="installed",
        device=device,
        weights=manifest,
        revision="gguf-sha256:" + manifest.get("gguf_sha256", "")[:16],
    )


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
            f"{hub_id!r} is not a model name this tool knows ({TOY_IOI}, {RANDOM_GPT2}, "
            f"{SMOLLM2}) nor a valid Hugging Face model id (owner/name). For weights on disk use "
            "--model-dir DIR."
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


def _boot_from_directory(
    path: Path,
    *,
    model_id: str,
    source: str,
    device: str,
    weights: dict[str, str] | None = None,
    revision: str | None = None,
) -> LoadedModel:
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
    if revision is None:
        revision = path.name if source in ("hub-cache", "hub") else _weights_digest(path)
    return _boot(
        hf_model,
        tokenizer,
        model_id=model_id,
        source=source,
        path=path,
        revision=revision,
        device=device,
        weights=weights,
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


def random_llama(
    *,
    seed: int = 0,
    device: str = "cpu",
    n_layers: int = 3,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_model: int = 64,
    d_head: int = 16,
    rope_theta: float = 50_000.0,
) -> LoadedModel:
    """A small Llama-style model with seeded random weights (RoPE, RMSNorm, grouped-query
    attention, no biases, tied embeddings) and GPT-2's tokenizer; built in-process, no download.

    θ defaults to 50,000, away from TransformerLens's 10,000 default, so a loader that failed
    to carry θ over would show.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from ingest.models.gpt2_tokenizer import load_gpt2_tokenizer

    tokenizer = load_gpt2_tokenizer()
    settings: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        head_dim=d_head,
        rope_theta=rope_theta,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    config = LlamaConfig(**settings)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        hf_model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    shape = f"{n_layers}x{n_heads}q{n_kv_heads}kv x{d_model}"
    return boot_model(
        hf_model,
        tokenizer,
        model_id=f"random-llama-{shape.replace(' ', '')}",
        seed=seed,
        device=device,
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
    weights: dict[str, str] | None = None,
) -> LoadedModel:
    from transformer_lens.model_bridge import TransformerBridge

    check_decomposable(hf_model, model_id)
    bridge = TransformerBridge.boot_transformers(
        str(path) if path is not None else _bridge_name(hf_model),
        hf_model=hf_model.eval(),
        tokenizer=tokenizer,
        device=device,
    )
    _check_supported(bridge, model_id)
    _configure_rotary(bridge, hf_model.config, model_id)
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
        positional=str(getattr(cfg, "positional_embedding_type", "standard")),
        rotary_base=float(cfg.rotary_base)
        if getattr(cfg, "positional_embedding_type", "") == "rotary"
        else None,
        n_kv_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads,
        weights=dict(weights or {}),
    )
    from ingest.prompts.ioi import default_prepend_bos

    return LoadedModel(
        bridge=bridge, provenance=provenance, prepend_bos=default_prepend_bos(tokenizer)
    )


def _bridge_name(hf_model: Any) -> str:
    """A name for an in-process model (the bridge picks its adapter from the config)."""
    name = getattr(hf_model.config, "name_or_path", "") or ""
    return name or str(getattr(hf_model.config, "model_type", "gpt2"))


def boot_model(
    hf_model: Any,
    tokenizer: Any,
    *,
    model_id: str,
    device: str = "cpu",
    seed: int | None = None,
    weights: dict[str, str] | None = None,
) -> LoadedModel:
    """Boot an in-process Hugging Face causal LM through the same path as :func:`load_model`.

    For models built from a config (tests, random baselines): the same refusals, folding and
    rotary settings as a model loaded from disk.
    """
    _check_device(device)
    return _boot(
        hf_model,
        tokenizer,
        model_id=model_id,
        source="random",
        path=None,
        revision=None if seed is None else f"seed={seed}",
        device=device,
        seed=seed,
        weights=weights,
    )


_QK_NORM_SUFFIXES = ("q_norm", "k_norm", "q_layernorm", "k_layernorm", "query_layernorm")
_ALIBI_MODEL_TYPES = {"bloom"}


def check_decomposable(hf_model: Any, model_id: str) -> None:
    """Refuse, in one line, a model whose attention scores the bilinear split cannot hold.

    SAD needs ``score(i, j) = x̂_iᵀ Ω x̂_j`` with x̂ a linear map of the head's normalized input
    (identity for absolute positions, the unrotated frame for RoPE). Refused: a normalisation
    of queries or keys themselves (Qwen3, OLMo-2, Gemma 3: q_norm/k_norm), ALiBi (a
    position-dependent bias added to the score), a mixture of attention experts (the map
    changes with the routing), a soft cap on the scores (tanh), and RoPE variants that rescale
    frequencies (only the plain θ^(−2m/ρ) frequencies are implemented).
    """
    config = hf_model.config
    model_type = getattr(config, "model_type", "")
    for name, _ in hf_model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _QK_NORM_SUFFIXES:
            raise UnsupportedModelError(
                f"{model_id} ({model_type}) normalizes queries/keys inside attention ({name}): "
                "the score is no longer bilinear in the head's input, so SAD cannot split it."
            )
        if leaf == "experts" and any(part in name for part in ("attn", "attention")):
            raise UnsupportedModelError(
                f"{model_id} ({model_type}) routes attention through a mixture of experts "
                f"({name}): no single query-key map per head to decompose."
            )
    attn_config = getattr(config, "attn_config", None)
    alibi = (
        model_type in _ALIBI_MODEL_TYPES
        or bool(getattr(config, "alibi", False))
        or getattr(config, "position_embedding_type", None) == "alibi"
        or bool(getattr(attn_config, "alibi", False))
    )
    if alibi:
        raise UnsupportedModelError(
            f"{model_id} ({model_type}) uses ALiBi: a distance penalty added to every score "
            "that no input direction carries, so the bilinear split cannot hold it."
        )
    if getattr(config, "attn_logit_softcapping", None):
        raise UnsupportedModelError(
            f"{model_id} ({model_type}) soft-caps attention scores (tanh): not a bilinear form."
        )
    rope = rope_settings(config)
    if rope is not None and rope[1] not in ("default", None):
        raise UnsupportedModelError(
            f"{model_id} ({model_type}) uses RoPE type {rope[1]!r}, which rescales frequencies; "
            "only plain RoPE (rope_type 'default') is supported."
        )


def rope_settings(config: Any) -> tuple[float, str | None, float] | None:
    """``(θ, rope_type, partial_rotary_factor)`` from a Hugging Face config, if it has RoPE.

    transformers ≥ 5 keeps θ in ``rope_parameters``; older configs in ``rope_theta`` (with
    ``rope_scaling`` for variants).
    """
    parameters = getattr(config, "rope_parameters", None) or {}
    if isinstance(parameters, dict) and "full_attention" in parameters:  # per-layer-type dicts
        parameters = parameters["full_attention"]
    theta = parameters.get("rope_theta") if isinstance(parameters, dict) else None
    if theta is None:
        theta = getattr(config, "rope_theta", None)
    if theta is None:
        return None
    scaling = getattr(config, "rope_scaling", None) or {}
    rope_type = parameters.get("rope_type") or scaling.get("rope_type") or scaling.get("type")
    partial = parameters.get("partial_rotary_factor") or getattr(
        config, "partial_rotary_factor", 1.0
    )
    return float(theta), rope_type, float(partial or 1.0)


def _configure_rotary(bridge: Any, hf_config: Any, model_id: str) -> None:
    """Set θ and the rotated dimension on the bridge's config from the Hugging Face config."""
    cfg = bridge.cfg
    if getattr(cfg, "positional_embedding_type", "standard") != "rotary":
        return
    rope = rope_settings(hf_config)
    if rope is None:
        raise UnsupportedModelError(
            f"{model_id} has rotary positions but its config names no rope_theta."
        )
    theta, _, partial = rope
    cfg.rotary_base = theta
    cfg.rotary_dim = int(cfg.d_head * partial)


def _check_supported(bridge: Any, model_id: str) -> None:
    """SAD needs absolute (or no) positions or plain RoPE; grouped key heads are expanded."""
    cfg = bridge.cfg
    positional = getattr(cfg, "positional_embedding_type", "standard")
    if positional not in ("standard", "shortformer", "rotary"):
        raise UnsupportedModelError(
            f"{model_id} uses {positional!r} positional embeddings; SAD supports learned "
            "absolute positions and plain rotary ones."
        )
