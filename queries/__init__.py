"""The Cypher of the atlas: one ``<name>.cypher`` file per template, and the code that reads them.

Every template starts with a header of ``//`` lines (description, mode, typed parameters with
defaults and ranges, result columns, examples) that :mod:`queries.templates` parses; the CLI,
the Python API and the Browser guide all run the same files. ``catalogue.md`` is generated from
the headers (``circuit-atlas templates --catalogue``).
"""

from queries.templates import Template, TemplateError, all_templates, load_template

__all__ = ["Template", "TemplateError", "all_templates", "load_template"]
