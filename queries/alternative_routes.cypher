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
// How it runs: the same seeks and quantified path pattern as `paths` (with its writer-layer and
// reader-layer pruning), then one row per relationship on any route. Measured with the example-toy
// parameters on a 1,024-prompt toy-ioi run (PROFILE, same server and data): 454,264 db hits (without
// the writer-layer pruning 449,653 or 780,616, depending on whether the planner expanded from the
// source or from the target; 645,337 before the target-layer pruning); p50 / p95 in
// docs/performance.md. As for `paths`, the cost follows the number of candidate routes.
MATCH (r:Run {id: $run_id})
WITH r.model_id AS model, toString($from_layer) + '.' + toString($from_head) AS from_id,
     toString($to_layer) + '.' + toString($to_head) AS to_id
MATCH (a:Component {model_id: model, id: from_id})
MATCH (b:Component {model_id: model, id: to_id})
MATCH p = (a) ((w:Component)-[c:COMMUNICATES]->(x:Component)
               WHERE c.run_id = $run_id AND c.n_prompts >= $min_prompts
                 AND (w.layer > $from_layer OR w = a)
                 AND (x.layer < $to_layer OR x = b)){1,6} (b)
WHERE size(c) <= $max_hops
  AND (NOT $consistent
       OR all(i IN range(0, size(c) - 2) WHERE c[i].side = 'k' OR c[i + 1].role = c[i].role))
WITH collect(c) AS routes
UNWIND routes AS route
UNWIND route AS hop
WITH hop, count(*) AS through, size(routes) AS total_routes
RETURN hop.writer AS writer, hop.head AS reader, hop.side AS side, hop.role AS role,
       hop.n_prompts AS n_prompts, hop.mean_weight AS mean_weight, through AS routes,
       total_routes
ORDER BY routes DESC, n_prompts DESC, writer, reader, side, role
