// Sentence embeddings from a decoder: mean-pooled final hidden states (for `cluster --embedder
// model:PATH`). Right padding is safe under causal attention: real tokens only see earlier ones.
#include <torch/torch.h>

#include <algorithm>
#include <numeric>

#include "common/common.h"
#include "model/llama.h"
#include "model/model.h"

namespace slm::model {

// N texts, B batch, T padded length, C hidden size
std::vector<float> language_model::embed_mean_pooled(const std::vector<std::string>& texts, int max_tokens,
                                                     int batch_size) const {
    SLM_ASSERT(max_tokens > 0 && batch_size > 0, "max_tokens {} batch_size {}", max_tokens, batch_size);
    const auto& m = decoder();
    const int64_t C = m.config.dim, N = static_cast<int64_t>(texts.size());
    std::vector<std::vector<int32_t>> ids(N);
    for (int64_t i = 0; i < N; ++i) {
        ids[i] = encode(texts[i], /*add_special=*/true);
        if (ids[i].empty()) ids[i] = eos_ids().empty() ? std::vector<int32_t>{0} : std::vector<int32_t>{eos_ids()[0]};
        if (static_cast<int>(ids[i].size()) > max_tokens) ids[i].resize(max_tokens);
    }
    // longest first: batches of similar lengths waste little on padding
    std::vector<int64_t> order(N);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a].size() > ids[b].size(); });

    std::vector<float> out(static_cast<size_t>(N * C), 0.f);
    torch::InferenceMode guard;
    progress prog("embed", static_cast<uint64_t>(N), "texts");
    for (int64_t s = 0; s < N; s += batch_size) {
        const int64_t B = std::min<int64_t>(batch_size, N - s);
        const int64_t T = static_cast<int64_t>(ids[order[s]].size());
        auto tok = torch::zeros({B, T}, torch::kInt64);     // (B, T)
        auto valid = torch::zeros({B, T}, torch::kFloat32);  // (B, T)
        auto ta = tok.accessor<int64_t, 2>();
        auto va = valid.accessor<float, 2>();
        for (int64_t b = 0; b < B; ++b) {
            const auto& v = ids[order[s + b]];
            for (size_t t = 0; t < v.size(); ++t) {
                ta[b][t] = v[t];
                va[b][t] = 1.f;
            }
        }
        forward_args a;
        a.tokens = tok.to(m.device());
        a.hidden = true;
        auto h = m.forward(a);                                        // (B, T, C)
        auto w = valid.to(m.device()).unsqueeze(-1);                   // (B, T, 1)
        auto pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.f);        // (B, C)
        pooled = torch::nn::functional::normalize(pooled, torch::nn::functional::NormalizeFuncOptions().dim(1));
        pooled = pooled.to(torch::kCPU).contiguous();
        const float* p = pooled.data_ptr<float>();
        for (int64_t b = 0; b < B; ++b) std::copy(p + b * C, p + (b + 1) * C, out.begin() + order[s + b] * C);
        prog.add(static_cast<uint64_t>(B));
    }
    return out;
}

}  // namespace slm::model
