// name: head_outputs
// purpose: The heads a head writes into over a run (aggregated COMMUNICATES), per side and role, most prompts first.
// param: run_id string — the run
// param: layer int[0..] — the writing head's layer
// param: head int[0..] — the writing head's index in its layer
// param: side string[q|k]? = null — q (query side), k (key side), or null for both
// param: role string? = null — the role of the position written (END, IO, S2, ...), or null for all
// param: min_prompts int[1..] = 1 — hide edges seen in fewer prompts
// param: limit int[1..] = 50 — at most this many rows
// returns: reader string, reader_class string?, side string, role string, n_prompts int,
//   prompt_share float, mean_weight float
// example: {"run_id": "gpt2-sad-256", "layer": 8, "head": 6, "side": null, "role": null, "min_prompts": 1, "limit": 50}
// example-toy: {"run_id": "toy-ioi-run", "layer": 2, "head": 3, "side": null, "role": null, "min_prompts": 1, "limit": 50}
//
// The mirror of `head_inputs`: where the head's output is read, on which side of the reader's
// attention and at which role. `prompt_share` is `n_prompts` over the run's prompts.
//
// How it runs: unique-constraint seeks for the run and the head, then an expansion of the head's
// outgoing COMMUNICATES filtered by run, side and role. Measured with the example-toy parameters on
// a 1,024-prompt toy-ioi run (PROFILE): 581 db hits; p50 5 ms, p95 16 ms over 20 warm runs (load ≈
// 4, 2 shared cores).
MATCH (r:Run {id: $run_id})
MATCH (w:Component {model_id: r.model_id, id: toString($layer) + '.' + toString($head)})
WITH r, w, COUNT { (r)-[:HAS_PROMPT]->() } AS run_prompts
MATCH (w)-[c:COMMUNICATES]->(h:Component)
WHERE c.run_id = $run_id AND ($side IS NULL OR c.side = $side)
  AND ($role IS NULL OR c.role = $role) AND c.n_prompts >= $min_prompts
RETURN h.id AS reader, h.ioi_class AS reader_class, c.side AS side, c.role AS role,
       c.n_prompts AS n_prompts,
       CASE run_prompts WHEN 0 THEN null ELSE toFloat(c.n_prompts) / run_prompts END AS prompt_share,
       c.mean_weight AS mean_weight
ORDER BY n_prompts DESC, mean_weight DESC, reader, side, role
LIMIT $limit
