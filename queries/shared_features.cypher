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
// How it runs: seek of `Firing(run_id, layer, head)` (roles checked on the firing: either may be
// null here, and the role-pair index leaves out firings without a role), USES to the head's
// singular vectors; once per kept vector, the WRITES with a positive part into its firings, grouped
// by side and by written *site* (prompt, position) with the site's writers. Then ALIGNED (a handful
// per vector) and, per aligned pair and site, one exact seek of the partner's firings at the site:
// a query-side partner by the unique firing index prefix `(run_id, prompt, layer, head, dest)`, a
// key-side partner by `Firing(run_id, prompt, layer, head, src)` (only the branch of the partner's
// side runs: the other unwinds an empty list); kept where the partner uses the partner vector
// (Expand(Into) on USES) and has a WRITES at the site from one of the site's writers with a
// positive part. Measured with the example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE):
// 1,296,247 db hits (1,694,293 when a key-side site sought every partner firing of the prompt and
// filtered on `src`; 4,531,551 when the partner's firings were sought once per write); p50 728 ms,
// p95 803 ms over 20 warm runs (before, same session: 1016 / 1216 ms) (load ≈ 2–3, 2 shared cores).
// Still above the 100 ms target: the seeks are exact now (47k partner firings for 32 aligned pairs
// × ~740 sites), but each is checked for the partner vector (440k db hits in Expand(Into) on USES)
// and its 130k WRITES are read (540k db hits). Only a stored per-run aggregate of the broadcasts
// (computed at run completion) would make it fast.
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head})
WHERE ($dest_role IS NULL OR f.dest_role = $dest_role)
  AND ($src_role IS NULL OR f.src_role = $src_role)
WITH collect(f) AS firings
UNWIND firings AS f
MATCH (f)-[u:USES]->(sv:SingularVector)
WITH size(firings) AS n, sv, collect({firing: f, rank: u.rank}) AS uses
WHERE size(uses) >= $min_share * n
// Once per vector: the writes with a positive part through it, grouped by side and by the
// written site (prompt, position), each site with its writers.
CALL (uses) {
  UNWIND uses AS use
  WITH use.firing AS f, use.rank AS rank
  MATCH (w:Component)-[e:WRITES]->(f)
  WHERE e.parts[rank] > 0
  WITH e.side AS side, f.prompt AS prompt, e.pos AS pos, collect(DISTINCT w) AS ws
  WITH side, collect({prompt: prompt, pos: pos, ws: ws}) AS sites
  RETURN collect({side: side, sites: sites}) AS written
}
MATCH (sv)-[al:ALIGNED]-(other:SingularVector)
WHERE al.cos >= $min_cos
WITH n, sv, uses, written, al, other, startNode(al) = sv AS forward
WITH n, sv, uses, al, other, CASE WHEN forward THEN al.side_a ELSE al.side_b END AS side,
     CASE WHEN forward THEN al.side_b ELSE al.side_a END AS other_side, written
WITH n, sv, uses, al, other, side, other_side,
     coalesce([x IN written WHERE x.side = side][0].sites, []) AS sites
// Per aligned pair: one seek of the partner's firings per written site (not per write), kept
// when the partner fires at the site on its side and reads the same writer's write there
// through the partner vector.
CALL (sites, other, other_side) {
  UNWIND sites AS site
  CALL (site, other, other_side) { // the partner's firings at the site, by one exact seek
    UNWIND CASE other_side WHEN 'q' THEN [site] ELSE [] END AS q // no row, no seek, otherwise
    MATCH (g:Firing {run_id: $run_id, prompt: q.prompt, layer: other.layer, head: other.head,
                     dest: q.pos})
    USING INDEX g:Firing(run_id, prompt, layer, head, dest, src)
    WHERE g.src IS NOT NULL // the unique firing index, by its prefix
    RETURN g
    UNION ALL
    UNWIND CASE other_side WHEN 'k' THEN [site] ELSE [] END AS k
    MATCH (g:Firing {run_id: $run_id, prompt: k.prompt, layer: other.layer, head: other.head,
                     src: k.pos})
    USING INDEX g:Firing(run_id, prompt, layer, head, src)
    RETURN g
  }
  MATCH (g)-[u2:USES]->(other)
  MATCH (w:Component)-[e2:WRITES]->(g)
  WHERE e2.side = other_side AND e2.pos = site.pos AND e2.parts[u2.rank] > 0 AND w IN site.ws
  WITH DISTINCT g, w.id AS writer
  ORDER BY writer
  RETURN count(DISTINCT g) AS shared, collect(DISTINCT writer) AS broadcast
}
RETURN sv.index AS index, side, size(uses) AS firings, toFloat(size(uses)) / n AS share,
       toString(other.layer) + '.' + toString(other.head) AS partner,
       other.index AS partner_index, other_side AS partner_side, al.cos AS cos,
       shared AS partner_firings, broadcast AS broadcast_writers,
       COUNT { UNWIND sites AS site UNWIND site.ws AS w RETURN DISTINCT w } AS writers
ORDER BY partner_firings DESC, cos DESC, index, side, partner, partner_index
LIMIT $limit
