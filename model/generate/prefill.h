// Internal to model/generate: what a prefill leaves for the decode loop, so the left-padded
// prefill (generate.cpp) and the shared-prefix one (prefix-cache.cpp) share one loop.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "model/generate.h"
#include "model/llama.h"

namespace slm::model::detail {

// B rows, P prompt slots (the longest prompt), N new tokens, V vocabulary
struct prefilled {
    kv_cache cache;             // B rows, capacity P + N, len P
    torch::Tensor key_valid;    // (B, P + N) bool: false for padding slots
    torch::Tensor next_pos;     // (B, 1) int64: RoPE position of each row's next token
    torch::Tensor logits;       // (B, 1, V) float32 at each row's last prompt token
    std::vector<int64_t> rows;  // batch row -> sequence index (a permutation)
    int64_t prefill_tokens = 0, prefill_pad = 0, cached_tokens = 0;
};

/// Fills the cache for the checked prompts: (P, N) -> state.
using prefill_fn = std::function<prefilled(int64_t P, int64_t N)>;

/// generate() with another prefill (empty: left padding, every prompt whole).
std::vector<generation> run_generation(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                       const sampling_params& params, const stop_callback& on_sync,
                                       generate_stats* stats, const prefill_fn& prefill);

}  // namespace slm::model::detail
