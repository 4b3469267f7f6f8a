// name: run_counts
// purpose: How much a run holds: prompts, firings, sparse-set uses, WRITES, COMMUNICATES, validations.
// param: run_id string — the run
// returns: prompts int, firings int, sparse_set_uses int, writes int, communicates int,
//   validations int
// example: {"run_id": "gpt2-sad-256"}
// example-toy: {"run_id": "toy-ioi-run"}
//
// One row (none for an unknown run). `sparse_set_uses` counts the firings' USES relationships
// (the sum of every firing's |S|), `writes` the per-prompt WRITES edges into the run's firings,
// `communicates` the aggregated COMMUNICATES edges, `validations` the stored intervention
// results of `circuit-atlas validate`. `circuit-atlas runs show` prints it beside the run's
// provenance. Counting the relationships of each firing reads its degree store (no expansion).
MATCH (r:Run {id: $run_id})
RETURN COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       COUNT { MATCH (:Firing {run_id: $run_id}) } AS firings,
       COUNT { MATCH (:Firing {run_id: $run_id})-[:USES]->() } AS sparse_set_uses,
       COUNT { MATCH (:Firing {run_id: $run_id})<-[:WRITES]-() } AS writes,
       COUNT { MATCH ()-[:COMMUNICATES {run_id: $run_id}]->() } AS communicates,
       COUNT { MATCH (:Validation {run_id: $run_id}) } AS validations
