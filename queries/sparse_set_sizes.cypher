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
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, f.n_svs AS n_svs, count(*) AS firings
ORDER BY layer, head, n_svs
