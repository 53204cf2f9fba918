// Shared prompt prefixes: the longest common token prefixes among a batch's sequences (the system
// prompt and tool schemas every call of an agent node opens with), a small LRU of their KV caches
// across batches, and generation that prefills each shared prefix once. Torch-free header.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/generate.h"

namespace slm::model {

class llama_model;

/// When a common prefix is worth computing once.
struct prefix_options {
    bool enabled = true;       ///< false: every sequence runs alone (the per-call engine)
    int64_t min_tokens = 32;   ///< shorter common prefixes are not shared
    int64_t cache_mb = 512;    ///< generation: LRU budget for prefix KV caches across batches (0: none)
};

/// Sequences that share their first `len` tokens. len == 0: a group of sequences that share nothing
/// worth sharing (run as before, each one whole).
struct prefix_group {
    int64_t len = 0;
    std::vector<size_t> members;  ///< indices into the input, ascending
};

/// Partitions `seqs` into groups that share a prefix of at least `min_tokens` tokens (each such
/// group has two or more members), maximising the tokens saved, sum over groups of
/// (members - 1) * len, over the splits of the lexicographic order into contiguous runs (a group
/// interleaved around a deeper one, {s1, s4} sharing 2 around {s2, s3} sharing 10, is not
/// searched); the rest go into one group with len 0 (last; absent when empty).
/// `caps[i]`: at most this many of sequence i's tokens may be shared (generation keeps at least
/// the last prompt token to run per call, training every position that carries loss); empty:
/// size - 1. The order is that of the sequences cut to their caps (an O(n^2) dynamic programme
/// over n sequences); groups with len > 0 come in the order of their first member.
std::vector<prefix_group> find_prefix_groups(const std::vector<std::vector<int32_t>>& seqs,
                                             const std::vector<int64_t>& caps, int64_t min_tokens);

/// Length of the common prefix of a and b.
int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b);

/// Prefix KV caches of one model across generate_shared() calls, least recently used dropped first
/// while they hold more than the budget. Keyed by token ids; an entry of length L serves any
/// sequence that shares m <= L of its first tokens (the keys at slot p depend on tokens 0..p only).
/// The entries are only valid for the weights they were computed with: generate_shared() clears the
/// cache when the model's weights or adapters differ from the last call's (identity and version of
/// every tensor), so loading an adapter between two calls is safe.
class prefix_cache {
public:
    explicit prefix_cache(const prefix_options& o = {});
    ~prefix_cache();
    prefix_cache(const prefix_cache&) = delete;
    prefix_cache& operator=(const prefix_cache&) = delete;

    const prefix_options& options() const;
    size_t entries() const;
    int64_t bytes() const;
    void clear();

    struct impl;  ///< model/generate/prefix-cache.cpp
    impl& get() { return *p_; }

private:
    std::unique_ptr<impl> p_;
};

/// generate() with shared prefixes: the batch's prompts are grouped (find_prefix_groups, at least
/// `cache.options().min_tokens` in common), each group's prefix is prefilled once (or taken from
/// the cache, extended where the group shares more) and copied into its rows' KV cache, then every
/// row prefills only its own suffix and the whole batch decodes together. The same tokens as
/// generate() up to floating-point rounding. stats->prefill_tokens counts what was computed.
std::vector<generation> generate_shared(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                        const sampling_params& params, prefix_cache& cache,
                                        const stop_callback& on_sync = {}, generate_stats* stats = nullptr);

}  // namespace slm::model
