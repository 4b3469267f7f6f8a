"""The Cypher text of every write and run-lifecycle statement the store sends.

Text only: :mod:`atlas.store.store` and :mod:`atlas.store.runs` send these, with the parameters
:mod:`atlas.store.rows` and :mod:`atlas.store.columns` build. Each ``UNWIND $rows`` writer
returns ``written``, the count of rows it wrote, which the store checks against the rows sent.
The analysts' read templates are elsewhere, in ``queries/``.
"""

MERGE_MODEL = """
MERGE (m:Model {id: $row.id})
SET m.n_layers = $row.n_layers, m.n_heads = $row.n_heads,
    m.d_model = $row.d_model, m.d_head = $row.d_head
"""

MERGE_RUN = """
MERGE (m:Model {id: $row.model_id})
MERGE (r:Run {id: $row.id})
ON CREATE SET r.created_at = $row.created_at
SET r.model_id = $row.model_id, r.model_revision = $row.model_revision, r.method = $row.method,
    r.params = $row.params, r.dataset = $row.dataset, r.versions = $row.versions,
    r.git_commit = $row.git_commit, r.status = $row.status,
    r.schema_version = $row.schema_version
MERGE (r)-[:OF_MODEL]->(m)
"""

# The process writing the run (atlas.store.liveness), so that readers can tell a dead one.
SET_RUN_WRITER = """
MATCH (r:Run {id: $run_id})
SET r.writer = $writer
"""

SET_RUN_STATUS = """
MATCH (r:Run {id: $run_id})
SET r.status = $status, r.finished_at = datetime(), r.error = $error
RETURN r.id AS id
"""

# Imported runs are left out: they have no WRITES to re-ingest and cannot be rewritten.
STALE_RUNS = """
MATCH (r:Run) WHERE coalesce(r.schema_version, 1) < $version AND NOT coalesce(r.read_only, false)
RETURN r.id AS id, coalesce(r.schema_version, 1) AS version ORDER BY id
"""

RUN_MODEL = "MATCH (r:Run {id: $run_id}) RETURN r.model_id AS model_id"

RUN_MODEL_SHAPE = """
MATCH (r:Run {id: $run_id})
OPTIONAL MATCH (r)-[:OF_MODEL]->(m:Model)
RETURN r.model_id AS model_id, m.n_layers AS n_layers, m.n_heads AS n_heads,
       CASE WHEN 'acc' IN [r.method, r.source_format] THEN 'acc' ELSE 'sad' END AS method
"""

WRITE_COMPONENTS = """
UNWIND $rows AS row
MERGE (c:Component {model_id: row.model_id, id: row.id})
SET c.kind = row.kind, c.layer = row.layer, c.head = row.head,
    c.ioi_class = coalesce(row.ioi_class, c.ioi_class)
FOREACH (_ IN CASE WHEN row.kind = 'head' THEN [1] ELSE [] END | SET c:Head)
SET c:$(row.labels)
RETURN count(c) AS written
"""

WRITE_SINGULAR_VECTORS = """
UNWIND $rows AS row
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MERGE (sv:SingularVector {model_id: row.model_id, layer: row.layer, head: row.head,
                          index: row.index})
SET sv.sigma = row.sigma,
    sv.caption = 'v' + row.index + ' σ' + toString(round(row.sigma, 2)) // Browser style caption
MERGE (h)-[:HAS_SV]->(sv)
RETURN count(sv) AS written
"""

WRITE_ALIGNED = """
UNWIND $rows AS row
MATCH (a:SingularVector {model_id: row.model_id, layer: row.a[0], head: row.a[1],
                         index: row.a[2]})
MATCH (b:SingularVector {model_id: row.model_id, layer: row.b[0], head: row.b[1],
                         index: row.b[2]})
MERGE (a)-[r:ALIGNED {side_a: row.side_a, side_b: row.side_b}]->(b)
SET r.model_id = row.model_id, r.cos = row.cos
RETURN count(r) AS written
"""

ALIGNED_PARAMS = "MATCH (m:Model {id: $model_id}) RETURN properties(m)['aligned_params'] AS params"

# The model's ALIGNED edges, dropped before a recomputation with other parameters.
DELETE_ALIGNED = """
MATCH (:SingularVector {model_id: $model_id})-[r:ALIGNED]->()
DELETE r
"""

SET_ALIGNED_PARAMS = "MATCH (m:Model {id: $model_id}) SET m.aligned_params = $params"

