"""Prompts: seeded Indirect Object Identification (IOI) prompts and the role of every token.

:func:`generate_prompts` renders templates with names, places and objects (BABA, ABBA or mixed
order); :func:`tokenize_prompts` pads a batch and locates the roles (IO, S1, S1+1, S2, END, …)
in token positions; :func:`position_roles` labels every position of a batch.
"""

from ingest.prompts.ioi import (
    PROMPT_TYPES,
    ROLES,
    IOIPrompt,
    PromptBatch,
    generate_prompts,
    position_roles,
    tokenize_prompts,
)

__all__ = [
    "PROMPT_TYPES",
    "ROLES",
    "IOIPrompt",
    "PromptBatch",
    "generate_prompts",
    "position_roles",
    "tokenize_prompts",
]
