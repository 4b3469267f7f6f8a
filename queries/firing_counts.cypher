// name: firing_counts
// purpose: How often every head fires at every (dest_role → src_role) pair, and its mean |S|.
// param: run_id string — the run
// returns: layer int, head int, dest_role string, src_role string, firings int, prompts int,
//   mean_n_svs float
// example: {"run_id": "gpt2-sad-256"}
// example-toy: {"run_id": "toy-ioi-run"}
//
// One row per head and role pair (positions without an IOI role show as `'other'`);
// `prompts` counts distinct prompts, `mean_n_svs` is the mean sparse-set size |S|. The
// heatmap of `circuit-atlas report` is drawn from it.
//
// How it runs: a seek of the run's `FiringCount` nodes (index `FiringCount(run_id)`), the per-run
// aggregate `complete_run` computes from the stored firings (one node per head and role pair; a
// run not complete shows its firings as of its last aggregation, and `load` aggregates a partial
// run too). Measured with the example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE):
// 4,425 db hits (829,627 when every firing was read and grouped here); p50 / p95 in
// docs/performance.md.
MATCH (c:FiringCount {run_id: $run_id})
RETURN c.layer AS layer, c.head AS head, c.dest_role AS dest_role, c.src_role AS src_role,
       c.firings AS firings, c.prompts AS prompts, c.mean_n_svs AS mean_n_svs
ORDER BY layer, head, firings DESC
