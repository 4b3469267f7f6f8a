// name: edge_firings
// purpose: The downstream firings one communication edge explains, with their sparse sets.
// param: run_id string — the run
// param: writer string — the writer's component id, e.g. "8.6"
// param: layer int[0..] — the downstream head's layer
// param: head int[0..] — the downstream head's index in its layer
// param: side string[q|k] — "q" (query side, written at dest) or "k" (key side, written at src)
// param: role string — the role of the position written (as on COMMUNICATES)
// param: dest_role string = "END" — the downstream firings' query role
// param: src_role string = "IO" — the downstream firings' key role
// returns: prompt int, text string, dest int, src int, pos int, weight float, sparse_set list<int>,
//   writer_pos int?
// example: {"run_id": "gpt2-sad-256", "writer": "8.6", "layer": 9, "head": 9, "side": "q", "role": "END", "dest_role": "END", "src_role": "IO"}
// example-toy: {"run_id": "toy-ioi-run", "writer": "2.3", "layer": 3, "head": 1, "side": "q", "role": "END", "dest_role": "END", "src_role": "IO"}
//
// One row per prompt whose firing of the head at `dest_role → src_role` has a WRITES edge
// from the writer on that side at that role: the prompt's text, the firing's positions, the
// position written, the edge's weight, and the firing's sparse set (singular-vector indices
// in rank order). `circuit-atlas validate` re-runs the model on these prompts and removes the
// signal that the writer sends into these firings.
//
// On an ACC run the sparse set is the side's own (`sparse_dest` for `q`, `sparse_source` for
// `k`: indices into that side's Ω), and a head writer has one row per source token it read
// (`writer_pos`; null for SAD runs and for MLP, bias and embedding writers), so a prompt can
// give several rows for one firing: the edge's weight there is their sum.
//
// How it runs: seek of `Firing(run_id, layer, head, dest_role, src_role)` (both roles are required,
// so firings without a role, which that index leaves out, could never match), then each firing's
// WRITES, prompt and USES. Example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 34,926
// db hits (45,232 with the `Firing(run_id, layer, head)` seek); p50 38 ms, p95 44 ms over 20 warm
// runs (load ≈ 2–3, 2 shared cores).
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head, dest_role: $dest_role,
                 src_role: $src_role})
USING INDEX f:Firing(run_id, layer, head, dest_role, src_role)
MATCH (w:Component)-[e:WRITES {side: $side}]->(f)
WHERE w.id = $writer AND coalesce(e.role, 'other') = $role
MATCH (f)-[:IN_PROMPT]->(p:Prompt)
CALL (f) {
  MATCH (f)-[u:USES]->(sv:SingularVector)
  WITH sv ORDER BY u.rank
  RETURN collect(sv.index) AS sparse_set
}
RETURN f.prompt AS prompt, p.text AS text, f.dest AS dest, f.src AS src, e.pos AS pos,
       e.weight AS weight,
       CASE WHEN f.method = 'acc' AND $side = 'q' THEN f.sparse_dest
            WHEN f.method = 'acc' THEN f.sparse_source ELSE sparse_set END AS sparse_set,
       e.writer_pos AS writer_pos
ORDER BY prompt, dest, src, writer_pos
