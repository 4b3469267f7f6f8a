// name: validations
// purpose: The intervention results `circuit-atlas validate` stored for a run, one row per edge.
// param: run_id string — the run
// param: mode string[global|local]? = null — "global" or "local", or null for both
// returns: writer string, head string, side string, role string, dest_role string,
//   src_role string, mode string, factor float, n_prompts int, n_controls int, support int,
//   attention float, logit_diff float, signal_attention_mean float, signal_attention_std float,
//   control_attention_mean float, control_attention_std float, signal_logit_mean float,
//   signal_logit_std float, control_logit_mean float, control_logit_std float,
//   attention_ratio float, logit_ratio float, prompts list<int>, signal_attention list<float>,
//   control_attention list<float>, signal_logit list<float>, control_logit list<float>,
//   method string, relative float?, predicted_relative_mean float?,
//   signal_relative_mean float?, signal_relative_std float?, control_relative_mean float?,
//   control_relative_std float?, relative_ratio float?, predicted_relative list<float>?,
//   signal_relative list<float>?, control_relative list<float>?
// example: {"run_id": "gpt2-sad-256", "mode": null}
// example-toy: {"run_id": "toy-ioi-run", "mode": null}
//
// A `(:Validation)` node per (run, writer, head, side, role, dest_role, src_role, mode,
// factor): factor 0 removes the edge's signal, 2 doubles it. Δ values are intervened − clean,
// `*_mean`/`*_std` over prompts (control: over prompts × random draws); `*_ratio` is
// mean |Δ signal| / mean |Δ control|. The lists are per prompt (control: mean over draws).
// `support` is the edge's COMMUNICATES `n_prompts` when it was validated.
//
// `method` is the run's: on an ACC run an edge is (writer component → one side of the
// reader's firings) and the intervention scales the writer's output where that side reads it
// (a head through the source tokens it read), so the `*_relative*` columns give the firing's
// relative attention RA (unscaled): its clean mean, the linear prediction (the edge's weight
// times factor − 1; exact in local mode), the measured change and the control's (another
// component of the writer's kind; NaN for the embedding, which has none). Null on SAD runs.
MATCH (v:Validation {run_id: $run_id})
WHERE $mode IS NULL OR v.mode = $mode
RETURN v.writer AS writer, v.head AS head, v.side AS side, v.role AS role,
       v.dest_role AS dest_role, v.src_role AS src_role, v.mode AS mode, v.factor AS factor,
       v.n_prompts AS n_prompts, v.n_controls AS n_controls, v.support AS support,
       v.attention AS attention, v.logit_diff AS logit_diff,
       v.signal_attention_mean AS signal_attention_mean,
       v.signal_attention_std AS signal_attention_std,
       v.control_attention_mean AS control_attention_mean,
       v.control_attention_std AS control_attention_std,
       v.signal_logit_mean AS signal_logit_mean, v.signal_logit_std AS signal_logit_std,
       v.control_logit_mean AS control_logit_mean, v.control_logit_std AS control_logit_std,
       v.attention_ratio AS attention_ratio, v.logit_ratio AS logit_ratio,
       v.prompts AS prompts, v.signal_attention AS signal_attention,
       v.control_attention AS control_attention, v.signal_logit AS signal_logit,
       v.control_logit AS control_logit, coalesce(v.method, 'sad') AS method,
       v.relative AS relative, v.predicted_relative_mean AS predicted_relative_mean,
       v.signal_relative_mean AS signal_relative_mean,
       v.signal_relative_std AS signal_relative_std,
       v.control_relative_mean AS control_relative_mean,
       v.control_relative_std AS control_relative_std, v.relative_ratio AS relative_ratio,
       v.predicted_relative AS predicted_relative, v.signal_relative AS signal_relative,
       v.control_relative AS control_relative
ORDER BY v.head DESC, v.mode, v.factor, v.support DESC, v.writer
