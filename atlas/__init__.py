"""The graph side of Circuit Atlas: settings, local Neo4j server, schema, store, CLI, exports."""