WRITE_PROMPTS = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
MERGE (p:Prompt {run_id: row.run_id, idx: row.idx})
SET p.text = row.text, p.template = row.template, p.order = row.order, p.io = row.io,
    p.s = row.s, p.roles = row.roles, p.tokens = row.tokens, p.logit_diff = row.logit_diff
MERGE (r)-[:HAS_PROMPT]->(p)
RETURN count(p) AS written
"""

WRITE_FIRINGS = """
UNWIND $rows AS row
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MATCH (p:Prompt {run_id: row.run_id, idx: row.prompt})
MERGE (f:Firing {run_id: row.run_id, prompt: row.prompt, layer: row.layer, head: row.head,
                 dest: row.dest, src: row.src})
SET f.dest_role = row.dest_role, f.src_role = row.src_role, f.attn = row.attn,
    f.score = row.score, f.n_svs = row.n_svs, f.method = row.method,
    f.query_bias = row.query_bias, f.dest_total = row.dest_total, f.n_svs_dest = row.n_svs_dest,
    f.sparse_dest = row.sparse_dest, f.sparse_source = row.sparse_source,
    f.seed_weight = row.seed_weight
MERGE (f)-[:OF_HEAD]->(h)
MERGE (f)-[:IN_PROMPT]->(p)
WITH f, row
CALL (f, row) {
  UNWIND row.sparse_set AS term
  MERGE (sv:SingularVector {model_id: row.model_id, layer: row.layer, head: row.head,
                            index: term.index})
  MERGE (f)-[u:USES]->(sv)
  SET u.rank = term.rank, u.term = term.term, u.sign = term.sign
}
RETURN count(f) AS written
"""

WRITE_EDGES = """
UNWIND $rows AS row
MATCH (f:Firing {run_id: row.run_id, prompt: row.prompt, layer: row.layer, head: row.head,
                 dest: row.dest, src: row.src})
USING INDEX f:Firing(run_id, prompt, layer, head, dest, src)
MATCH (w:Component {model_id: row.model_id, id: row.writer_id})
// an ACC head writes through one source token: (writer, firing, side, writer_pos) is its key
FOREACH (_ IN CASE WHEN row.writer_pos IS NULL THEN [1] ELSE [] END |
  MERGE (w)-[e:WRITES {side: row.side}]->(f)
  SET e.weight = row.weight, e.pos = row.pos, e.role = row.role, e.parts = row.parts)
FOREACH (_ IN CASE WHEN row.writer_pos IS NULL THEN [] ELSE [1] END |
  MERGE (w)-[e:WRITES {side: row.side, writer_pos: row.writer_pos}]->(f)
  SET e.weight = row.weight, e.pos = row.pos, e.role = row.role, e.parts = row.parts,
      e.writer_role = row.writer_role)
RETURN count(*) AS written
"""

WRITE_COMMUNICATES = """
UNWIND $rows AS row
MATCH (w:Component {model_id: row.model_id, id: row.writer_id})
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MERGE (w)-[c:COMMUNICATES {run_id: row.run_id, writer: w.id, head: h.id, side: row.side,
                           role: row.role}]->(h)
SET c.n_prompts = row.n_prompts, c.mean_weight = row.mean_weight
SET c += coalesce(row.source, {}) // an imported run's own fields (atlas.interchange.graphml)
RETURN count(c) AS written
"""

CREATE_PROMPTS = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
CREATE (p:Prompt {run_id: row.run_id, idx: row.idx, text: row.text, template: row.template,
                  order: row.order, io: row.io, s: row.s, roles: row.roles, tokens: row.tokens,
                  logit_diff: row.logit_diff})
CREATE (r)-[:HAS_PROMPT]->(p)
RETURN count(p) AS written
"""

