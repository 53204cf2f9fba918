// Batched autoregressive generation over llama_model: left-padded prompts with per-sequence
// positions, a preallocated KV cache, greedy or temperature/top-p sampling, per-sequence stops.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace slm::model {

class llama_model;

/// How to sample and when to stop.
struct sampling_params {
    int max_tokens = 256;          ///< new tokens per sequence (clamped to the context length)
    float temperature = 0.f;       ///< 0 = greedy (argmax)
    float top_p = 1.f;             ///< nucleus sampling mass, in (0, 1]
    uint64_t seed = 0;             ///< sampling seed: same seed, same prompts -> same output
    std::vector<int32_t> eos_ids;  ///< any of these ends a sequence (not included in its tokens)
    int sync_every = 8;            ///< decode steps between host checks (stop callback, all done)
    int prefill_chunk = 512;       ///< prompt tokens per forward call (bounds attention memory)
};

enum class finish_reason { eos, stop, length };
const char* finish_reason_name(finish_reason r);

/// One sequence's result.
struct generation {
    std::vector<int32_t> tokens;  ///< generated ids, without the prompt and without the EOS id
    finish_reason reason = finish_reason::length;
};

/// Timings of one generate() call.
struct generate_stats {
    int64_t batch = 0;
    int64_t prompt_tokens = 0;     ///< real prompt tokens (no padding)
    int64_t generated_tokens = 0;  ///< kept tokens over all sequences
    int64_t decode_steps = 0;
    /// Prompt tokens run through the model: prompt_tokens without sharing; with shared prefixes
    /// (model/prefix.h) each group's prefix counts once and tokens from the prefix cache not at all.
    int64_t prefill_tokens = 0;
    int64_t prefill_pad = 0;       ///< padding positions run through the model in prefill
    int64_t cached_tokens = 0;     ///< prompt tokens whose keys/values came from the prefix cache
    double prefill_s = 0, decode_s = 0;
    double decode_tokens_per_s() const { return decode_s > 0 ? generated_tokens / decode_s : 0; }
};

/// Called at sync points for each unfinished sequence with its tokens so far; returns how many of
/// them to keep and stops that sequence (finish_reason::stop), or -1 to go on. Stop strings and
/// streaming live here (model.h builds one from a tokenizer).
using stop_callback = std::function<int64_t(size_t seq, const std::vector<int32_t>& tokens)>;

/// Generates for every prompt (token ids, at least one each) in one batch; results in prompt
/// order. Runs under inference mode on the model's device. Sequence i's output does not depend on
/// the other prompts (up to floating-point rounding of padded batches) and, when sampling, only
/// on (seed, i).
std::vector<generation> generate(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                 const sampling_params& params, const stop_callback& on_sync = {},
                                 generate_stats* stats = nullptr);

}  // namespace slm::model
