// name: shared_features
// purpose: The features a head uses that other heads read too (ALIGNED singular vectors), and the writers that broadcast each feature into both.
// param: run_id string — the run
// param: layer int — the head's layer
// param: head int — the head's index in its layer
// param: dest_role string? = "END" — only the head's firings with this query role (null: all)
// param: src_role string? = "IO" — only the head's firings with this key role (null: all)
// param: min_share float = 0.3 — the head's vectors in at least this share of those firings' sparse sets
// param: min_cos float = 0.5 — the least |cos| of an ALIGNED pair shown (stored pairs have at least the ingest threshold)
// param: limit int = 50 — at most this many rows
// returns: index int, side string, firings int, share float, partner string, partner_index int,
//   partner_side string, cos float, partner_firings int, broadcast_writers list<string>,
//   writers int, partner_writers int
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO", "min_share": 0.3, "min_cos": 0.5, "limit": 50}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "min_share": 0.3, "min_cos": 0.5, "limit": 50}
//
// A *feature* is a residual-stream direction. Singular vector `index` of the head is used on
// `side` (`q`: u_k, read at the destination; `k`: v_k, read at the source); its ALIGNED
// `partner` (vector `partner_index` of another head, on `partner_side`) reads almost the same
// direction (`cos` = |cosine| of the residual parts, computed from the weights at ingest).
// `partner_firings` counts the partner head's firings in the run whose sparse set contains
// that vector: 0 means the direction is shared in the weights but not used on these prompts.
// `broadcast_writers` are the writers whose WRITES edges credit them with a positive part
// through the feature into *both* heads (`writers` / `partner_writers`: how many write it into
// each): one write into the residual stream, read by several heads, i.e. a broadcast.
//
// How it runs: seek of `Firing(run_id, layer, head)`, USES to the head's singular vectors,
// ALIGNED (a handful per vector), then per partner vector its USES from the run's firings
// (filtered by `run_id`) and their WRITES; aggregation bounded by the head's firings.
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head})
WHERE ($dest_role IS NULL OR f.dest_role = $dest_role)
  AND ($src_role IS NULL OR f.src_role = $src_role)
WITH collect(f) AS firings
UNWIND firings AS f
MATCH (f)-[u:USES]->(sv:SingularVector)
WITH size(firings) AS n, sv, collect({firing: f, rank: u.rank}) AS uses
WHERE size(uses) >= $min_share * n
MATCH (sv)-[al:ALIGNED]-(other:SingularVector)
WHERE al.cos >= $min_cos
WITH n, sv, uses, al, other, startNode(al) = sv AS forward
WITH n, sv, uses, al, other, CASE WHEN forward THEN al.side_a ELSE al.side_b END AS side,
     CASE WHEN forward THEN al.side_b ELSE al.side_a END AS other_side
CALL (uses, side) {
  UNWIND uses AS use
  WITH use.firing AS f, use.rank AS rank
  MATCH (w:Component)-[e:WRITES]->(f)
  WHERE e.side = side AND e.parts[rank] > 0
  RETURN collect(DISTINCT w.id) AS here
}
CALL (other, other_side) {
  MATCH (g:Firing)-[u2:USES]->(other)
  WHERE g.run_id = $run_id
  OPTIONAL MATCH (w2:Component)-[e2:WRITES]->(g)
  WHERE e2.side = other_side AND e2.parts[u2.rank] > 0
  RETURN count(DISTINCT g) AS other_firings, collect(DISTINCT w2.id) AS there
}
RETURN sv.index AS index, side, size(uses) AS firings, toFloat(size(uses)) / n AS share,
       toString(other.layer) + '.' + toString(other.head) AS partner,
       other.index AS partner_index, other_side AS partner_side, al.cos AS cos,
       other_firings AS partner_firings, [w IN here WHERE w IN there] AS broadcast_writers,
       size(here) AS writers, size(there) AS partner_writers
ORDER BY partner_firings > 0 DESC, size(broadcast_writers) DESC, cos DESC, index, side
LIMIT $limit
