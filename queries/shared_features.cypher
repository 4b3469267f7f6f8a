// name: shared_features
// purpose: The features a head uses that other heads read too (ALIGNED singular vectors), and the writers that broadcast each feature into both.
// methods: sad
// param: run_id string — the run
// param: layer int[0..] — the head's layer
// param: head int[0..] — the head's index in its layer
// param: dest_role string? = "END" — only the head's firings with this query role (null: all)
// param: src_role string? = "IO" — only the head's firings with this key role (null: all)
// param: min_share float[0..1] = 0.3 — the head's vectors in at least this share of those firings' sparse sets
// param: min_cos float[0..1] = 0.5 — the least |cos| of an ALIGNED pair shown (stored pairs have at least the ingest threshold)
// param: limit int[1..] = 50 — at most this many rows
// returns: index int, side string, firings int, share float, partner string, partner_index int,
//   partner_side string, cos float, partner_firings int, broadcast_writers list<string>,
//   writers int
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO", "min_share": 0.3, "min_cos": 0.5, "limit": 50}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "min_share": 0.3, "min_cos": 0.5, "limit": 50}
//
// A *feature* is a residual-stream direction. Singular vector `index` of the head is used on
// `side` (`q`: u_k, read at the destination; `k`: v_k, read at the source) in `firings` of the
// head's firings (`share` of them); its ALIGNED `partner` (vector `partner_index` of another
// head, on `partner_side`) reads almost the same direction (`cos` = |cosine| of the residual
// parts, from the weights at ingest). `writers` counts the heads credited with a positive part
// through the feature into this head (WRITES.parts). A **broadcast** is one write read by both:
// the same writer, prompt and position, feeding the feature into this head and into a firing of
// the partner that reads it there through the partner vector (positive part as well).
// `broadcast_writers` lists those writers and `partner_firings` counts the partner firings that
// read such a shared write; 0 means the direction is shared in the weights but the partner
// does not read the same writes on these prompts.
//
// How it runs: on the per-run broadcast aggregate `aggregate_run` computes when a SAD run
// completes (`ingest`, `load`, `load --bulk`, `db init`; recomputed when the model's ALIGNED pairs
// are replaced), kept per role filter (each role, or absent for any role): one `FeatureUse` node
// (index `FeatureUse(run_id, layer, head)`: the filter's firings, and per vector the firings
// using it), then per kept vector its ALIGNED pairs (a handful) and, per pair, one seek each of
// its `FeatureWriters` node (index on `(run_id, layer, head, index, side)`) and its `Broadcast`
// node (index on the pair's whole key), the role filter checked on the few nodes each seek
// finds. A run not complete shows its broadcasts as of its last aggregation. Measured with the
// example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 6,535 db hits (1,296,247 when
// it sought each aligned pair's partner firings per written site and read their USES and
// WRITES); p50 / p95 6 / 9 ms against 911 / 1,191 ms before (same session, one unmeasured run
// then 20; `time_templates`: 12 / 23 ms), load ≈ 4–5 on 2 shared cores. SmolLM2-135M, 256
// prompts, 24.4 END→IO: 256 db hits (27,854 before), 1.5 / 5.4 ms (before 21 / 43 ms).
MATCH (c:FeatureUse {run_id: $run_id, layer: $layer, head: $head})
WHERE coalesce(c.dest_role = $dest_role, c.dest_role IS NULL AND $dest_role IS NULL)
  AND coalesce(c.src_role = $src_role, c.src_role IS NULL AND $src_role IS NULL)
UNWIND range(0, size(c.indices) - 1) AS i
WITH c.firings AS n, c.indices[i] AS index, c.uses[i] AS firings
WHERE firings >= $min_share * n
MATCH (r:Run {id: $run_id})
MATCH (sv:SingularVector {model_id: r.model_id, layer: $layer, head: $head, index: index})
MATCH (sv)-[al:ALIGNED]-(other:SingularVector)
WHERE al.cos >= $min_cos
WITH n, index, firings, al, other, startNode(al) = sv AS forward
WITH n, index, firings, al, other, CASE WHEN forward THEN al.side_a ELSE al.side_b END AS side,
     CASE WHEN forward THEN al.side_b ELSE al.side_a END AS other_side
OPTIONAL MATCH (x:FeatureWriters {run_id: $run_id, layer: $layer, head: $head, index: index,
                                  side: side})
WHERE coalesce(x.dest_role = $dest_role, x.dest_role IS NULL AND $dest_role IS NULL)
  AND coalesce(x.src_role = $src_role, x.src_role IS NULL AND $src_role IS NULL)
OPTIONAL MATCH (b:Broadcast {run_id: $run_id, layer: $layer, head: $head, index: index,
                             side: side, partner_layer: other.layer, partner_head: other.head,
                             partner_index: other.index, partner_side: other_side})
WHERE coalesce(b.dest_role = $dest_role, b.dest_role IS NULL AND $dest_role IS NULL)
  AND coalesce(b.src_role = $src_role, b.src_role IS NULL AND $src_role IS NULL)
RETURN index, side, firings, toFloat(firings) / n AS share,
       toString(other.layer) + '.' + toString(other.head) AS partner,
       other.index AS partner_index, other_side AS partner_side, al.cos AS cos,
       coalesce(b.partner_firings, 0) AS partner_firings,
       coalesce(b.writers, []) AS broadcast_writers, size(coalesce(x.writers, [])) AS writers
ORDER BY partner_firings DESC, cos DESC, index, side, partner, partner_index, partner_side
LIMIT $limit
