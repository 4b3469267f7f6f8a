"""Keep library chatter out of the user's terminal, and nothing else.

Loading a model through transformers prints a "Loading weights" progress bar per model and
transformers / TransformerLens emit advisory warnings (deprecations, processing notes) that
read like errors to a user. :func:`quiet_libraries` turns those off for a command-line run:
transformers' and the Hugging Face hub's progress bars, their logging below ERROR, and
Python warnings raised from inside transformers, transformer_lens and huggingface_hub.
Errors still raise; warnings from our own code and from other libraries still show. The
Neo4j driver's query notifications are switched off where the driver is created
(:mod:`atlas.store.connection`).
"""

from __future__ import annotations

import warnings

CHATTY_MODULES = r"(transformers|transformer_lens|huggingface_hub)(\..*)?$"


def quiet_libraries() -> None:
    """Silence the progress bars, info logging and advisory warnings of the model libraries."""
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", module=CHATTY_MODULES)
