// name: patch_edges
// purpose: A run's patching circuit: its PATCH_EDGE edges by rank, the top k or above a |score|.
// param: run_id string — the run
// param: method string = "eap" — "eap", "eap-ig" or "path" (as `circuit-atlas patch` ran it)
// param: metric string = "logit-diff" — the metric the scores change
// param: top_k int? = null — only the k edges of largest |score|, or null for all
// param: threshold float? = null — only edges with |score| at least this, or null for all
// returns: writer string, reader string, side string, score float, rank int, n_prompts int,
//   writer_kind string, reader_kind string
// example: {"run_id": "gpt2-sad-256", "method": "eap", "metric": "logit-diff", "top_k": 50, "threshold": null}
// example-toy: {"run_id": "toy-ioi-run", "method": "eap", "metric": "logit-diff", "top_k": 50, "threshold": null}
//
// `circuit-atlas patch` writes one `(:Component)-[:PATCH_EDGE]->(:Component)` per edge of the
// component graph: writers `embed`, heads `l.h` and `mlp<l>`; readers a head's `q`, `k` or `v`
// input, an MLP's input (`in`) or the unembedding (`logit`, `in`). `score` is the change of
// the metric when the edge carries its clean value instead of its ABC-corrupted one (mean over
// prompts, summed over positions); rank 1 is the largest |score|. Both limits apply together.
MATCH (w:Component)-[e:PATCH_EDGE {run_id: $run_id, method: $method, metric: $metric}]->(r:Component)
WHERE e.rank <= coalesce($top_k, 9223372036854775807) // a seek of PATCH_EDGE(run_id, method,
  // metric, rank) to the top ranks (no hint: a database not yet at schema 5 scans instead)
  AND ($threshold IS NULL OR e.abs_score >= $threshold)
RETURN e.writer AS writer, e.reader AS reader, e.side AS side, e.score AS score, e.rank AS rank,
       e.n_prompts AS n_prompts, w.kind AS writer_kind, r.kind AS reader_kind
ORDER BY rank
