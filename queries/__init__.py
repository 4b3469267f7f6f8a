"""Cypher templates (``*.cypher``) that analysts and the CLI share; see ``catalogue.md``."""
