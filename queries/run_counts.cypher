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
// provenance.
//
// How it runs: on a complete run, the firings, USES and WRITES are the sums of its `FiringCount`
// nodes (index `FiringCount(run_id)`, the per-run aggregate `complete_run` computes from the stored
// rows); on a run still running, failed or not yet aggregated they are counted live (an index
// seek of the run's firings and each firing's degree: seconds on large runs). Prompts are the
// Run's degree, COMMUNICATES the relationship index `COMMUNICATES(run_id)`. Measured with the
// example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 3,785 db hits (2,583,991
// when counted live); p50 / p95 in docs/performance.md.
MATCH (r:Run {id: $run_id})
OPTIONAL MATCH (c:FiringCount {run_id: $run_id})
WITH r, r.status = 'complete' AND r.aggregates_version IS NOT NULL AS aggregated,
     sum(c.firings) AS firings, sum(c.uses) AS uses, sum(c.writes) AS writes
RETURN COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       CASE WHEN aggregated THEN firings
            ELSE COUNT { MATCH (:Firing {run_id: $run_id}) } END AS firings,
       CASE WHEN aggregated THEN uses
            ELSE COUNT { MATCH (:Firing {run_id: $run_id})-[:USES]->() } END AS sparse_set_uses,
       CASE WHEN aggregated THEN writes
            ELSE COUNT { MATCH (:Firing {run_id: $run_id})<-[:WRITES]-() } END AS writes,
       COUNT { MATCH ()-[:COMMUNICATES {run_id: $run_id}]->() } AS communicates,
       COUNT { MATCH (:Validation {run_id: $run_id}) } AS validations
