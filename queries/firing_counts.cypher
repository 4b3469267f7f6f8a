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
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, coalesce(f.dest_role, 'other') AS dest_role,
       coalesce(f.src_role, 'other') AS src_role, count(*) AS firings,
       count(DISTINCT f.prompt) AS prompts, avg(f.n_svs) AS mean_n_svs
ORDER BY layer, head, firings DESC
