// name: run_communication
// purpose: Every COMMUNICATES edge of a run with all its properties (what `export` writes).
// param: run_id string — the run (ingested or imported)
// returns: writer string, writer_kind string, writer_layer int?, writer_head int?,
//   target string, target_kind string, layer int?, head int?, side string, role string,
//   n_prompts int, mean_weight float, properties map
// example: {"run_id": "gpt2-sad-authors"}
// example-toy: {"run_id": "toy-ioi-run"}
//
// One row per (writer, target, side, role). `target` is a head, or the logit direction
// (kind `logit`) for edges an ACC import brought in. `properties` carries the source format's
// own fields on imported runs (SAD: `traversals`, `total_weight`, `first_prompt`, `src_role`,
// `dest_role`; ACC: `prompts`, `merged_edges`). On an imported SAD run `n_prompts` holds the
// authors' traversal count (the run's `support` says `traversals`). Reads the relationship
// index `communicates_run`; `circuit-atlas export` calls it.
// Measured on a 1,024-prompt toy-ioi run (PROFILE): 1,565 rows, 35,996 db hits; p50 69 ms, p95 102
// ms over 20 warm runs (load ≈ 4, 2 shared cores).
MATCH (w:Component)-[c:COMMUNICATES {run_id: $run_id}]->(t:Component)
USING INDEX c:COMMUNICATES(run_id) // not a scan of every component's edges of all runs
RETURN w.id AS writer, w.kind AS writer_kind, w.layer AS writer_layer, w.head AS writer_head,
       t.id AS target, t.kind AS target_kind, t.layer AS layer, t.head AS head,
       c.side AS side, c.role AS role, c.n_prompts AS n_prompts, c.mean_weight AS mean_weight,
       properties(c) AS properties
ORDER BY writer_layer, writer_head, writer, layer, head, target, side, role
