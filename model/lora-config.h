// LoRA configuration and the projection names it targets: torch-free, so that modules which only
// pass a LoRA setup along (finetune's public header, the pipeline, the CLI) compile without
// libtorch's headers. The adapter tensors, their init, merging and files are in model/adapter.h.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace slm::model {

/// The seven projections of a layer, by name, for LoRA target lists ("q", "k", ..., "down").
enum class proj { q, k, v, o, gate, up, down };
constexpr int n_projs = 7;
const char* proj_name(proj p);
/// HF module name of a projection ("q_proj", ..., "down_proj").
const char* proj_hf_name(proj p);

struct lora_config {
    int64_t rank = 8;
    double alpha = 16;
    double dropout = 0.0;  ///< on the adapter's input while training (PEFT's default is 0 too)
    bool rslora = false;   ///< scale alpha / sqrt(r) instead of alpha / r
    std::vector<proj> targets = {proj::q, proj::k, proj::v, proj::o, proj::gate, proj::up, proj::down};

    double scale() const;
    /// "q,k,v,o,gate,up,down", "all", or HF names "q_proj,...,down_proj"; user_error naming an
    /// unknown one with the valid list.
    static std::vector<proj> parse_targets(std::string_view csv);
    /// rank >= 1, alpha > 0, 0 <= dropout < 1, targets not empty: user_error with a hint.
    void validate() const;
    nlohmann::json to_json() const;
};

}  // namespace slm::model
