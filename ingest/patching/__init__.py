"""Patching circuits: edge scores between components by patching the run's own prompts
(clean) against their ABC counterparts (corrupted). Pure tensor maths, no database.

* :mod:`ingest.patching.graph`: the component graph (writers, readers, which edges exist) and
  the scores as one table;
* :mod:`ingest.patching.methods`: EAP through TransformerLens's ``attribution_patch``, EAP-IG
  and GQA edges where TransformerLens refuses them, and exact direct path patching through
  ``transformer_lens.patching``;
* :mod:`ingest.patching.exact`: brute-force activation patching of one edge (the reference the
  tests check every method against) and the faithfulness of a set of heads.
"""
