// name: redundant_writers
// purpose: For a head, side and role: pairs of writers that each carry a large share of the same firings' signal, with how often they co-occur.
// param: run_id string — the run
// param: layer int[0..] — the reading head's layer
// param: head int[0..] — the reading head's index in its layer
// param: side string[q|k] = "q" — q (query side) or k (key side)
// param: role string = "END" — the role of the position written
// param: min_share float[0..1] = 0.2 — a writer counts in a firing when its weight is at least this share of the firing's edges on that side
// param: limit int[1..] = 25 — at most this many pairs
// returns: writer_a string, writer_b string, together int, prompts_together int,
//   firings_a int, firings_b int, jaccard float, firings int
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "side": "q", "role": "END", "min_share": 0.2, "limit": 25}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "side": "q", "role": "END", "min_share": 0.2, "limit": 25}
//
// Per firing of the head, a writer's *share* is its WRITES weight over the summed weights of
// the firing's edges on `$side` at `$role` (the writers the SAD edge rule kept). Writers with
// share ≥ `$min_share` are the firing's strong writers. For every pair of strong writers:
// `together` = firings where both are strong, `prompts_together` = distinct prompts of those,
// `firings_a` / `firings_b` = firings where each is strong, `jaccard` = together / firings
// where either is, `firings` = the head's firings with edges there. Two writers that are often
// strong *in the same firings* are parallel inputs (each alone carries a large part of the
// signal: ablating one leaves the other); high `firings_a` with low `together` means they
// substitute for each other across prompts instead.
//
// How it runs: seek of the composite index `Firing(run_id, layer, head)`, only the firings whose
// destination (side q) or source (side k) has `$role` (the role of a write is the role of the
// position it lands on), expansion of their incoming WRITES filtered by side and role, then
// aggregation in memory. Measured with the example-toy parameters on a 1,024-prompt toy-ioi run
// (PROFILE): 53,243 db hits (219,839 before, when the WRITES of all 12k firings of the head were
// read); p50 43 ms, p95 58 ms over 20 warm runs (before: 115 / 154 ms) (load ≈ 4, 2 shared cores).
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head})
// A write on the query side lands at the firing's destination, on the key side at its source,
// so only firings with `$role` there can have such edges (no role is written as 'other').
WHERE coalesce(CASE $side WHEN 'q' THEN f.dest_role WHEN 'k' THEN f.src_role END, 'other') = $role
MATCH (w:Component)-[e:WRITES]->(f)
WHERE e.side = $side AND e.role = $role
WITH f, collect({writer: w.id, weight: e.weight}) AS edges, sum(e.weight) AS total
WHERE total > 0
WITH f, [x IN edges WHERE x.weight >= $min_share * total | x.writer] AS strong
WITH collect({prompt: f.prompt, strong: strong}) AS firings
UNWIND firings AS firing
UNWIND firing.strong AS writer
WITH firings, writer, count(*) AS alone
WITH firings, collect({writer: writer, alone: alone}) AS writers
UNWIND writers AS a
UNWIND writers AS b
WITH firings, a, b WHERE a.writer < b.writer
WITH a, b, size(firings) AS n,
     [x IN firings WHERE a.writer IN x.strong AND b.writer IN x.strong | x.prompt] AS both
WHERE size(both) > 0
RETURN a.writer AS writer_a, b.writer AS writer_b, size(both) AS together,
       COUNT { UNWIND both AS p RETURN DISTINCT p } AS prompts_together, a.alone AS firings_a, b.alone AS firings_b,
       toFloat(size(both)) / (a.alone + b.alone - size(both)) AS jaccard, n AS firings
ORDER BY together DESC, jaccard DESC, writer_a, writer_b
LIMIT $limit
