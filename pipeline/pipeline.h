// S6: the whole loop in one command (`slmctl run`: collect -> cluster -> select -> finetune -> eval,
// each stage skipped when a content hash of its inputs and params matches a finished one, a new
// cycle assigning new calls to the existing clusters) and routing new requests to the cluster's
// approved adapter or the LLM (`slmctl route`). The only public header of slm_pipeline.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "clustering/clustering.h"
#include "collector/collector.h"
#include "eval/eval.h"
#include "finetune/finetune.h"
#include "select/select.h"

namespace slm::store {
class db;
}

namespace slm::pipeline {

// ---- the configuration ----------------------------------------------------------------------

/// Which clusters get an adapter: the most suitable first, among those that pass every floor.
struct pick_params {
    int max_clusters = 2;              ///< at most this many clusters are fine-tuned (0: none)
    int64_t min_size = 40;             ///< calls in the cluster at least
    double min_suitability = 0.5;      ///< SLM suitability at least
    double min_tool_call_share = 0.0;  ///< share of tool-call answers at least
    int64_t max_prompt_tokens = 0;     ///< p90 of the logged prompt_tokens at most (0: no limit): cheaper clusters
    std::vector<int> clusters;         ///< explicit cluster idx list (overrides the floors)
};

/// Everything `slmctl run` does, as one value: the TOML file's sections map onto these members
/// (pipeline/slmctl.example.toml lists every key); flags override the file; the resolved config
/// is stored as the `run` row's params.
struct run_config {
    run_config() { finetune.format = "both"; }  ///< PEFT for vLLM and GGUF for llama.cpp alike
    collector::collect_params collect;
    clustering::cluster_params cluster;
    clustering::drift_params drift;
    bool select = true;                ///< run S4 (rank + probe); finetune's base follows its pick
    select::select_options select_opts;
    pick_params pick;
    finetune::finetune_options finetune;  ///< cluster_id / out set per cluster
    std::string targets = "all";       ///< LoRA targets
    double time_budget_min = 0;        ///< per fine-tuned cluster (0: no limit)
    std::string adapters_dir;          ///< "" = <db dir>/adapters
    bool eval = true;
    eval::eval_options eval_opts;
    std::string eval_clusters = "all"; ///< all | finetuned
    std::string html, md;              ///< report files ("" = none)
    nlohmann::json to_json() const;
};

/// Reads a TOML file into `c`: keys present override, keys absent keep their value; unknown
/// sections or keys and wrong types are user_errors naming file:line and the key.
void load_config(const std::string& path, run_config& c);

// ---- the loop -------------------------------------------------------------------------------

/// What happened to one stage (one cluster for finetune).
struct stage_outcome {
    stage_outcome() = default;
    stage_outcome(std::string s, std::string w) : stage(std::move(s)), what(std::move(w)) {}
    std::string stage;                 ///< collect, cluster, select, finetune, eval
    std::string what;                  ///< e.g. "cluster 3 (send_email)"
    std::string action;                ///< ran, skipped, carried, resumed, failed, none
    std::string why;                   ///< why it was skipped / carried / not needed
    int64_t stage_run = 0;             ///< the stage's own run (the earlier one when skipped)
    double seconds = 0;
    nlohmann::json result = nlohmann::json::object();
    nlohmann::json to_json() const;
};

struct cycle_compare {
    int64_t previous_run = 0;          ///< the previous `run` (0: this is the first cycle)
    nlohmann::json shares;             ///< [{agent, share, previous_share}]
    nlohmann::json clusters;           ///< [{idx, label, replaceable, previous_replaceable, adapter}]
};

struct run_report {
    int64_t run_id = 0;
    int64_t cluster_run = 0, eval_run = 0;
    std::vector<stage_outcome> stages;
    nlohmann::json drift;              ///< clustering::drift_report (null on the first cycle)
    nlohmann::ordered_json eval;       ///< the eval report (the skipped run's when skipped)
    cycle_compare compare;
    double seconds = 0;
    nlohmann::json to_json() const;
};

struct run_hooks {
    std::function<void(const std::string& stage, const std::string& what)> on_stage_start;
    std::function<void(const stage_outcome&)> on_stage_done;
    std::function<void(const finetune::train_progress&)> on_train_progress;
};

/// Runs the loop on `d`, recorded as a `run` run with the resolved config as params; every stage it
/// runs is its own run, and pipeline_steps says what each stage read (its key) and produced.
run_report run_pipeline(store::db& d, const run_config& c, const run_hooks& hooks = {});

// ---- routing ---------------------------------------------------------------------------------

/// Where one cluster's traffic goes.
struct route_target {
    int idx = -1;
    int64_t cluster_id = 0;
    std::string label;
    std::string target = "llm";        ///< adapter | base | llm
    std::string adapter_name;          ///< the name a server knows the adapter by (vLLM --lora-modules)
    std::string adapter_path, gguf_path;
    int64_t adapter_id = 0;
    std::string base_model;
    std::string reason;
    nlohmann::json evidence;           ///< the eval verdict behind it (metric, value, interval, n)
};

struct route_decision {
    std::string source;                ///< file:line
    std::string request_id;            ///< the request's id/metadata id when it carried one
    int idx = -1;                      ///< cluster (-1: none)
    float similarity = 0;              ///< cosine to the cluster's request centroid
    int runner_up = -1;                ///< the next closest cluster (-1: none)
    float margin = 1;                  ///< similarity minus the runner-up's
    std::string target = "llm";
    std::string adapter_name, adapter_path;
    std::string reason;
    nlohmann::json to_json() const;
};

class router {
public:
    /// The clustering run `cluster_run` (0: the latest ok one), the newest ok eval run over it (none:
    /// every cluster goes to the LLM, saying so) and the adapters it evaluated.
    static router load(store::db& d, int64_t cluster_run = 0);
    ~router();
    router(router&&) noexcept;
    router& operator=(router&&) noexcept;

    /// One request: an OpenAI chat-completions request object ({model, messages, tools, ...}), or
    /// a logged record that holds one under "request" (its response is ignored: a gateway routes
    /// before the answer exists). `workload` names the agent node when the record does not.
    /// user_error naming `source` for a request that has no messages.
    /// A request whose best cluster is not ahead of the next one by `min_margin` stays with the LLM
    /// (an adapter answers only its own task).
    route_decision route(const std::string& json_text, const std::string& source, const std::string& workload = "",
                         double min_margin = 0.05);
    /// The routing table: clusters -> target, adapter name and path, thresholds, centroid reference.
    nlohmann::json table() const;
    const std::vector<route_target>& targets() const;
    int64_t cluster_run() const;
    int64_t eval_run() const;

private:
    router();
    struct impl;
    std::unique_ptr<impl> p_;
};

}  // namespace slm::pipeline
