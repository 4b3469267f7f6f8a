"""Interchange: the method authors' GraphML graphs (SAD and ACC formats) in and out of the atlas.

:mod:`~atlas.interchange.graphml` translates files to plain records and back (no database);
:mod:`~atlas.interchange.runs` imports a file as a read-only run and exports any run.
"""

from atlas.interchange.runs import export_graphml, import_graphml

__all__ = ["export_graphml", "import_graphml"]
