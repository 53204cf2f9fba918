// What each pipeline stage reads and writes, as functions over store::db: calls (collect writes,
// every later stage reads), clustering runs (clusters, members, the fitted model), splits. Public,
// with store.h; no SQL outside store/.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "store/store.h"

namespace slm::store {

// ---- calls: collect writes them ---------------------------------------------------------------

/// One normalized call as collect inserts it. Text is bound without copying: the views must stay
/// valid until insert() returns. Empty optional-looking fields (response_id, workload_id, ...)
/// are stored as NULL.
struct call_insert {
    std::string_view content_id, response_id, source_file;
    int64_t source_line = 0;
    std::string_view format, workload_id, client_id, timestamp, model, messages, tools;
    std::string_view response_format;  ///< the request's response_format JSON ("" = NULL: none)
    std::optional<std::string_view> response_text;  ///< nullopt: NULL (no text, e.g. tool calls only)
    std::string_view response_tool_calls, finish_reason;
    std::optional<double> latency_ms;
    std::optional<int64_t> prompt_tokens, completion_tokens;
    std::string_view task_text;
    std::string_view scrubbed = "{}", flags = "[]";  ///< JSON
};

struct quarantine_insert {
    std::string_view source_file;
    int64_t source_line = 0;
    std::string_view raw_hash, reason, detail, raw;
};

/// collect's insert path: both statements prepared once, INSERT OR IGNORE (content id, raw hash).
class call_writer {
public:
    call_writer(db& d, int64_t run_id);
    /// True when the call is new (false: its content id was already stored).
    bool insert(const call_insert& c);
    /// True when the row is new to `quarantine`.
    bool insert(const quarantine_insert& q);

private:
    db& db_;
    int64_t run_id_;
    stmt call_, quar_;
};

// ---- calls: what later stages read ----------------------------------------------------------------

/// Which calls a stage reads (all of them by default).
struct call_filter {
    std::string workload;         ///< only calls of this workload_id (empty: all)
    bool system_prompt = false;   ///< also read each call's first system message
};

/// One call's text, viewed in place: valid only during the callback.
struct call_text_view {
    int64_t id = 0;
    std::string_view response_id, workload_id, task_text;
    std::string_view system_prompt;  ///< "" unless call_filter::system_prompt
};
/// Calls in id order (1M calls: no per-call allocation here).
void for_each_call_text(db& d, const call_filter& f, const std::function<void(const call_text_view&)>& fn);

/// What a cluster's description needs of a call.
struct call_brief {
    int64_t id = 0;
    std::string task_text, response_text;  ///< response_text "" when NULL
    std::string response_tool_calls;       ///< JSON array text, "" when none
    std::optional<int64_t> prompt_tokens, completion_tokens;
};
/// The calls `ids`, in that order (internal_error when one does not exist).
std::vector<call_brief> get_call_briefs(db& d, const std::vector<int64_t>& ids);

/// A whole stored call: its request (messages, tools) and logged response, JSON as stored.
struct call_row {
    int64_t id = 0;
    std::string content_id, response_id, workload_id, client_id, timestamp, model;  ///< "" when NULL
    std::string messages;             ///< JSON array of request messages
    std::string tools;                ///< JSON array of tool definitions, "" when none were offered
    /// The request's response_format object ({"type":"json_schema","json_schema":{"schema":...}} or
    /// {"type":"json_object"}), "" when it had none (or asked for text).
    std::string response_format;
    std::optional<std::string> response_text;
    std::string response_tool_calls;  ///< JSON array [{name, arguments}], "" when none
    std::string finish_reason;
    std::optional<int64_t> prompt_tokens, completion_tokens;
    std::string task_text;
    std::optional<double> latency_ms;  ///< the logged LLM call's latency
};
std::optional<call_row> get_call(db& d, int64_t call_id);

// ---- clustering runs ------------------------------------------------------------------------------

struct cluster_row {
    int64_t id = 0;                     ///< clusters.id
    int idx = 0;                        ///< 0..k-1 within its run, -1 noise
    std::string label;
    int64_t size = 0;
    double share = 0;
    std::optional<double> suitability;  ///< nullopt for noise
    std::string stats = "{}", reasons = "[]";  ///< JSON
};
/// One cluster by clusters.id, with the clustering run it belongs to (nullopt when there is none).
struct cluster_ref {
    cluster_row cluster;
    int64_t run_id = 0;  ///< the clustering run
};
std::optional<cluster_ref> get_cluster(db& d, int64_t cluster_id);

/// A clustering run's clusters by idx, noise last.
std::vector<cluster_row> clusters_of_run(db& d, int64_t run_id);

struct member_row {
    int64_t call_id = 0;
    std::string response_id, workload_id;  ///< "" when NULL
    int cluster_idx = -1;
    int64_t cluster_id = 0;
    std::optional<double> distance;        ///< 1 - cosine to the cell it was assigned to
};
/// Every call of a clustering run with its cluster, by call id.
std::vector<member_row> members_of_run(db& d, int64_t run_id);

/// The calls of one cluster (clusters.id), whole, by call id: what finetune trains on.
std::vector<call_row> calls_of_cluster(db& d, int64_t cluster_id);

/// One call of a cluster as `cluster --show` prints it.
struct cluster_call {
    int64_t call_id = 0;
    std::string workload_id, task_text;
    std::string response;  ///< the tool calls JSON when there are any, else the response text
    std::optional<double> distance;
};
/// Up to `limit` calls of cluster `idx` of a run, nearest first.
std::vector<cluster_call> nearest_calls(db& d, int64_t run_id, int idx, int limit);

/// A cluster to store; the centroid (dim floats) is optional.
struct cluster_insert {
    int idx = 0;
    std::string_view label;
    int64_t size = 0;
    double share = 0;
    std::optional<double> suitability;
    std::string_view stats = "{}", reasons = "[]";
    const float* centroid = nullptr;
    int dim = 0;
};
/// Inserts one cluster of `run_id`; returns its clusters.id.
int64_t insert_cluster(db& d, int64_t run_id, const cluster_insert& c);

struct member_insert {
    int64_t call_id = 0;
    int64_t cluster_id = 0;  ///< clusters.id
    double distance = 0;
};
void insert_members(db& d, int64_t run_id, const std::vector<member_insert>& members);

/// What a clustering run needs to embed and assign a new call the way it did (cluster_models).
struct cluster_model {
    std::string embedder;            ///< tfidf, minilm, model:PATH
    int dim = 0;
    std::string params = "{}";       ///< JSON
    std::vector<uint8_t> blob;       ///< fitted embedder state, format owned by clustering/
    std::vector<float> cells;        ///< (n_cells, dim) k-means cell centroids
    std::string cell_owner = "[]";   ///< JSON array: the cluster idx of each cell
    std::string cell_workload = "[]";///< JSON array: the workload each cell serves ("" = any)
};
void insert_cluster_model(db& d, int64_t run_id, const cluster_model& m);
/// nullopt when the run stored none.
std::optional<cluster_model> get_cluster_model(db& d, int64_t run_id);

// ---- splits: which calls of a clustering run train, validate, test ---------------------------------

struct split_row {
    int64_t call_id = 0;
    std::string split;  ///< train | val | test
};
/// Replaces the split of (cluster_run, seed) with `rows`, in one transaction.
void write_splits(db& d, int64_t cluster_run, int64_t seed, const std::vector<split_row>& rows);
/// The split of (cluster_run, seed) by call id; only `split` rows when it is not empty.
std::vector<split_row> get_splits(db& d, int64_t cluster_run, int64_t seed, std::string_view split = {});

// ---- adapters: finetune writes them, eval and route read them ----------------------------------

struct adapter_row {
    int64_t id = 0, run_id = 0;
    std::optional<int64_t> cluster_id;
    std::string base_model, base_model_sha256;
    std::string path;                 ///< PEFT adapter directory (or the GGUF file when only that was written)
    int64_t rank = 0;
    double alpha = 0;
    std::string params = "{}", metrics = "{}", loss_curve = "[]";  ///< JSON
    std::string created;
};
/// Inserts an adapter (id ignored); returns its id.
int64_t insert_adapter(db& d, const adapter_row& a);
std::optional<adapter_row> get_adapter(db& d, int64_t adapter_id);
/// Adapters of a cluster from 'ok' finetune runs, newest first.
std::vector<adapter_row> adapters_of_cluster(db& d, int64_t cluster_id);

// ---- selections: select ranks candidate models per cluster; finetune reads the top pick ------------

struct selection_row {
    int64_t id = 0, run_id = 0, cluster_id = 0;
    std::string model;               ///< local checkpoint path, else the catalog name
    int64_t rank = 0;                ///< 1 = best; 0 = filtered out by a hard constraint
    double score = 0;
    std::string details = "{}";      ///< JSON (select::ranked::to_json)
};
/// Inserts the rows of one select run (ids ignored), in one transaction.
void insert_selections(db& d, const std::vector<selection_row>& rows);
/// The rows for `cluster_id` of the newest 'ok' select run that ranked it: ranked rows by rank,
/// then the filtered ones (rank 0). Empty when no select run covered the cluster.
std::vector<selection_row> latest_selections(db& d, int64_t cluster_id);

// ---- eval results: eval writes one row per held-out call and variant -----------------------------

struct eval_result_row {
    int64_t id = 0, run_id = 0, call_id = 0, cluster_id = 0;
    std::optional<int64_t> adapter_id;  ///< customized variant
    std::string variant;                ///< base, icl, customized
    std::string model;                  ///< base model path
    std::optional<double> score;        ///< main metric (nullopt: skipped)
    std::optional<bool> passed;
    std::optional<double> judge_score;  ///< --judge: the judge's score in 0..1 (nullopt: not judged)
    std::string output;                 ///< generated text
    std::string details = "{}";         ///< JSON
};
/// Inserts rows (ids ignored) in one transaction.
void insert_eval_results(db& d, const std::vector<eval_result_row>& rows);
/// The rows of an eval run, by cluster, variant, call.
std::vector<eval_result_row> eval_results_of_run(db& d, int64_t run_id);

// ---- pipeline steps: what `slmctl run` did per stage --------------------------------------------

struct pipeline_step_row {
    int64_t id = 0, run_id = 0;    ///< run_id: the `run`
    std::string stage;             ///< collect, cluster, select, finetune, eval
    std::string cluster_key;       ///< finetune: which cluster ("" otherwise)
    std::string key;               ///< content hash of the stage's inputs and params
    int64_t stage_run = 0;         ///< the stage's own run (0: none, e.g. a carried adapter)
    std::string result = "{}";     ///< JSON
    std::string created;
};
void insert_pipeline_step(db& d, const pipeline_step_row& r);
/// The newest step of `stage` with `key` whose stage run finished 'ok' (or that needed no run of
/// its own); nullopt when there is none.
std::optional<pipeline_step_row> find_pipeline_step(db& d, std::string_view stage, std::string_view key);
/// The steps of one `run`, in order.
std::vector<pipeline_step_row> pipeline_steps_of_run(db& d, int64_t run_id);

/// Every call id of the database, ascending (what a clustering run read when it covered them all).
std::vector<int64_t> all_call_ids(db& d);

}  // namespace slm::store
