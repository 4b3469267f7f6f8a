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
// first: otherwise the planner scans the Component label), then a quantified path pattern, planned
// as a Repeat(Trail) from the upstream head whose inner predicates prune during expansion: run and
// support, a reader below the target's layer or the target itself (a head of the target's layer
// cannot write into it), and a writer above the source's layer or the source itself (a writer is
// always in an earlier layer than its reader, so a writer at or below the source's layer can never
// be reached from it). The length bound `{1,6}` is a literal (Cypher does not take a parameter
// there) and `$max_hops` filters below it. Measured with the example-toy parameters on a 1,024-prompt
// toy-ioi run (PROFILE, same server and data): 502,160 db hits (828,584 without the writer-layer
// pruning, when the planner expanded backwards from the target; 660,433 before the target-layer
// pruning); p50 / p95 in docs/performance.md. Still above the 100 ms target on a loaded machine:
// parallel relationships (other side or role) multiply the candidate trails (22.6k expanded here
// for 3.5k role-consistent routes to the target), and role consistency compares consecutive hops,
// which a QPP cannot test inside the pattern, so it filters after expansion (a reduce over levels
// that tested it while
// expanding read each reader's relationships once per route and cost more: 867,836). Cost grows
// with the number of candidate routes: ask with a support floor.
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
WITH p, c, reduce(low = c[0].n_prompts, hop IN c | CASE WHEN hop.n_prompts < low
                                                       THEN hop.n_prompts ELSE low END) AS weakest
WITH p, c, weakest, [n IN nodes(p) | n.id] AS heads
RETURN reduce(text = heads[0], i IN range(0, size(c) - 1) |
         text + ' -' + c[i].side + '@' + c[i].role + '→ ' + heads[i + 1]) AS route,
       size(c) AS hops, weakest AS min_prompts, heads,
       [hop IN c | hop.side] AS sides, [hop IN c | hop.role] AS roles,
       [hop IN c | hop.n_prompts] AS prompts, [hop IN c | hop.mean_weight] AS mean_weights
ORDER BY min_prompts DESC, hops, route
LIMIT $limit