# Columnar: `$firings`, `$uses` and `$edges` are maps of equally long lists, one entry per
# firing, sparse-set term and edge (lists of primitives pack and unpack far faster than one map
# per row). A firing's terms are `$uses` entries `uses_from[i] .. uses_from[i + 1] - 1`, its
# edges likewise by `edges_from`. `*_ref` are positions in the lists $components,
# $singular_vectors and $prompts of the nodes linked; a missing node shortens its list, and then
# nothing is written (count check).
CREATE_FIRINGS = """
CALL () {
  UNWIND $components AS id
  MATCH (c:Component {model_id: $model_id, id: id})
  RETURN collect(c) AS components
}
CALL () {
  UNWIND $singular_vectors AS key
  MATCH (sv:SingularVector {model_id: $model_id, layer: key[0], head: key[1], index: key[2]})
  RETURN collect(sv) AS vectors
}
CALL () {
  UNWIND $prompts AS idx
  MATCH (p:Prompt {run_id: $run_id, idx: idx})
  RETURN collect(p) AS prompts
}
WITH components, vectors, prompts
WHERE size(components) = size($components) AND size(vectors) = size($singular_vectors)
  AND size(prompts) = size($prompts)
UNWIND range(0, size($firings.layer) - 1) AS i
WITH components, vectors, i, components[$firings.head_ref[i]] AS h,
     prompts[$firings.prompt_ref[i]] AS p
CREATE (f:Firing {run_id: $run_id, prompt: $firings.prompt[i], layer: $firings.layer[i],
                  head: $firings.head[i], dest: $firings.dest[i], src: $firings.src[i],
                  dest_role: $firings.dest_role[i], src_role: $firings.src_role[i],
                  attn: $firings.attn[i], score: $firings.score[i], n_svs: $firings.n_svs[i],
                  method: $firings.method[i], query_bias: $firings.query_bias[i],
                  dest_total: $firings.dest_total[i], n_svs_dest: $firings.n_svs_dest[i],
                  sparse_dest: $firings.sparse_dest[i], sparse_source: $firings.sparse_source[i],
                  seed_weight: $firings.seed_weight[i]})
CREATE (f)-[:OF_HEAD]->(h)
CREATE (f)-[:IN_PROMPT]->(p)
WITH f, i, components, vectors
CALL (f, i, vectors) {
  UNWIND range($firings.uses_from[i], $firings.uses_from[i + 1] - 1) AS j
  WITH f, j, vectors[$uses.sv_ref[j]] AS sv
  CREATE (f)-[:USES {rank: $uses.rank[j], term: $uses.term[j], sign: $uses.sign[j]}]->(sv)
}
CALL (f, i, components) {
  UNWIND range($firings.edges_from[i], $firings.edges_from[i + 1] - 1) AS j
  WITH f, j, components[$edges.writer_ref[j]] AS w
  CREATE (w)-[:WRITES {side: $edges.side[j], weight: $edges.weight[j], pos: $edges.pos[j],
                       role: $edges.role[j], parts: $edges.parts[j],
                       writer_pos: $edges.writer_pos[j], writer_role: $edges.writer_role[j]}]->(f)
}
RETURN count(f) AS written
"""

# `load --bulk` of an ACC run: the firings' empty lists (a side not traced), which the offline
# importer cannot write (its CSV has no empty array: an empty field is no property). Auto-commit:
# bounded inner transactions; $rows: {key: [prompt, layer, head, dest, src], empty: {name: []}}.
SET_EMPTY_FIRING_LISTS = """
UNWIND $rows AS row
CALL (row) {
  MATCH (f:Firing {run_id: $run_id, prompt: row.key[0], layer: row.key[1], head: row.key[2],
                   dest: row.key[3], src: row.key[4]})
  SET f += row.empty
} IN TRANSACTIONS OF 10000 ROWS
"""

# ACC runs: the seeds' heads → the logit direction, per (head, role of END), by distinct prompts.
AGGREGATE_ANSWER = """
MATCH (f:Firing {run_id: $run_id})-[:OF_HEAD]->(h:Head)
WHERE f.seed_weight IS NOT NULL
WITH h, f.dest_role AS role, count(DISTINCT f.prompt) AS n_prompts,
     avg(f.seed_weight) AS mean_weight
MATCH (r:Run {id: $run_id})
MERGE (l:Component {model_id: r.model_id, id: 'logit_direction'})
ON CREATE SET l.kind = 'logit_direction'
MERGE (h)-[c:COMMUNICATES {run_id: $run_id, writer: h.id, head: l.id, side: 'q', role: role}]->(l)
SET c.n_prompts = n_prompts, c.mean_weight = mean_weight
RETURN count(c) AS communicates
"""

