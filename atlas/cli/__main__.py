"""``python -m atlas.cli``: the same as the ``circuit-atlas`` command."""

from atlas.cli import main

main()
