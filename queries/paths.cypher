// name: paths
// purpose: Ranked routes from an upstream head to a downstream head over a run's COMMUNICATES, strongest weakest hop first.
// param: run_id string — the run
// param: from_layer int[0..] — the upstream (writing) head's layer
// param: from_head int[0..] — the upstream head's index in its layer
// param: to_layer int[0..] — the downstream (reading) head's layer
// param: to_head int[0..] — the downstream head's index in its layer
// param: max_hops int[1..6] = 3 — longest route, in COMMUNICATES hops (at most 6)
// param: min_prompts int[1..] = 1 — every hop must be seen in at least this many prompts
// param: consistent bool = true — keep only role-consistent routes (see below)
// param: limit int[1..] = 20 — at most this many routes
// returns: route string, hops int, min_prompts int, heads list<string>, sides list<string>,
//   roles list<string>, prompts list<int>, mean_weights list<float>
// example: {"run_id": "gpt2-sad-256", "from_layer": 7, "from_head": 3, "to_layer": 9, "to_head": 9, "max_hops": 3, "min_prompts": 5, "consistent": true, "limit": 20}
// example-toy: {"run_id": "toy-ioi-run", "from_layer": 0, "from_head": 2, "to_layer": 3, "to_head": 1, "max_hops": 3, "min_prompts": 10, "consistent": true, "limit": 20}
//
// A route is a chain of COMMUNICATES relationships writer → reader (each hop has its side `q` /
// `k` and the role of the position written), read as `0.2 -q@END→ 2.3 -q@END→ 3.1`. Routes are
// ranked by their weakest hop's prompt support (`min_prompts`), then by length (shorter first).
// Parallel relationships between the same two heads (other side or role) give separate routes.
//
// **Role-consistent** (default): a head writes at the position it attends *from* (its firing's
// destination). If hop i wrote into the next head's query side at role R, that head's firings
// read there have destination R, so it writes at R too: hop i+1 must have role R. After a key-
// side hop the reader's destination is not fixed by the aggregate, so any role may follow.
// This drops routes that cannot be realised by any firing chain, while staying an aggregate
// (per prompt, `circuit` checks it firing by firing).
//
// How it runs: unique-constraint seeks for the run and both heads (their ids are computed in a WITH
// first: otherwise the planner scans the Component label), then one fixed-length pattern per hop
// count k (a UNION ALL of six), with every predicate on its own variable so that the planner tests
// it on the hop that binds it: run and support on each relationship; role consistency between
// consecutive hops (a quantified path pattern can only test it after expanding a whole trail); and
// a layer window on each intermediate head. A head reads only what earlier layers wrote, so every
// hop goes to a later layer: the i-th head after the source lies in layers from_layer + i ..
// to_layer − (k − i), and a branch runs only when k ≤ `$max_hops` and k ≤ to_layer − from_layer
// (otherwise it costs nothing). In the two- and three-hop branches (both atlases) the planner
// expands from the target backwards and closes each route on the source with Expand(Into); the
// four- to six-hop branches meet in the middle (`USING JOIN ON` the middle head: a hash join of the
// expansion from the source with the one from the target), where the planner expanded the six-hop
// branch backwards to the source through every incoming relationship of layer-19 heads on SmolLM2
// (1,291,882 db hits without role consistency, against 300,164 joined and 1,053,280 for the
// previous template). A relationship appears once per route, as in a trail (a MATCH never binds one
// relationship twice). `COMMUNICATES` only joins Components, so the heads carry no label test (one
// doubled the db hits). Measured with the example-toy parameters on a 1,024-prompt toy-ioi run
// (PROFILE, same server and data): 104,201 db hits, 580,416 for the single quantified path pattern
// it replaced (which expanded 22.6k trails for 3.5k role-consistent routes to the target; here the
// 449 consistent two-hop tails into the target are closed on the source); with the SmolLM2
// parameters (docs/bench/smollm2-135m-template-parameters.json) on a 256-prompt SmolLM2-135M run:
// 19,532 db hits, 1,028,372 before. Most of what remains reads the 3,463 toy-ioi routes' hops to
// rank them (~50k; returning each hop's side, role and support from the branch that read them saved
// 31k, at the cost of a longer branch per hop count: not taken). Without the layer windows (only
// "above the source, below the target"): 118,961 / 22,015. Predicates written over lists (`all(hop
// IN [c1, c2, c3] WHERE ...)`) are not split per hop by the planner: 310,079 / 345,324. Up to 6
// hops on SmolLM2 (17.4 → 24.4, support ≥ 30): 137,034 db hits (1,044,322 before); without role
// consistency 300,164 (1,053,280); on toy-ioi (0.2 → 3.1, no support floor) 258,534 (1,204,333) and
// 797,060 (1,598,694). Planning the six branches takes ~150 ms on a loaded machine (the single
// pattern ~40 ms), once: the server caches the plan. p50 / p95 in docs/performance.md. Cost grows
// with the number of routes: ask with a support floor.
MATCH (r:Run {id: $run_id})
WITH r.model_id AS model, toString($from_layer) + '.' + toString($from_head) AS from_id,
     toString($to_layer) + '.' + toString($to_head) AS to_id