# An ACC run in the authors' combined format: per (writer node, firing roles, side), the
# prompts of every occurrence and the weights' sum; the seeds' edges into the logit direction.
ACC_GRAPH_EDGES = """
MATCH (f:Firing {run_id: $run_id})<-[e:WRITES]-(w:Component)
RETURN w.kind AS kind, w.layer AS layer, w.head AS head, e.role AS role,
       e.writer_role AS writer_role, f.layer AS f_layer, f.head AS f_head,
       f.dest_role AS dest_role, f.src_role AS src_role, e.side AS side,
       collect(f.prompt) AS prompts, sum(e.weight) AS total
UNION ALL
MATCH (f:Firing {run_id: $run_id}) WHERE f.seed_weight IS NOT NULL
RETURN 'head' AS kind, f.layer AS layer, f.head AS head, f.dest_role AS role,
       f.src_role AS writer_role, null AS f_layer, null AS f_head, f.dest_role AS dest_role,
       null AS src_role, 'q' AS side, collect(f.prompt) AS prompts, sum(f.seed_weight) AS total
"""

# ----- per-run aggregates (RunLifecycle.aggregate_run) -----------------------------------------
# Each is recomputed from the run's stored firings: its old nodes are deleted and new ones
# created in one transaction (never incremented). The read templates that count over a whole run
# (firing_counts, sparse_set_sizes, run_counts) read these few hundred nodes instead of every
# firing; shared_features reads the broadcast aggregate below instead of every partner firing.

DELETE_FIRING_COUNTS = "MATCH (n:FiringCount {run_id: $run_id}) DELETE n"

# One node per (head, dest_role, src_role) (no role: 'other'): firings, distinct prompts, mean
# |S|, and their USES and WRITES (each firing's degree, no expansion). Prompt by prompt, then
# summed: a group is in a prompt at most once, so its rows count distinct prompts, and the
# query holds the groups' sums, not each group's set of prompts.
AGGREGATE_FIRING_COUNTS = """
MATCH (p:Prompt {run_id: $run_id})
CALL (p) {
  MATCH (p)<-[:IN_PROMPT]-(f:Firing)
  RETURN f.layer AS layer, f.head AS head, coalesce(f.dest_role, 'other') AS dest_role,
         coalesce(f.src_role, 'other') AS src_role, count(*) AS firings, sum(f.n_svs) AS n_svs,
         sum(COUNT { (f)-[:USES]->() }) AS uses, sum(COUNT { (f)<-[:WRITES]-() }) AS writes
}
WITH layer, head, dest_role, src_role, sum(firings) AS firings, count(*) AS prompts,
     sum(n_svs) AS n_svs, sum(uses) AS uses, sum(writes) AS writes
CREATE (:FiringCount {run_id: $run_id, layer: layer, head: head, dest_role: dest_role,
                      src_role: src_role, firings: firings, prompts: prompts,
                      mean_n_svs: toFloat(n_svs) / firings, uses: uses, writes: writes})
RETURN count(*) AS written
"""

DELETE_SPARSE_SET_COUNTS = "MATCH (n:SparseSetCount {run_id: $run_id}) DELETE n"

# One node per (head, |S|): the head's firings whose sparse set has that size.
AGGREGATE_SPARSE_SET_COUNTS = """
MATCH (f:Firing {run_id: $run_id})
WITH f.layer AS layer, f.head AS head, f.n_svs AS n_svs, count(*) AS firings
CREATE (:SparseSetCount {run_id: $run_id, layer: layer, head: head, n_svs: n_svs,
                         firings: firings})
RETURN count(*) AS written
"""

# ----- the broadcast aggregate (read by queries/shared_features.cypher) -------------------------
# SAD runs only (the template answers for SAD runs). Every node is kept per *role filter*, the
# template's (dest_role, src_role) parameters: a role, or absent for "any role" (firings without a
# role count only there). Distinct counts do not add across role pairs, so each filter a head's
# firings can be asked with (each role pair, each role with the other open, both open) is
# counted on its own.

DELETE_FEATURE_USES = """
MATCH (n:FeatureUse {run_id: $run_id})
USING INDEX n:FeatureUse(run_id, layer, head)
WHERE n.layer IS NOT NULL AND n.head IS NOT NULL
DELETE n
"""

