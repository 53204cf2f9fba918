// Generation loop: chunked prefill (left-padded whole prompts here; shared prefixes computed once in
// prefix-cache.cpp), then one token per step for the whole batch. The device never waits for the host
// between sync points; finished rows are dropped from the batch (and the cache) at sync points once
// enough of them have finished.
#include "model/generate.h"

#include <torch/torch.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "common/common.h"
#include "common/timing.h"
#include "model/generate/prefill.h"
#include "model/llama.h"

namespace slm::model {

// B batch rows still running, P longest prompt, N max new tokens, V vocab

const char* finish_reason_name(finish_reason r) {
    switch (r) {
        case finish_reason::eos: return "eos";
        case finish_reason::stop: return "stop";
        case finish_reason::length: return "length";
    }
    return "?";
}

namespace {

using clock_type = std::chrono::steady_clock;

// Next token per row from last-position logits (B, V) float32.  u (B) uniform draws in [0, 1).
torch::Tensor sample(const torch::Tensor& logits, const sampling_params& p, const torch::Tensor& u) {
    if (p.temperature <= 0.f) return logits.argmax(-1);  // (B)
    auto probs = torch::softmax(logits / p.temperature, -1);  // (B, V)
    torch::Tensor sorted, order;
    if (p.top_p < 1.f) {
        std::tie(sorted, order) = probs.sort(-1, /*descending=*/true);
        // keep the smallest prefix whose mass reaches top_p (the first token always stays)
        auto cum = sorted.cumsum(-1);
        sorted = sorted.masked_fill((cum - sorted) > p.top_p, 0.f);
    } else {
        sorted = probs;
    }
    auto cdf = sorted.cumsum(-1);                                            // (B, V)
    auto target = (u * cdf.select(-1, cdf.size(-1) - 1)).unsqueeze(1);      // (B, 1)
    auto pick = torch::searchsorted(cdf, target, /*out_int32=*/false, /*right=*/true).clamp_max(cdf.size(-1) - 1);
    return (order.defined() ? order.gather(1, pick) : pick).squeeze(1);      // (B)
}

// Left padding: row i's prompt occupies slots [pad_i, P); its token at slot s has position s - pad_i.
detail::prefilled prefill_padded(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                 int64_t P, int64_t N, const sampling_params& params) {
    const int64_t n_seq = static_cast<int64_t>(prompts.size());
    const auto dev = model.device();
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<int64_t> tok_host(n_seq * P, 0), pad(n_seq);
    detail::prefilled st;
    for (int64_t i = 0; i < n_seq; ++i) {
        pad[i] = P - static_cast<int64_t>(prompts[i].size());
        std::copy(prompts[i].begin(), prompts[i].end(), tok_host.begin() + i * P + pad[i]);
        st.prefill_tokens += static_cast<int64_t>(prompts[i].size());
        st.prefill_pad += pad[i];
    }
    auto tokens = torch::from_blob(tok_host.data(), {n_seq, P}, i64).to(dev);  // (B, P)
    auto pad_t = torch::tensor(pad, i64).to(dev);                                // (B)
    auto slots = torch::arange(P + N, i64.device(dev));                         // (P+N)
    st.key_valid = slots.unsqueeze(0) >= pad_t.unsqueeze(1);                    // (B, P+N)
    auto positions = (slots.narrow(0, 0, P).unsqueeze(0) - pad_t.unsqueeze(1)).clamp_min(0);  // (B, P)
    st.cache = model.new_cache(n_seq, P + N);
    const int64_t chunk = std::max(1, params.prefill_chunk);
    for (int64_t s = 0; s < P; s += chunk) {
        const int64_t n = std::min(chunk, P - s);
        forward_args a;
        a.tokens = tokens.narrow(1, s, n);
        a.positions = positions.narrow(1, s, n);
        a.key_valid = st.key_valid;
        a.cache = &st.cache;
        a.last_only = true;
        a.dense = true;
        st.logits = model.forward(a);
    }
    st.next_pos = (P - pad_t).unsqueeze(1);  // (B, 1)
    st.rows.resize(n_seq);
    std::iota(st.rows.begin(), st.rows.end(), 0);
    return st;
}

}  // namespace

std::vector<generation> generate(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                 const sampling_params& params, const stop_callback& on_sync,
                                 generate_stats* stats) {
    return detail::run_generation(model, prompts, params, on_sync, stats, nullptr);
}

namespace detail {

std::vector<generation> run_generation(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                       const sampling_params& params, const stop_callback& on_sync,
                                       generate_stats* stats, const prefill_fn& prefill) {
    c10::InferenceMode guard;
    const auto& cfg = model.config;
    const int64_t n_seq = static_cast<int64_t>(prompts.size());
    std::vector<generation> out(prompts.size());
    if (n_seq == 0) return out;
    int64_t P = 0, n_prompt = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
        if (prompts[i].empty())
            throw user_error(fmt::format("prompt {} is empty", i), "every prompt needs at least one token (BOS)");
        for (int32_t id : prompts[i])
            if (id < 0 || id >= cfg.vocab_size)
                throw user_error(fmt::format("prompt {} has token id {} outside the vocabulary (0..{})", i, id,
                                             cfg.vocab_size - 1),
                                 "the ids do not come from this model's tokenizer");
        P = std::max<int64_t>(P, static_cast<int64_t>(prompts[i].size()));
        n_prompt += static_cast<int64_t>(prompts[i].size());
    }
    if (P >= cfg.context_length)
        throw user_error(fmt::format("prompt of {} tokens does not fit the context length {}", P, cfg.context_length),
                         "shorten the prompt");
    if (!(params.top_p > 0.f && params.top_p <= 1.f))
        throw user_error(fmt::format("top-p {} is outside (0, 1]", params.top_p));
    const int64_t N = std::min<int64_t>(std::max(params.max_tokens, 0), cfg.context_length - P);
    if (N < params.max_tokens)
        log_warn("max tokens lowered from {} to {} to fit the context length {}", params.max_tokens, N,
                 cfg.context_length);
    if (N == 0) return out;
    const int sync_every = std::max(1, params.sync_every);

