// name: prompt_redundancy
// purpose: Per prompt, how many independent routes reach a head's root firing, per side; prompts that hang on a single route come first.
// param: run_id string — the run
// param: layer int[0..] — the root head's layer
// param: head int[0..] — the root head's index in its layer
// param: dest_role string = "END" — the root firing's query (destination) role
// param: src_role string = "IO" — the root firing's key (source) role
// param: limit int[1..] = 100 — at most this many prompts
// returns: prompt int, template string?, order string?, q_routes int, k_routes int,
//   q_writers list<string>, k_writers list<string>, q_relayed int, single_route bool
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO", "limit": 100}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "limit": 100}
//
// A route into the root is a writer the SAD edge rule kept on one side of the root firing: the
// writers of one side are parallel, independent inputs (each is another head's output), so
// `q_routes` / `k_routes` count distinct writers per side (over the prompt's root firings, if it
// has several). `q_relayed` counts the query-side writers that themselves fire at the position
// they wrote (their signal is relayed from further upstream: the route is longer than one hop).
// `single_route` is true when one side has exactly one writer: ablating that head alone should
// break the root's attention in this prompt. Prompts where the root does not fire are absent.
//
// How it runs: seek of `Firing(run_id, layer, head, dest_role, src_role)` (both roles are
// required, so firings without a role, which that index leaves out, could never match), the
// firing's WRITES, and for query-side writes only (an `EXISTS {}` under `CASE`) a seek of the
// unique firing index by its prefix `(run_id, prompt, layer, head, dest)`; the prompts by the
// unique `Prompt(run_id, idx)`. Measured with the example-toy parameters on a 1,024-prompt toy-ioi
// run (PROFILE): 45,000 db hits (68,978 with the `Firing(run_id, layer, head)` seek, which read 12k
// index entries to keep 1k firings; 76,566 when key-side writes were sought too); p50 65 ms, p95
// 90 ms over 20 warm runs (load ≈ 2–3, 2 shared cores). 1k prompts are aggregated and sorted.
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head, dest_role: $dest_role,
                 src_role: $src_role})
USING INDEX f:Firing(run_id, layer, head, dest_role, src_role)
OPTIONAL MATCH (w:Component)-[e:WRITES]->(f)
WITH f, e, w, CASE e.side WHEN 'q' THEN EXISTS {
       MATCH (up:Firing {run_id: $run_id, prompt: f.prompt, layer: w.layer, head: w.head,
                         dest: e.pos})
       WHERE up.src IS NOT NULL // the unique firing index, by its prefix
     } ELSE false END AS relays
WITH f.prompt AS prompt, e.side AS side, w.id AS writer,
     sum(CASE WHEN relays THEN 1 ELSE 0 END) > 0 AS relayed
ORDER BY writer
WITH prompt, collect(CASE side WHEN 'q' THEN writer END) AS q_writers,
     collect(CASE side WHEN 'k' THEN writer END) AS k_writers,
     sum(CASE WHEN side = 'q' AND relayed THEN 1 ELSE 0 END) AS q_relayed
MATCH (p:Prompt {run_id: $run_id, idx: prompt})
WITH p, prompt, q_writers, k_writers, q_relayed,
     size(q_writers) = 1 OR size(k_writers) = 1 AS single_route
RETURN prompt, p.template AS template, p.order AS order, size(q_writers) AS q_routes,
       size(k_writers) AS k_routes, q_writers, k_writers, q_relayed, single_route
ORDER BY single_route DESC, q_routes + k_routes, prompt
LIMIT $limit