# One node per (head, role filter): `firings`, the head's firings under the filter, and per
# singular-vector index (`indices`, ascending), how many of them use it (`uses`). Head by head:
# each firing adds to its role pair's counts per index (-1: the firing itself), and the filters
# sum the role pairs' counts (a firing has one role pair), so the query holds one head's counts
# per role pair and index, not the run's firings.
AGGREGATE_FEATURE_USES = """
MATCH (r:Run {id: $run_id, method: 'sad'})
MATCH (h:Head {model_id: r.model_id})
CALL (h) {
  MATCH (f:Firing {run_id: $run_id, layer: h.layer, head: h.head})
  UNWIND [-1] + COLLECT { MATCH (f)-[:USES]->(sv:SingularVector) RETURN sv.index } AS index
  WITH f.dest_role AS dest_role, f.src_role AS src_role, index, count(*) AS n
  UNWIND CASE WHEN dest_role IS NULL THEN [null] ELSE [dest_role, null] END AS dest_filter
  UNWIND CASE WHEN src_role IS NULL THEN [null] ELSE [src_role, null] END AS src_filter
  WITH dest_filter, src_filter, index, sum(n) AS n
  ORDER BY index
  WITH dest_filter, src_filter, collect([index, n]) AS counts
  CREATE (:FeatureUse {run_id: $run_id, layer: h.layer, head: h.head, dest_role: dest_filter,
                       src_role: src_filter, firings: counts[0][1],
                       indices: [c IN counts[1..] | c[0]], uses: [c IN counts[1..] | c[1]]})
  RETURN count(*) AS written
}
RETURN sum(written) AS written
"""

DELETE_BROADCASTS = """
CALL {
  MATCH (n:FeatureWriters {run_id: $run_id})
  USING INDEX n:FeatureWriters(run_id, layer, head, index, side)
  WHERE n.layer IS NOT NULL AND n.head IS NOT NULL AND n.index IS NOT NULL
    AND n.side IS NOT NULL
  DELETE n
}
CALL {
  MATCH (n:Broadcast {run_id: $run_id})
  USING INDEX n:Broadcast(run_id, layer, head, index, side, partner_layer, partner_head,
                          partner_index, partner_side)
  WHERE n.layer IS NOT NULL AND n.head IS NOT NULL AND n.index IS NOT NULL
    AND n.side IS NOT NULL AND n.partner_layer IS NOT NULL AND n.partner_head IS NOT NULL
    AND n.partner_index IS NOT NULL AND n.partner_side IS NOT NULL
  DELETE n
}
"""

