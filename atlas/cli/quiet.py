"""Keep library chatter out of the user's terminal, and nothing else.

Loading a model through transformers prints a "Loading weights" progress bar per model and
transformers / TransformerLens emit advisory warnings (deprecations, processing notes) that
read like errors to a user. :func:`quiet_libraries` turns those off for a command-line run:
transformers' and the Hugging Face hub's progress bars, their logging below ERROR, and
Python warnings raised from inside transformers, transformer_lens and huggingface_hub.
Errors still raise; warnings from our own code and from other libraries still show. The
Neo4j driver's query notifications are switched off where the driver is created
(:mod:`atlas.store.connection`). :func:`driver_retries_reported_once` turns the driver's
warning per retried transaction (a server restarting) into one line of our own.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import click

CHATTY_MODULES = r"(transformers|transformer_lens|huggingface_hub)(\..*)?$"


def quiet_libraries() -> None:
    """Silence the progress bars, info logging and advisory warnings of the model libraries."""
    import huggingface_hub.utils
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
    warnings.filterwarnings("ignore", module=CHATTY_MODULES)


class _FirstRetryOnly(logging.Filter):
    """Drops the driver's "Transaction failed and will be retried" warnings, printing one line
    of our own for the first."""

    def __init__(self) -> None:
        super().__init__()
        self.reported = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "will be retried" not in record.getMessage():
            return True
        if not self.reported:
            from atlas.store.store import BATCH_RETRY_SECONDS

            self.reported = True
            click.echo(
                f"Neo4j does not answer; retrying the write for up to {BATCH_RETRY_SECONDS:.0f} s"
                " ...",
                err=True,
            )
        return False


@contextlib.contextmanager
def driver_retries_reported_once() -> Iterator[None]:
    """Within the block, the Neo4j driver's retry warnings become one line on stderr."""
    retries = _FirstRetryOnly()
    loggers = [logging.getLogger(name) for name in ("neo4j", "neo4j.session", "neo4j.pool")]
    for logger in loggers:
        logger.addFilter(retries)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(retries)