    const auto dev = model.device();
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    model.prepare_decode(n_seq);  // one-time work (4-bit copies) stays out of the timings
    auto t0 = clock_type::now();
    prefilled st = prefill ? prefill(P, N) : prefill_padded(model, prompts, P, N, params);
    auto& cache = st.cache;
    auto& key_valid = st.key_valid;
    torch::Tensor logits = st.logits;  // (B, 1, V)
    if (stats) {
        if (dev.is_cuda()) logits.cpu();  // wait for the device so the timing is honest
        stats->prefill_s = seconds_since(t0);
        stats->prefill_tokens = st.prefill_tokens;
        stats->prefill_pad = st.prefill_pad;
        stats->cached_tokens = st.cached_tokens;
    }
    auto t1 = clock_type::now();

    // draws for sampling come from one CPU generator, one per original sequence and step, so a
    // sequence's randomness does not depend on which rows are still running
    auto gen = at::detail::createCPUGenerator(params.seed);
    std::vector<int64_t> rows = st.rows;  // batch row -> sequence index
    std::vector<char> done(n_seq, 0);
    auto next_pos = st.next_pos;  // (B, 1) position of the next token
    auto rows_t = torch::tensor(rows, i64).to(dev);
    auto pending = torch::empty({n_seq, sync_every}, i64.device(dev));  // tokens since the last sync
    int64_t steps = 0, in_pending = 0;

    for (int64_t step = 0; step < N; ++step) {
        torch::Tensor u;
        if (params.temperature > 0.f) {
            u = torch::rand({n_seq}, gen, torch::TensorOptions().dtype(torch::kFloat32));
            u = u.to(dev).index_select(0, rows_t);
        }
        auto next = sample(logits.select(1, 0), params, u);  // (B)
        pending.select(1, in_pending).copy_(next);
        ++in_pending;
        ++steps;
        const bool last = step + 1 == N;
        if (in_pending == sync_every || last) {
            // host check: EOS, the caller's stop callback, and shrinking the batch
            auto got = pending.narrow(1, 0, in_pending).cpu();
            auto acc = got.accessor<int64_t, 2>();
            std::vector<int64_t> keep_rows;
            for (size_t r = 0; r < rows.size(); ++r) {
                const int64_t seq = rows[r];
                if (done[seq]) continue;
                auto& g = out[seq];
                for (int64_t j = 0; j < in_pending && !done[seq]; ++j) {
                    const int32_t id = static_cast<int32_t>(acc[r][j]);
                    if (std::find(params.eos_ids.begin(), params.eos_ids.end(), id) != params.eos_ids.end()) {
                        g.reason = finish_reason::eos;
                        done[seq] = 1;
                    } else {
                        g.tokens.push_back(id);
                    }
                }
                if (!done[seq] && on_sync) {
                    const int64_t keep = on_sync(static_cast<size_t>(seq), g.tokens);
                    if (keep >= 0) {
                        g.tokens.resize(std::min<size_t>(g.tokens.size(), static_cast<size_t>(keep)));
                        g.reason = finish_reason::stop;
                        done[seq] = 1;
                    }
                }
                if (!done[seq]) keep_rows.push_back(static_cast<int64_t>(r));
            }
            in_pending = 0;
            if (keep_rows.empty() || last) break;
            // drop finished rows once they are a quarter of the batch: the cache copy then pays off
            if (keep_rows.size() * 4 <= rows.size() * 3) {
                auto idx = torch::tensor(keep_rows, i64).to(dev);
                for (size_t l = 0; l < cache.k.size(); ++l) {
                    cache.k[l] = cache.k[l].index_select(0, idx);
                    cache.v[l] = cache.v[l].index_select(0, idx);
                }
                key_valid = key_valid.index_select(0, idx);
                next_pos = next_pos.index_select(0, idx);
                next = next.index_select(0, idx);
                pending = pending.index_select(0, idx);
                std::vector<int64_t> new_rows;
                for (auto r : keep_rows) new_rows.push_back(rows[r]);
                rows = std::move(new_rows);
                rows_t = torch::tensor(rows, i64).to(dev);
            }
        }
        forward_args a;
        a.tokens = next.unsqueeze(1);  // (B, 1)
        a.positions = next_pos;
        a.key_valid = key_valid;
        a.cache = &cache;
        logits = model.forward(a);
        next_pos = next_pos + 1;
    }
    if (stats) {
        stats->batch = n_seq;
        stats->prompt_tokens = n_prompt;
        stats->decode_steps = steps;
        stats->generated_tokens = 0;
        for (const auto& g : out) stats->generated_tokens += static_cast<int64_t>(g.tokens.size());
        stats->decode_s = seconds_since(t1);
    }
    return out;
}

}  // namespace detail
}  // namespace slm::model