# A *read* is a firing f reading a write through one of its singular vectors k on a side: the
# writer w's WRITES into f on that side has a positive part through k (parts[rank of k] > 0), at
# the written site (prompt, pos). Only vector ends (k, side) with an ALIGNED partner matter. A
# *broadcast* pairs two reads of the same writer at the same site, the own read through (k, side)
# and the partner's through an ALIGNED (k', side'), where the partner firing sits at the site on
# its side (dest = pos for q, src = pos for k).
#
# Per prompt, every read with each aligned read of the same writer at its site (and with null,
# for its writer alone); then, over a part of the run's prompts at a time ($prompts_per_part by
# index), per (head, role pair, vector, side, partner end) the distinct partner firings and
# writers, and per role filter their unions; then over the parts, the partner firings' counts
# summed (a partner firing is in one prompt, so in one part) and the writers' union:
# (:FeatureWriters {writers}) per (head, role filter, vector, side): the writers of its reads;
# (:Broadcast {partner_firings, writers}) per (..., partner vector, partner side), only where
# there is a broadcast: the partner firings reading a shared write, and the writers shared.
# So the query holds one part's partner firings at a time, not the run's (in one part: toy-ioi
# 1,024 prompts 98.6 MB, SmolLM2-135M 1,024 prompts 384 MB, growing with the prompts); a part
# returns one row per writer of a key, its count on the first.
# A vector end is numbered 2 * ((layer * n_heads + head) * rank + index) + (0 for q, 1 for k),
# so that `partners_of[end]` (the ends ALIGNED with it) is a list lookup.
AGGREGATE_BROADCASTS = """
MATCH (r:Run {id: $run_id, method: 'sad'})
MATCH (sv:SingularVector {model_id: r.model_id})
WITH r, max(sv.layer) + 1 AS n_layers, max(sv.head) + 1 AS n_heads, max(sv.index) + 1 AS rank
CALL (r, n_layers, n_heads, rank) {
  UNWIND range(0, 2 * n_layers * n_heads * rank - 1) AS end
  RETURN end, null AS partner
  UNION ALL
  MATCH (a:SingularVector {model_id: r.model_id})-[al:ALIGNED]-(b:SingularVector)
  WITH a, b, startNode(al) = a AS forward, al
  WITH a, b, CASE WHEN forward THEN al.side_a ELSE al.side_b END AS side_a,
       CASE WHEN forward THEN al.side_b ELSE al.side_a END AS side_b
  RETURN 2 * ((a.layer * n_heads + a.head) * rank + a.index)
           + CASE side_a WHEN 'q' THEN 0 ELSE 1 END AS end,
         2 * ((b.layer * n_heads + b.head) * rank + b.index)
           + CASE side_b WHEN 'q' THEN 0 ELSE 1 END AS partner
}
WITH n_heads, rank, end, collect(partner) AS partners
ORDER BY end
WITH n_heads, rank, collect(partners) AS partners_of
CALL () {
  MATCH (p:Prompt {run_id: $run_id})
  WITH p.idx / $prompts_per_part AS part, collect(p) AS prompts
  RETURN collect(prompts) AS parts
}
UNWIND parts AS prompts
CALL (prompts, n_heads, rank, partners_of) {
  UNWIND prompts AS p
  CALL (p, n_heads, rank, partners_of) {
    MATCH (p)<-[:IN_PROMPT]-(f:Firing)
    // only the vectors with an ALIGNED partner on a side (most have none), and only for a
    // firing with such a vector are its WRITES read
    CALL (f, n_heads, rank, partners_of) {
      MATCH (f)-[u:USES]->(sv:SingularVector)
      WITH sv.index AS index, u.rank AS rank_in_set,
           2 * ((f.layer * n_heads + f.head) * rank + sv.index) AS end_q
      WHERE size(partners_of[end_q]) > 0 OR size(partners_of[end_q + 1]) > 0
      RETURN collect({index: index, rank_in_set: rank_in_set, end_q: end_q}) AS uses
    }
    WITH f, uses WHERE size(uses) > 0
    CALL (f) {
      MATCH (w:Component)-[e:WRITES]->(f)
      RETURN collect({writer: w.id, side: e.side, pos: e.pos, parts: e.parts}) AS writes
    }
    UNWIND uses AS use
    UNWIND writes AS write
    WITH f, use.index AS index, write,
         use.end_q + CASE write.side WHEN 'q' THEN 0 ELSE 1 END AS end
    WHERE write.parts[use.rank_in_set] > 0 AND size(partners_of[end]) > 0
    WITH write.pos AS pos, write.writer AS writer, partners_of[end] AS wanted,
         {end: end, layer: f.layer, head: f.head, dest_role: f.dest_role, src_role: f.src_role,
          index: index, side: write.side, firing: f} AS read,
         write.pos = CASE write.side WHEN 'q' THEN f.dest ELSE f.src END AS at_site
    // a hash join on (site, writer, end): each read is filed as own under the ends it wants
    // (and under null, for its writer), and as a partner under its own end if at the site
    UNWIND [{key: null, own: read}] + [end IN wanted | {key: end, own: read}]
           + CASE WHEN at_site THEN [{key: read.end, partner: read}] ELSE [] END AS entry
    WITH pos, writer, entry.key AS key, collect(entry.own) AS owns,
         collect(entry.partner) AS partners
    WHERE key IS NULL OR size(partners) > 0
    UNWIND owns AS own
    UNWIND CASE WHEN key IS NULL THEN [null] ELSE partners END AS partner
    RETURN own, partner.end AS partner_end, partner.firing AS partner_firing, writer
  }
  WITH own.layer AS layer, own.head AS head, own.index AS index, own.side AS side, partner_end,
       own.dest_role AS dest_role, own.src_role AS src_role,
       collect(DISTINCT partner_firing) AS partner_firings, collect(DISTINCT writer) AS writers
  WITH layer, head, index, side, partner_end,
       collect({dest_role: dest_role, src_role: src_role, partner_firings: partner_firings,
                writers: writers}) AS pairs
  CALL (pairs) {
    UNWIND pairs AS pair
    UNWIND CASE WHEN pair.dest_role IS NULL THEN [null] ELSE [pair.dest_role, null] END
      AS dest_role
    UNWIND CASE WHEN pair.src_role IS NULL THEN [null] ELSE [pair.src_role, null] END
      AS src_role
    WITH dest_role, src_role, collect(pair.partner_firings) AS firing_lists,
         collect(pair.writers) AS writer_lists
    RETURN dest_role, src_role,
           COUNT { UNWIND firing_lists AS firings UNWIND firings AS g RETURN DISTINCT g }
             AS partner_firings,
           COLLECT { UNWIND writer_lists AS ws UNWIND ws AS w RETURN DISTINCT w } AS writers
  }
  // one row per writer of a key, its count of partner firings on the first
  UNWIND range(0, size(writers) - 1) AS i
  RETURN layer, head, index, side, partner_end, dest_role, src_role, writers[i] AS writer,
         CASE i WHEN 0 THEN partner_firings ELSE 0 END AS partner_firings
}
WITH layer, head, index, side, partner_end, dest_role, src_role, n_heads, rank,
     sum(partner_firings) AS partner_firings, collect(DISTINCT writer) AS writers
WITH layer, head, index, side, partner_end, dest_role, src_role, n_heads, rank, partner_firings,
     COLLECT { UNWIND writers AS w RETURN w ORDER BY w } AS writers
CALL (layer, head, index, side, dest_role, src_role, writers, partner_end) {
  WITH * WHERE partner_end IS NULL
  CREATE (:FeatureWriters {run_id: $run_id, layer: layer, head: head, dest_role: dest_role,
                           src_role: src_role, index: index, side: side, writers: writers})
}
CALL (layer, head, index, side, dest_role, src_role, writers, partner_end, partner_firings,
      n_heads, rank) {
  WITH * WHERE partner_end IS NOT NULL
  WITH *, partner_end / 2 AS vector
  CREATE (:Broadcast {run_id: $run_id, layer: layer, head: head, dest_role: dest_role,
                      src_role: src_role, index: index, side: side,
                      partner_layer: vector / rank / n_heads, partner_head: vector / rank % n_heads,
                      partner_index: vector % rank,
                      partner_side: CASE partner_end % 2 WHEN 0 THEN 'q' ELSE 'k' END,
                      partner_firings: partner_firings, writers: writers})
}
RETURN count(*) AS written
"""

