// name: alternative_routes
// purpose: The subgraph of every route between two heads (as in `paths`), one row per hop, with how many routes use it.
// param: run_id string — the run
// param: from_layer int[0..] — the upstream (writing) head's layer
// param: from_head int[0..] — the upstream head's index in its layer
// param: to_layer int[0..] — the downstream (reading) head's layer
// param: to_head int[0..] — the downstream head's index in its layer
// param: max_hops int[1..6] = 3 — longest route, in COMMUNICATES hops (at most 6)
// param: min_prompts int[1..] = 1 — every hop must be seen in at least this many prompts
// param: consistent bool = true — keep only role-consistent routes (as in `paths`)
// returns: writer string, reader string, side string, role string, n_prompts int,
//   mean_weight float, routes int, total_routes int
// example: {"run_id": "gpt2-sad-256", "from_layer": 7, "from_head": 3, "to_layer": 9, "to_head": 9, "max_hops": 3, "min_prompts": 5, "consistent": true}
// example-toy: {"run_id": "toy-ioi-run", "from_layer": 0, "from_head": 2, "to_layer": 3, "to_head": 1, "max_hops": 3, "min_prompts": 10, "consistent": true}
//
// `routes` counts the distinct routes through the hop, `total_routes` all routes. The
// **redundancy degree** is the number of edge-disjoint routes: the maximum flow from the
// upstream to the downstream head with capacity 1 per head pair (writer → reader, all sides
// and roles of a pair count as one edge: silencing what one head sends another cuts them all).
// `circuit-atlas query alternative_routes` and `atlas.ask.lookups.alternative_routes()` compute it
// with networkx from these rows; a hop with `routes = total_routes` is a bottleneck.
//
// How it runs: the same seeks and one pattern per hop count as `paths` (its "How it runs": every
// predicate, role consistency and a layer window per intermediate head included, tested on the hop
// that binds it; the longer branches joined on their middle head), then one row per relationship on
// any route. Measured with the example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE, same
// server and data): 56,305 db hits, 532,520 for the single quantified path pattern it replaced;
// with the SmolLM2 parameters on a 256-prompt SmolLM2-135M run: 19,420 db hits, 1,028,217 before.
// Up to 6 hops on SmolLM2: 134,961 db hits (1,043,049 before), without role consistency 225,512
// (1,028,502). p50 / p95 in docs/performance.md. As for `paths`, the cost follows the number of
// routes.
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
WITH collect(c) AS routes
UNWIND routes AS route
UNWIND route AS hop
WITH hop, count(*) AS through, size(routes) AS total_routes
RETURN hop.writer AS writer, hop.head AS reader, hop.side AS side, hop.role AS role,
       hop.n_prompts AS n_prompts, hop.mean_weight AS mean_weight, through AS routes,
       total_routes
ORDER BY routes DESC, n_prompts DESC, writer, reader, side, role
