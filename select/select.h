// S4 select: ranks candidate small models per cluster. The candidates are a catalog of real SLMs
// (select/catalog.json, data compiled in) plus the checkpoints found on disk, which are probed
// zero-shot on the cluster's calls. The public header of slm_select.
//
// Scoring (rank_candidates), per cluster, after the hard constraints filtered (each says why):
//   score = w_q quality + w_e efficiency + 0.15 tool_fit + 0.20 loadable + 0.05 context + 0.10 licence
//   v          = clamp(log10(cluster size) / 4)          volume: 1 at 10k calls
//   w_q        = 0.40 - 0.15 v,  w_e = 0.10 + 0.15 v     busy clusters weigh speed more
//   quality    = the probe's measured score when the model was probed here; else the published
//                scores: t BFCL/100 + (1 - t) IFEval/100 (t = tool-call share; a missing one of the
//                two takes the other); else a size prior 0.7 clamp((log10 params - 8) / 2)
//   efficiency = measured decode tokens/s: clamp(log10(tok/s) / log10(200)); else from size:
//                1 - clamp((log10 params - 8) / 2)   (100M -> 1, 10B -> 0)
//   tool_fit   = 1 - t (1 - native), native = 1 when the model was trained for tool calls
//   loadable   = 1 when slmctl's model/ loads it (so finetune can train it here), else 0
//   context    = clamp(log2(context_length / needed) / 3)  (8x the needed context -> 1)
//   licence    = open 1, community 0.6, unknown 0.3, research-only / non-commercial 0.2
// needed = p95 prompt + p95 completion tokens; p95 = p90 + (p99 - p90) 5/9 from the cluster's stats.
// Hard constraints: --max-params, --max-memory (4-bit weights x 1.2), --license, context_length <
// needed, and (for probed models) a probe that could not run.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/stages.h"