# The SAD runs of a model with aggregates, whose broadcasts follow the model's ALIGNED pairs.
AGGREGATED_SAD_RUNS_OF_MODEL = """
MATCH (r:Run {model_id: $model_id, method: 'sad'})
WHERE r.aggregates_version IS NOT NULL
RETURN r.id AS id ORDER BY id
"""

SET_RUN_AGGREGATES_VERSION = """
MATCH (r:Run {id: $run_id})
SET r.aggregates_version = $version
"""

# Complete runs whose aggregates are missing or older than this code's (`db init` computes them).
RUNS_WITHOUT_AGGREGATES = """
MATCH (r:Run {status: 'complete'})
WHERE coalesce(r.aggregates_version, 0) < $version AND NOT coalesce(r.read_only, false)
RETURN r.id AS id ORDER BY id
"""

MARK_BATCH_DONE = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
SET r.done_batches = [b IN coalesce(r.done_batches, []) WHERE b <> row.index] + row.index
RETURN count(r) AS written
"""

RUN_STATUS = "MATCH (r:Run {id: $run_id}) RETURN r.status AS status, r.writer AS writer"

DONE_BATCHES = "MATCH (r:Run {id: $run_id}) RETURN coalesce(r.done_batches, []) AS done"

# Read first in a fresh batch's transaction: true when an earlier attempt of the same
# transaction committed (its outcome unknown to the driver, which then retries it).
BATCH_ALREADY_DONE = """
MATCH (r:Run {id: $run_id})
RETURN $index IN coalesce(r.done_batches, []) AS done
"""

LIST_RUNS = """
MATCH (r:Run)
RETURN r.id AS id, r.model_id AS model_id, r.method AS method, r.status AS status,
       toString(r.created_at) AS created_at, COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       r.writer AS writer
ORDER BY r.created_at DESC
"""

SHOW_RUN = """
MATCH (r:Run {id: $run_id})
RETURN properties(r) AS run,
       COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       COUNT { MATCH (f:Firing {run_id: $run_id}) } AS firings,
       COUNT { MATCH (:Firing {run_id: $run_id})<-[e:WRITES]-() } AS edges,
       COUNT { MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->() } AS communicates
"""

RUN_PROVENANCE = """
MATCH (r:Run {id: $run_id})
RETURN r.method AS method, r.model_id AS model_id, r.read_only AS read_only,
       r.source_file AS source_file, r.source_sha256 AS source_sha256
