// Internal to select/: the zero-shot probe of a local checkpoint on clusters' calls (probe.cpp),
// which select.cpp runs for every local loadable candidate. Not part of slm_select's public face.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "select/select.h"
#include "store/stages.h"

namespace slm::select {

/// The calls one cluster is probed on.
struct probe_set {
    int64_t cluster_id = 0;
    int idx = 0;
    std::vector<store::call_row> calls;
    std::string calls_from;  ///< "val split of run 2 (seed 0)", or the fallback used
};

/// Up to `n` calls per cluster from the val split of `cluster_run` (seed 0, the split finetune and
/// eval use; made and stored the first time), the train split for a cluster with no val calls.
/// Never the test split: eval's held-out calls stay unseen. Calls are spread evenly over the split.
std::vector<probe_set> probe_sets(store::db& d, int64_t cluster_run, const std::vector<store::cluster_row>& clusters, int n);

struct probe_params {
    int max_new_tokens = 256;
    int64_t max_prompt_tokens = 2048;
    std::string device = "cpu", dtype = "auto";
    std::string label;  ///< the candidate's name, for progress and messages ("" = the path)
};

/// What probing one checkpoint gave: what loading it told us and one result per set.
struct model_probe {
    std::string error;                  ///< non-empty: the model did not load (every result carries it)
    std::string name, architecture;     ///< from the loaded checkpoint
    int64_t params = 0, context_length = 0;
    double load_s = 0;
    std::vector<probe_result> results;  ///< one per probe_set, in order
};

/// Loads `path` once and replays each set's calls through it zero-shot (eval::replay, greedy),
/// scoring each answer against the logged one with eval's metric for its response kind.
model_probe probe_model(const std::string& path, const std::vector<probe_set>& sets, const probe_params& p);

}  // namespace slm::select
