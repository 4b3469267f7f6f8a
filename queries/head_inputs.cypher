// name: head_inputs
// purpose: The writers into a head over a run (aggregated COMMUNICATES), per side and role, most prompts first.
// param: run_id string — the run
// param: layer int[0..] — the reading head's layer
// param: head int[0..] — the reading head's index in its layer
// param: side string[q|k]? = null — q (query side), k (key side), or null for both
// param: role string? = null — the role of the position written (END, IO, S2, ...), or null for all
// param: min_prompts int[1..] = 1 — hide edges seen in fewer prompts
// param: limit int[1..] = 50 — at most this many rows
// returns: writer string, writer_class string?, side string, role string, n_prompts int,
//   prompt_share float, mean_weight float
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "side": "q", "role": "END", "min_prompts": 1, "limit": 50}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "side": "q", "role": "END", "min_prompts": 1, "limit": 50}
//
// `n_prompts` counts the distinct prompts in which the writer was among the head's top writers
// on that side (the SAD edge rule), `prompt_share` divides it by the run's prompts (null for a
// run without Prompt nodes, such as an imported one), and `mean_weight` is the mean
// contribution to the signal. `circuit-atlas inputs HEAD --side q --role END` prints it.
//
// How it runs: one unique-constraint seek for the run and one for the head (`Component(model_id,
// id)`), then an expansion of the head's incoming COMMUNICATES filtered by run, side and role; no
// label scan. Measured with the example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 421
// db hits; p50 3 ms, p95 9 ms over 20 warm runs (load ≈ 4, 2 shared cores).
MATCH (r:Run {id: $run_id})
MATCH (h:Component {model_id: r.model_id, id: toString($layer) + '.' + toString($head)})
WITH r, h, COUNT { (r)-[:HAS_PROMPT]->() } AS run_prompts
MATCH (w:Component)-[c:COMMUNICATES]->(h)
WHERE c.run_id = $run_id AND ($side IS NULL OR c.side = $side)
  AND ($role IS NULL OR c.role = $role) AND c.n_prompts >= $min_prompts
RETURN w.id AS writer, w.ioi_class AS writer_class, c.side AS side, c.role AS role,
       c.n_prompts AS n_prompts,
       CASE run_prompts WHEN 0 THEN null ELSE toFloat(c.n_prompts) / run_prompts END AS prompt_share,
       c.mean_weight AS mean_weight
ORDER BY n_prompts DESC, mean_weight DESC, writer, side, role
LIMIT $limit