"""

SET_RUN_PROPERTIES = "MATCH (r:Run {id: $run_id}) SET r += $properties"

# The model's IOI behaviour on the run's prompts, from each prompt's END logit difference, summed
# in prompt order so that the same prompts give the same bits however they were written.
SET_RUN_BEHAVIOUR = """
MATCH (r:Run {id: $run_id})-[:HAS_PROMPT]->(p:Prompt)
WHERE p.logit_diff IS NOT NULL
WITH r, p ORDER BY p.idx
WITH r, collect(p.logit_diff) AS diffs
WITH r, diffs, size(diffs) AS n
SET r.ioi_accuracy = toFloat(size([d IN diffs WHERE d > 0])) / n,
    r.logit_diff_mean = reduce(total = 0.0, d IN diffs | total + d) / n,
    r.logit_diff_min = reduce(low = diffs[0], d IN diffs | CASE WHEN d < low THEN d ELSE low END)
RETURN r.ioi_accuracy AS ioi_accuracy, r.logit_diff_mean AS logit_diff_mean,
       r.logit_diff_min AS logit_diff_min
"""

DELETE_OTHER_COMMUNICATES = """
MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->()
WHERE NOT [c.writer, c.head, c.side, c.role] IN $keys
DELETE c
"""

HEAD_FIRINGS = """
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, count(*) AS firings
"""

# Auto-commit statements: each deletes in bounded inner transactions.
DELETE_RUN = (
    "MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->() "
    "CALL (c) { DELETE c } IN TRANSACTIONS OF 10000 ROWS",
    "MATCH (f:Firing {run_id: $run_id}) CALL (f) { DETACH DELETE f } IN TRANSACTIONS OF 1000 ROWS",
    "MATCH (p:Prompt {run_id: $run_id}) CALL (p) { DETACH DELETE p } IN TRANSACTIONS OF 5000 ROWS",
    "MATCH (v:Validation {run_id: $run_id}) DETACH DELETE v",
    DELETE_FIRING_COUNTS,
    DELETE_SPARSE_SET_COUNTS,
    DELETE_FEATURE_USES,
    DELETE_BROADCASTS,
    "MATCH ()-[e:PATCH_EDGE {run_id: $run_id}]->() DELETE e",
    "MATCH (p:Patching {run_id: $run_id}) DETACH DELETE p",
    "MATCH (r:Run {id: $run_id}) DETACH DELETE r",
)


# Resample the indexes and drop cached plans (see AtlasStore.refresh_planner_statistics).
PREPARE_FOR_REPLANNING = "CALL db.prepareForReplanning(60)"

# ----- patching circuits (atlas.check.patching) ------------------------------------------------

# One (:Patching) node per run, method and metric: the settings, the prompts done so far and the
# running score sums (a list in the order of ingest.patching.graph), so `patch` resumes.
PATCHING_STATE = """
MATCH (p:Patching {run_id: $run_id, method: $method, metric: $metric})
RETURN properties(p) AS state
"""

SAVE_PATCHING = """
MATCH (r:Run {id: $run_id})
MERGE (p:Patching {run_id: $run_id, method: $method, metric: $metric})
SET p += $values, p.updated_at = datetime()
MERGE (r)-[:HAS_PATCHING]->(p)
RETURN count(p) AS written
"""

DELETE_PATCH_EDGES = """
MATCH ()-[e:PATCH_EDGE {run_id: $run_id, method: $method, metric: $metric}]->()
DELETE e
"""

WRITE_PATCH_EDGES = """
UNWIND $rows AS row
MATCH (w:Component {model_id: $model_id, id: row.writer})
MATCH (c:Component {model_id: $model_id, id: row.reader})
MERGE (w)-[e:PATCH_EDGE {run_id: $run_id, method: $method, metric: $metric, writer: row.writer,
                         reader: row.reader, side: row.side}]->(c)
SET e.score = row.score, e.abs_score = abs(row.score), e.rank = row.rank,
    e.n_prompts = $n_prompts
RETURN count(e) AS written
"""

# A published circuit of heads for one model, by class (atlas.check.compare seeds it).
SEED_REFERENCE_CIRCUIT = """
MERGE (m:Model {id: $model_id})
MERGE (c:ReferenceCircuit {id: $id, model_id: $model_id})
SET c.source = $source, c.task = $task
MERGE (c)-[:OF_MODEL]->(m)
WITH c
UNWIND $heads AS row
MERGE (h:Component {model_id: $model_id, id: row.id})
SET h:Head, h.kind = 'head', h.layer = row.layer, h.head = row.head,
    h.ioi_class = coalesce(h.ioi_class, row.class)
MERGE (c)-[i:INCLUDES]->(h)
SET i.class = row.class
RETURN count(i) AS written
"""
