// name: sparse_set_sizes
// purpose: The distribution of the signal dimensionality |S| per head (a histogram).
// param: run_id string — the run
// returns: layer int, head int, n_svs int, firings int
// example: {"run_id": "gpt2-sad-256"}
// example-toy: {"run_id": "toy-ioi-run"}
//
// One row per head and sparse-set size: how many of the head's firings need that many
// singular vectors to explain their score (SAD's figure of signal dimensionality; `report`
// draws it as one box per head, heads ordered by layer).
//
// How it runs: a seek of the run's `SparseSetCount` nodes (index `SparseSetCount(run_id)`), the
// per-run aggregate `complete_run` computes from the stored firings (one node per head and |S|).
// Measured with the example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 856
// db hits (474,073 when every firing was read and grouped here); p50 / p95 in
// docs/performance.md.
MATCH (c:SparseSetCount {run_id: $run_id})
RETURN c.layer AS layer, c.head AS head, c.n_svs AS n_svs, c.firings AS firings
ORDER BY layer, head, n_svs