MATCH (a:Component {model_id: model, id: from_id})
MATCH (b:Component {model_id: model, id: to_id})
CALL (a, b) {
  MATCH (a)-[c1:COMMUNICATES]->(b)
  WHERE c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
  RETURN [c1] AS c, [a, b] AS route_heads
  UNION ALL
  MATCH (a)-[c1:COMMUNICATES]->(x1)-[c2:COMMUNICATES]->(b)
  WHERE $max_hops >= 2 AND $to_layer - $from_layer >= 2
    AND c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
    AND c2.run_id = $run_id AND c2.n_prompts >= $min_prompts
    AND $from_layer + 1 <= x1.layer <= $to_layer - 1
    AND (NOT $consistent OR c1.side = 'k' OR c2.role = c1.role)
  RETURN [c1, c2] AS c, [a, x1, b] AS route_heads
  UNION ALL
  MATCH (a)-[c1:COMMUNICATES]->(x1)-[c2:COMMUNICATES]->(x2)-[c3:COMMUNICATES]->(b)
  WHERE $max_hops >= 3 AND $to_layer - $from_layer >= 3
    AND c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
    AND c2.run_id = $run_id AND c2.n_prompts >= $min_prompts
    AND c3.run_id = $run_id AND c3.n_prompts >= $min_prompts
    AND $from_layer + 1 <= x1.layer <= $to_layer - 2
    AND $from_layer + 2 <= x2.layer <= $to_layer - 1
    AND (NOT $consistent OR c1.side = 'k' OR c2.role = c1.role)
    AND (NOT $consistent OR c2.side = 'k' OR c3.role = c2.role)
  RETURN [c1, c2, c3] AS c, [a, x1, x2, b] AS route_heads
  UNION ALL
  MATCH (a)-[c1:COMMUNICATES]->(x1)-[c2:COMMUNICATES]->(x2)-[c3:COMMUNICATES]->(x3)
        -[c4:COMMUNICATES]->(b)
  USING JOIN ON x2
  WHERE $max_hops >= 4 AND $to_layer - $from_layer >= 4
    AND c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
    AND c2.run_id = $run_id AND c2.n_prompts >= $min_prompts
    AND c3.run_id = $run_id AND c3.n_prompts >= $min_prompts
    AND c4.run_id = $run_id AND c4.n_prompts >= $min_prompts
    AND $from_layer + 1 <= x1.layer <= $to_layer - 3
    AND $from_layer + 2 <= x2.layer <= $to_layer - 2
    AND $from_layer + 3 <= x3.layer <= $to_layer - 1
    AND (NOT $consistent OR c1.side = 'k' OR c2.role = c1.role)
    AND (NOT $consistent OR c2.side = 'k' OR c3.role = c2.role)
    AND (NOT $consistent OR c3.side = 'k' OR c4.role = c3.role)
  RETURN [c1, c2, c3, c4] AS c, [a, x1, x2, x3, b] AS route_heads
  UNION ALL
  MATCH (a)-[c1:COMMUNICATES]->(x1)-[c2:COMMUNICATES]->(x2)-[c3:COMMUNICATES]->(x3)
        -[c4:COMMUNICATES]->(x4)-[c5:COMMUNICATES]->(b)
  USING JOIN ON x2
  WHERE $max_hops >= 5 AND $to_layer - $from_layer >= 5
    AND c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
    AND c2.run_id = $run_id AND c2.n_prompts >= $min_prompts
    AND c3.run_id = $run_id AND c3.n_prompts >= $min_prompts
    AND c4.run_id = $run_id AND c4.n_prompts >= $min_prompts
    AND c5.run_id = $run_id AND c5.n_prompts >= $min_prompts
    AND $from_layer + 1 <= x1.layer <= $to_layer - 4
    AND $from_layer + 2 <= x2.layer <= $to_layer - 3
    AND $from_layer + 3 <= x3.layer <= $to_layer - 2
    AND $from_layer + 4 <= x4.layer <= $to_layer - 1
    AND (NOT $consistent OR c1.side = 'k' OR c2.role = c1.role)
    AND (NOT $consistent OR c2.side = 'k' OR c3.role = c2.role)
    AND (NOT $consistent OR c3.side = 'k' OR c4.role = c3.role)
    AND (NOT $consistent OR c4.side = 'k' OR c5.role = c4.role)
  RETURN [c1, c2, c3, c4, c5] AS c, [a, x1, x2, x3, x4, b] AS route_heads
  UNION ALL
  MATCH (a)-[c1:COMMUNICATES]->(x1)-[c2:COMMUNICATES]->(x2)-[c3:COMMUNICATES]->(x3)
        -[c4:COMMUNICATES]->(x4)-[c5:COMMUNICATES]->(x5)-[c6:COMMUNICATES]->(b)
  USING JOIN ON x3
  WHERE $max_hops >= 6 AND $to_layer - $from_layer >= 6
    AND c1.run_id = $run_id AND c1.n_prompts >= $min_prompts
    AND c2.run_id = $run_id AND c2.n_prompts >= $min_prompts
    AND c3.run_id = $run_id AND c3.n_prompts >= $min_prompts
    AND c4.run_id = $run_id AND c4.n_prompts >= $min_prompts
    AND c5.run_id = $run_id AND c5.n_prompts >= $min_prompts
    AND c6.run_id = $run_id AND c6.n_prompts >= $min_prompts
    AND $from_layer + 1 <= x1.layer <= $to_layer - 5
    AND $from_layer + 2 <= x2.layer <= $to_layer - 4
    AND $from_layer + 3 <= x3.layer <= $to_layer - 3
    AND $from_layer + 4 <= x4.layer <= $to_layer - 2
    AND $from_layer + 5 <= x5.layer <= $to_layer - 1
    AND (NOT $consistent OR c1.side = 'k' OR c2.role = c1.role)
    AND (NOT $consistent OR c2.side = 'k' OR c3.role = c2.role)
    AND (NOT $consistent OR c3.side = 'k' OR c4.role = c3.role)
    AND (NOT $consistent OR c4.side = 'k' OR c5.role = c4.role)
    AND (NOT $consistent OR c5.side = 'k' OR c6.role = c5.role)
  RETURN [c1, c2, c3, c4, c5, c6] AS c, [a, x1, x2, x3, x4, x5, b] AS route_heads
}
WITH c, reduce(low = c[0].n_prompts, hop IN c | CASE WHEN hop.n_prompts < low
                                                 THEN hop.n_prompts ELSE low END) AS weakest,
     [n IN route_heads | n.id] AS heads
RETURN reduce(text = heads[0], i IN range(0, size(c) - 1) |
         text + ' -' + c[i].side + '@' + c[i].role + '→ ' + heads[i + 1]) AS route,
       size(c) AS hops, weakest AS min_prompts, heads,
       [hop IN c | hop.side] AS sides, [hop IN c | hop.role] AS roles,
       [hop IN c | hop.n_prompts] AS prompts, [hop IN c | hop.mean_weight] AS mean_weights
ORDER BY min_prompts DESC, hops, route
LIMIT $limit
