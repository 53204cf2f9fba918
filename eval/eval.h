// `slmctl eval`: replays a clustering run's held-out (test split) calls through the small model
// in three variants and compares each answer with the logged LLM answer:
//   base        the SLM zero-shot on the logged prompt (tools included);
//   icl         the SLM with k train-split examples of the same cluster in the system prompt, the
//               nearest to the call by the clustering run's own embedder, within the token budget;
//   customized  the SLM with the cluster's adapter (the newest 'ok' finetune, or one given).
// Per cluster the main metric of its response kind gets a 95% interval and a verdict
// (eval/metrics.h); per agent and in total the volume-weighted replaceable share and the cost
// saving. Everything lands in eval_results (per call and variant) and the run's summary.
// The public header of slm_eval, with eval/metrics.h (the torch-free metric half).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "model/prefix.h"
#include "store/stages.h"

namespace slm::model {
class language_model;
class response_codec;
}  // namespace slm::model

namespace slm::eval {

// ---- one answer against the logged one ---------------------------------------------------------

/// How one generated answer compares with the logged LLM answer.
struct call_score {
    int64_t call_id = 0;
    response_kind kind = response_kind::prose;  ///< of the logged answer
    double score = 0;      ///< the kind's main metric in 0..1: tool calls name+args (0/1), JSON
                           ///< schema validity when the request had a response_format schema, else
                           ///< JSON validity (0/1), code/prose chrF, empty exact match (0/1)
    bool passed = false;   ///< binary metrics: score == 1; chrF: score >= the kind's threshold
    bool parsed = true;    ///< the response codec read the answer without error
    /// Everything measured: name_ok, args_ok, failure, detail, n_calls, json_ok, schema_checked,
    /// schema_ok, reference_schema_ok, exact, rouge_l, chrf, parse_error.
    nlohmann::ordered_json details;
};

/// The name of the main metric of `kind`: "name+args accuracy", "JSON validity", "chrF", "exact match".
const char* main_metric(response_kind kind);
/// The main metric's name for JSON answers of which `with_schema` of `calls` had a response_format
/// schema: "JSON validity" (none), "schema validity" (all), or the mixed form (each call scored by
/// its schema when it had one, else by JSON validity).
std::string json_metric(int64_t with_schema, int64_t calls);
/// True when the main metric of `kind` is a 0/1 rate (Wilson interval), false for a mean (bootstrap).
bool binary_metric(response_kind kind);

/// Scores `generated` (the SLM's text, cut at the stop string) against call `c`'s logged answer;
/// `codec` reads the tool calls out of the text. `p` gives the chrF pass threshold.
call_score score_answer(const store::call_row& c, const model::response_codec& codec, std::string_view generated,
                        const verdict_params& p = {});

// ---- generation over a set of calls ------------------------------------------------------------

struct replay_options {
    int max_new_tokens = 256;        ///< at most this many new tokens per answer
    /// Per batch the limit is also min(max_new_tokens, ceil(1.5 x the longest reference answer's
    /// tokens) + 16): an answer that much longer than the logged one cannot match it anyway.
    bool cap_by_reference = true;
    int64_t max_prompt_tokens = 2048;///< prompt budget (history cut oldest first; never the last turn)
    int batch_size = 8;              ///< prompts per generate() call (sorted by length)
    verdict_params verdicts;         ///< chrF pass threshold per kind
    /// Appends each generation batch as a JSON line {"prompts": [[ids]], "max_new_tokens", "eos_ids",
    /// "seconds", "generated_tokens"}: what bench/eval replays through HF generate ("" = no).
    std::string dump_prompts;
    /// Prompt prefixes shared by a batch's calls (system prompt, tool schemas) are prefilled once,
    /// and kept in an LRU of prefix KV caches for the later batches.
    model::prefix_options prefix;
    /// The LRU to use (run_eval keeps one across clusters and variants: it empties itself when the
    /// weights or the adapter change); nullptr: one for this replay() call.
    model::prefix_cache* prefix_cache = nullptr;
};

/// What one replay() computed, summed over its batches: the prompt side against what a per-call
/// engine (every prompt prefilled whole) would run.
struct replay_stats {
    int64_t calls = 0;             ///< calls generated
    int64_t prompt_tokens = 0;     ///< their prompt tokens
    int64_t prefill_tokens = 0;    ///< prompt tokens run through the model (a shared prefix once)
    int64_t cached_tokens = 0;     ///< prompt tokens whose keys/values came from the prefix cache
    int64_t prefill_pad = 0;       ///< padding positions run in prefill
    int64_t generated_tokens = 0;
    double prefill_s = 0, decode_s = 0;
    int64_t per_call_tokens() const { return prompt_tokens + generated_tokens; }
    int64_t processed_tokens() const { return prefill_tokens + generated_tokens; }
    void add(const replay_stats& o);
    /// {calls, prompt_tokens, prefill_tokens, cached_tokens, prefill_pad, generated_tokens,
    /// per_call_tokens, processed_tokens, processed_share, prefill_share, prefill_s, decode_s}
    nlohmann::ordered_json to_json() const;
};

/// One call to replay, with the in-context examples to show first (icl variant; empty otherwise).
struct replay_item {
    const store::call_row* call = nullptr;
    std::vector<const store::call_row*> examples;
};

/// A replayed call: its score plus what generation measured.
struct replay_result {
    call_score s;
    std::string output;         ///< the generated text
    int64_t prompt_tokens = 0;  ///< as encoded for the SLM (after cuts, with examples)
    int64_t output_tokens = 0;
    int cut_turns = 0;          ///< history messages dropped to fit
    int examples = 0;           ///< in-context examples that fit the budget
    double latency_ms = 0;      ///< its batch's wall time (prefill + decode), shared by the batch
    double tokens_per_s = 0;    ///< its batch's decode tokens/s
    bool skipped = false;       ///< not generated: the prompt does not fit or the call cannot be rendered
    std::string skip_reason;
    /// --judge: the judge's normalised score (prose answers; nullopt when not judged or unscored;
    /// s.details["judge"] says which, with the reply).
    std::optional<double> judge_score;
};

/// Progress while replaying: calls done of total.
using replay_progress = std::function<void(int64_t done, int64_t total)>;

/// Generates greedily with `lm` (its adapter, if any, already applied) for every item, batched by
/// prompt length, and scores each answer. Results in item order. Calls that cannot be rendered or
/// do not fit are returned with skipped=true and the reason (never silently dropped).
std::vector<replay_result> replay(const model::language_model& lm, const std::vector<replay_item>& items,
                                  const replay_options& o, const replay_progress& progress = {},
                                  replay_stats* stats = nullptr);

/// The system prompt the icl variant shows: the call's own system message (if any) followed by
/// the examples, each as its last user message and its logged answer in the model's response form.
std::string icl_system_prompt(const std::string& original_system, const std::vector<const store::call_row*>& examples,
                              const model::response_codec& codec);

// ---- the stage over the store ------------------------------------------------------------------

struct eval_options {
    int64_t cluster_run = 0;               ///< clustering run (0: the latest ok one)
    std::optional<int> cluster_idx;        ///< one cluster (idx); nullopt: every cluster (--all)
    std::vector<int> cluster_list;         ///< these clusters (idx) when not empty and no cluster_idx
    std::vector<std::string> variants = {"base", "icl", "customized"};
    std::string base;                      ///< base model ("": the adapters' base, else SmolLM2)
    std::string adapter;                   ///< adapter dir/GGUF for --cluster ("": newest of the cluster)
    int64_t split_seed = 0;
    int max_calls = 0;                     ///< test calls per cluster at most (0: all); a seeded sample
    int min_calls = 1;                     ///< clusters with fewer test calls are reported, not evaluated
    int icl_k = 3;                         ///< in-context examples (1..3)
    /// Only test calls whose logged answer is of this kind ("tool_call", "json", "code", "prose",
    /// "empty"; "" = all): e.g. the tool-call traffic of a mixed chat workload.
    std::string kind;
    replay_options replay;
    std::string prices_path;               ///< "" = the built-in table
    std::string llm_model;                 ///< price the LLM side as this model ("": each call's logged model)
    std::string device = "cpu", dtype = "auto";
    /// --judge: an LLM judge scores the prose answers; a prose cluster's main metric is then the
    /// judge's mean score (bootstrap) against verdict_params::judge. url "" = off.
    judge_options judge;
    nlohmann::json to_json() const;
};

/// One variant's aggregate over a cluster's evaluated calls.
struct variant_summary {
    std::string variant;                   ///< base, icl, customized
    int64_t n = 0, skipped = 0, unparsed = 0;
    metric_summary main;                   ///< the cluster's main metric with its interval
    verdict v;
    std::optional<interval> name_accuracy; ///< tool calls only
    std::optional<interval> chrf, rouge_l; ///< every kind with text
    std::optional<interval> judge;         ///< --judge: mean normalised judge score of the judged calls
    int64_t judged = 0;                    ///< prose calls the judge scored
    int64_t judge_failed = 0;              ///< prose calls it was asked about and gave no score for
    std::optional<interval> json_valid;    ///< json only
    std::optional<interval> schema_valid;  ///< json calls whose request had a response_format schema (Wilson)
    int64_t schema_checked = 0;            ///< how many calls that is
    std::map<std::string, int64_t> failures;  ///< tool-call failure kinds
    double ms_per_call = 0;                ///< SLM latency a call saw in its batch, measured here
    double calls_per_s = 0;                ///< SLM throughput of the whole replay
    double tokens_per_s = 0;               ///< SLM decode tokens/s
    replay_stats tokens;                   ///< tokens computed vs a per-call engine
    int64_t adapter_id = 0;                ///< customized
    std::string adapter_path;
    std::vector<double> scores;            ///< per evaluated call (for the share's bootstrap)
    /// Per kind of logged answer present among the evaluated calls (a mixed cluster's tool calls
    /// scored as tool calls, its prose as prose): {kind: {n, metric, value, lo, hi}}.
    nlohmann::ordered_json by_kind = nlohmann::ordered_json::object();
    nlohmann::ordered_json to_json() const;
};

struct cluster_eval {
    int64_t cluster_id = 0;
    int idx = 0;
    std::string label;
    int64_t volume = 0;                    ///< the cluster's calls in the logs
    std::map<std::string, int64_t> volume_by_agent;
    response_kind kind = response_kind::prose;  ///< majority kind of its test calls
    int64_t test_calls = 0, evaluated = 0;
    std::optional<double> llm_latency_ms;  ///< mean logged LLM latency of the evaluated calls
    std::vector<variant_summary> variants;
    std::string chosen;                    ///< the variant the verdict rests on ("" when none ran)
    bool replaceable = false;
    std::string reason;
    int64_t input_tokens = 0, output_tokens = 0;  ///< logged token volume of the whole cluster
    std::string note;                      ///< why a cluster (or a variant) was not evaluated
    nlohmann::json loss_curve;             ///< the evaluated adapter's finetune curve (null: none)
    nlohmann::ordered_json to_json() const;
};

struct share_row {
    std::string agent;                     ///< agent system (workload id up to the first '.'), "total"
    int64_t calls = 0, replaceable_calls = 0;
    interval share;
    cost_estimate cost;                    ///< llm_usd: the logged calls at LLM prices; slm_usd: after moving
                                           ///< the replaceable clusters' calls to the SLM
    int64_t unpriced_calls = 0;            ///< calls without token counts or a known model price
    nlohmann::ordered_json to_json() const;
};

struct eval_report {
    int64_t run_id = 0, cluster_run = 0;
    std::string base;
    std::vector<cluster_eval> clusters;
    std::vector<share_row> shares;         ///< per agent, then "total"
    std::optional<int64_t> previous_run;   ///< the eval run before this one on the same clustering run
    nlohmann::ordered_json previous;       ///< its summary (shares and verdicts), for comparison
    nlohmann::ordered_json prices;         ///< which price entries were used
    replay_stats tokens;                   ///< over every variant and cluster
    double seconds = 0;
    nlohmann::ordered_json to_json() const;
};

/// Runs the evaluation, stores eval_results and the run summary, returns the report.
eval_report run_eval(store::db& d, const eval_options& o);

/// The report of a stored eval run (0: the latest ok one), rebuilt from its summary.
nlohmann::ordered_json load_report(store::db& d, int64_t run_id);

// ---- rendering (eval/report.cpp) ---------------------------------------------------------------

/// The terminal table (clusters x variants, then the share per agent).
std::string render_table(const nlohmann::ordered_json& report);
/// Markdown for a pull-request comment.
std::string render_markdown(const nlohmann::ordered_json& report);
/// One self-contained HTML page with inline SVG charts: per-cluster metric bars with intervals
/// per variant, the replaceable share per agent, the evaluated adapters' loss curves.
std::string render_html(const nlohmann::ordered_json& report);

/// `--threshold KIND=X`: sets one verdict threshold (tool_call, json, code, prose, empty, judge in
/// 0..1; min_calls=N); user_error naming the spec otherwise.
void set_threshold(verdict_params& p, const std::string& spec);
/// Writes `text` to `path` through a temp file renamed into place (a failed write never leaves a
/// half-written report where a good one was).
void write_report_file(const std::string& path, const std::string& text);

/// `--fail-under`: "0.4" or "share=0.4" (total share), "AGENT=0.5" (an agent's share), or
/// "METRIC=X" for a variant's main metric value in every evaluated cluster ("customized=0.8").
/// Returns the failing comparisons (empty: pass); user_error for a spec it cannot read.
std::vector<std::string> check_fail_under(const nlohmann::ordered_json& report, const std::string& spec);

}  // namespace slm::eval