namespace slm::select {

// ---- catalog (select/catalog.cpp) ---------------------------------------------------------

/// One model of select/catalog.json.
struct catalog_entry {
    std::string id, name;           ///< "qwen2.5-1.5b-instruct", "Qwen2.5-1.5B-Instruct"
    std::string source, gathered;   ///< model card URL, date the facts were read (YYYY-MM-DD)
    int64_t params = 0;
    std::string architecture;       ///< config.json model_type / GGUF general.architecture
    bool loadable = false;          ///< model/ can load it
    std::string loadable_note;
    int64_t context_length = 0;
    std::string license;            ///< SPDX-like id: apache-2.0, mit, llama3.2, gemma, cc-by-nc-4.0, ...
    std::string license_kind;       ///< open, community, research-only, non-commercial, unknown
    std::string license_note;
    bool tool_calling = false;      ///< trained for native tool calls
    std::string tool_format;
    double memory_bf16_gb = 0, memory_q4_gb = 0;  ///< weights (see memory_gb())
    std::optional<double> bfcl, ifeval;           ///< published scores, 0..100
    std::string score_source;
};

struct catalog {
    std::string gathered, memory_formula;
    std::vector<catalog_entry> models;
};

/// Weights in decimal GB: bf16 = params * 2 / 1e9, q4 = params * 5/8 / 1e9 (GGUF Q4_1).
double memory_gb(int64_t params, bool q4);

/// Parses and checks a catalog (schema "slmctl-select-catalog/1"): every field present with its
/// type, unique ids, known licence kinds, dates as YYYY-MM-DD, https sources, scores in 0..100 with
/// a source when any is set, memory_gb equal to memory_gb(params) within 0.01. user_error naming
/// `origin` and the field (models[3].memory_gb.q4) otherwise.
catalog parse_catalog(std::string_view json_text, const std::string& origin);
/// The catalog compiled into slmctl (select/catalog.json at build time).
const catalog& builtin_catalog();
/// A catalog file (user_error naming it when missing or bad).
catalog load_catalog(const std::string& path);

// ---- constraints, needs, ranking (select/rank.cpp) ------------------------------------------

/// "3B", "1.5b", "500M", "135m", "7e9", "1000000": parameters. user_error naming `flag` otherwise.
int64_t parse_param_count(std::string_view text, std::string_view flag = "--max-params");
/// "8GB", "8 GiB", "512MB", "4G", "1.5TB", a plain number of bytes. user_error for what is not a
/// positive size.
double parse_memory_bytes(std::string_view text, std::string_view flag = "--max-memory");
/// "apache-2.0,mit": licence ids, lowercased, trimmed; user_error for an empty item.
std::vector<std::string> parse_license_list(std::string_view text, std::string_view flag = "--license");

/// Hard limits from the command line (unset = no limit).
struct constraints {
    std::optional<int64_t> max_params;
    std::optional<double> max_memory_bytes;  ///< compared with 4-bit weights x 1.2
    std::vector<std::string> licenses;       ///< allowed licence ids (empty: any)
    nlohmann::json to_json() const;
};

/// What a cluster asks of a model, from its stored stats (clustering/describe.cpp).
struct cluster_needs {
    int64_t size = 0;
    double share = 0;
    double p95_prompt = 0, p95_completion = 0;
    double needed_context = 0;      ///< p95_prompt + p95_completion
    double tool_share = 0, json_share = 0, code_share = 0, prose_share = 0;
    nlohmann::json to_json() const;
};
/// Reads clusters.stats (prompt_tokens / completion_tokens p50 p90 p99, response_kinds,
/// tool_call_share). Missing fields count as 0; user_error when `stats_json` is not JSON.
cluster_needs needs_from_stats(std::string_view stats_json, int64_t size, double share);

/// What the probe measured for one model on one cluster.
struct probe_result {
    int calls = 0;               ///< calls generated for
    int skipped = 0;             ///< calls left out (prompt longer than the budget, bad stored call)
    int parsed = 0;              ///< answers the response codec parsed without error
    double quality = 0;          ///< mean per-call score in 0..1 (see probe.cpp)
    double tokens_per_s = 0;     ///< decode tokens per second here
    double seconds = 0;          ///< wall time of the probe
    std::string metric;          ///< how quality was scored
    std::string calls_from;      ///< "val split of run 2 (seed 0)", or the fallback used
    std::string error;           ///< non-empty: the probe could not run (the model is filtered)
    nlohmann::json to_json() const;
};

/// A model to rank: a catalog entry, a local checkpoint, or both (a local file of a catalog model).
struct candidate {
    std::string name;            ///< catalog name, or the local file/dir name
    std::string catalog_id;      ///< "" when not in the catalog
    std::string path;            ///< local checkpoint ("" when only in the catalog)
    int64_t params = 0;
    std::string architecture;
    bool loadable = false;
    int64_t context_length = 0;
    std::string license = "unknown", license_kind = "unknown";
    bool tool_calling = false;
    std::optional<double> bfcl, ifeval;
    std::optional<probe_result> probe;
};
/// Catalog entry -> candidate.
candidate from_catalog(const catalog_entry& e);

/// One ranked (or filtered) candidate.
struct ranked {
    candidate c;
    int rank = 0;                ///< 1 = best; 0 for filtered ones
    double score = 0;
    bool filtered = false;
    std::string why;             ///< the reasons, "; "-joined (filtered: the constraint it broke)
    nlohmann::json factors;      ///< {quality, efficiency, tool_fit, loadable, context, licence, weights}
    nlohmann::json to_json() const;
};

/// The first hard constraint `c` breaks, or nullopt.
std::optional<std::string> violation(const candidate& c, const cluster_needs& n, const constraints& k);
/// Filters and scores: the ranked ones first (best first, ties by name), then the filtered ones.
std::vector<ranked> rank_candidates(const std::vector<candidate>& cs, const cluster_needs& n, const constraints& k);

// ---- the stage over the store (select/select.cpp, probe.cpp) --------------------------------

struct select_options {
    int64_t cluster_run = 0;            ///< clustering run (0: the latest ok one)
    std::optional<int> cluster_idx;     ///< one cluster (idx in the run); nullopt: all of them
    constraints limits;
    std::vector<std::string> model_dirs;///< --models: directories (or files) with local checkpoints
    bool model_cache = true;            ///< also look in models_dir()
    int probe = 8;                      ///< calls per cluster for the zero-shot probe (0: no probe)
    int probe_max_tokens = 256;         ///< most new tokens per probed answer
    int64_t probe_max_prompt = 2048;    ///< prompt token budget per probed call
    std::string catalog_path;           ///< "" = the built-in catalog
    std::string device = "cpu", dtype = "auto";
    nlohmann::json to_json() const;
};

struct cluster_selection {
    int64_t cluster_id = 0;
    int idx = 0;
    std::string label;
    cluster_needs needs;
    std::vector<ranked> candidates;     ///< ranked first, then filtered
};

struct select_report {
    int64_t run_id = 0, cluster_run = 0;
    std::vector<std::string> local;     ///< local checkpoints found
    std::vector<cluster_selection> clusters;
    nlohmann::json to_json() const;
};

/// Checkpoints under `dirs` (and models_dir() when `cache`): GGUF files and HF directories
/// (config.json with a decoder architecture); BERT-style embedders are left out. Sorted, unique.
std::vector<std::string> find_local_models(const std::vector<std::string>& dirs, bool cache);

/// Ranks candidates for the chosen clusters, probes the local ones, stores the result in
/// `selections` as a `select` run.
select_report run_select(store::db& d, const select_options& o);

/// The best ranked loadable local checkpoint of the latest select run that covered `cluster_id`
/// (clusters.id); "" when there is none. What finetune uses when --base is not given.
std::string top_local_pick(store::db& d, int64_t cluster_id);

}  // namespace slm::select
