// Shared prefixes for generation: grouping a batch's prompts by their longest common token
// prefixes, the LRU of prefix KV caches, and the prefill that computes each prefix once.
#include "model/prefix.h"

#include <torch/torch.h>

#include <algorithm>
#include <list>
#include <numeric>

#include "common/common.h"
#include "model/generate/prefill.h"
#include "model/llama.h"

namespace slm::model {

// B batch rows, G rows of one group, L shared prefix length, S longest suffix of a group,
// P prompt slots (the batch's longest prompt), N new tokens, K kv heads, D head dim, V vocabulary

int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return static_cast<int64_t>(i);
}

std::vector<prefix_group> find_prefix_groups(const std::vector<std::vector<int32_t>>& seqs,
                                             const std::vector<int64_t>& caps, int64_t min_tokens) {
    const size_t n = seqs.size();
    SLM_ASSERT(caps.empty() || caps.size() == n, "{} caps for {} sequences", caps.size(), n);
    min_tokens = std::max<int64_t>(1, min_tokens);
    std::vector<int64_t> cap(n);
    for (size_t i = 0; i < n; ++i) {
        const auto len = static_cast<int64_t>(seqs[i].size());
        cap[i] = std::clamp<int64_t>(caps.empty() ? len - 1 : caps[i], 0, len);
    }
    // each sequence cut to what it may share, so one that may share little sorts before the longer
    // ones it opens like, not between them; in lexicographic order a run's common prefix is then
    // the smallest adjacent one inside it
    std::vector<std::vector<int32_t>> keys(n);
    for (size_t i = 0; i < n; ++i) keys[i].assign(seqs[i].begin(), seqs[i].begin() + cap[i]);
    std::vector<size_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
    std::vector<int64_t> lcp(n, 0);  // lcp[k]: of o[k-1] and o[k]
    for (size_t k = 1; k < n; ++k) lcp[k] = common_prefix(keys[o[k - 1]], keys[o[k]]);
    // dp[j]: most tokens saved by the first j sorted sequences; run [from[j], j) shares len[j]
    std::vector<int64_t> dp(n + 1, 0), from(n + 1, 0), len(n + 1, 0);
    for (size_t j = 0; j < n; ++j) {
        dp[j + 1] = dp[j];
        from[j + 1] = static_cast<int64_t>(j);
        int64_t L = cap[o[j]];
        for (size_t i = j; i-- > 0;) {
            L = std::min({L, lcp[i + 1], cap[o[i]]});
            if (L < min_tokens) break;  // only shrinks as the run grows
            const int64_t v = dp[i] + static_cast<int64_t>(j - i) * L;
            if (v > dp[j + 1]) {
                dp[j + 1] = v;
                from[j + 1] = static_cast<int64_t>(i);
                len[j + 1] = L;
            }
        }
    }
    std::vector<prefix_group> out;
    prefix_group rest;
    for (size_t j = n; j > 0;) {
        const auto i = static_cast<size_t>(from[j]);
        if (len[j] > 0) {
            prefix_group g;
            g.len = len[j];
            for (size_t k = i; k < j; ++k) g.members.push_back(o[k]);
            std::sort(g.members.begin(), g.members.end());
            out.push_back(std::move(g));
        } else {
            rest.members.push_back(o[i]);
        }
        j = i;
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.members[0] < b.members[0]; });
    if (!rest.members.empty()) {
        std::sort(rest.members.begin(), rest.members.end());
        out.push_back(std::move(rest));
    }
    return out;
}

// ---- the cache -----------------------------------------------------------------------------------

namespace {

struct entry {
    std::vector<int32_t> tokens;    // the prefix
    std::vector<torch::Tensor> k, v;  // per layer (1, K, L, D) float32
    int64_t bytes = 0;
    uint64_t used = 0;
};

// Identity and version of every tensor the keys/values depend on: a new adapter, a merged one or
// an optimizer step changes it.
uint64_t weights_fingerprint(const llama_model& m) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&](uint64_t x) { h = (h ^ x) * 1099511628211ull; };
    auto add = [&](const torch::Tensor& t) {
        if (!t.defined()) return mix(0);
        mix(reinterpret_cast<uintptr_t>(t.data_ptr()));
        mix(t.is_inference() ? 0 : static_cast<uint64_t>(t._version()));
    };
    mix(reinterpret_cast<uintptr_t>(&m));
    add(m.tok_embd);
    for (const auto& L : m.layers) {
        add(L.attn_norm);
        add(L.ffn_norm);
        for (int p = 0; p < n_projs; ++p) {
            const auto& P = L.projection(static_cast<proj>(p));
            add(P.weight), add(P.bias), add(P.lora_a), add(P.lora_b);
            mix(static_cast<uint64_t>(P.lora_scale * 1e9));
        }
    }
    return h;
}

}  // namespace

struct prefix_cache::impl {
    prefix_options o;
    std::list<entry> entries;
    int64_t bytes = 0;
    uint64_t tick = 0;
    uint64_t fingerprint = 0;

    void check_model(const llama_model& m) {
        const uint64_t f = weights_fingerprint(m);
        if (f != fingerprint) {
            entries.clear();
            bytes = 0;
            fingerprint = f;
        }
    }
    // The entry sharing the most of seq's first `cap` tokens, and how many (0: none).
    std::list<entry>::iterator best(const std::vector<int32_t>& seq, int64_t cap, int64_t& m) {
        m = 0;
        auto found = entries.end();
        for (auto it = entries.begin(); it != entries.end(); ++it) {
            const int64_t c = std::min(cap, common_prefix(it->tokens, seq));
            if (c > m || (c == m && c > 0 && it->used > found->used)) m = c, found = it;
        }
        return found;
    }
    void insert(entry e) {
        const int64_t budget = o.cache_mb << 20;
        if (e.bytes > budget) return;
        e.used = ++tick;
        bytes += e.bytes;
        entries.push_front(std::move(e));
        while (bytes > budget) {
            auto lru = std::min_element(entries.begin(), entries.end(),
                                        [](const entry& a, const entry& b) { return a.used < b.used; });
            bytes -= lru->bytes;
            entries.erase(lru);
        }
    }
    void erase(std::list<entry>::iterator it) {
        bytes -= it->bytes;
        entries.erase(it);
    }
};

prefix_cache::prefix_cache(const prefix_options& o) : p_(std::make_unique<impl>()) { p_->o = o; }
prefix_cache::~prefix_cache() = default;
const prefix_options& prefix_cache::options() const { return p_->o; }
size_t prefix_cache::entries() const { return p_->entries.size(); }
int64_t prefix_cache::bytes() const { return p_->bytes; }
void prefix_cache::clear() {
    p_->entries.clear();
    p_->bytes = 0;
}

// ---- the shared prefill --------------------------------------------------------------------------

namespace {

struct prefix_kv {
    std::vector<torch::Tensor> k, v;  // per layer (1, K, >= L, D)
};

// The keys/values of seq[0, L): from the cache where it has them, the rest prefilled in one row
// (and the result cached).
prefix_kv compute_prefix(const llama_model& m, prefix_cache::impl& C, const std::vector<int32_t>& seq, int64_t L,
                         int64_t chunk, detail::prefilled& st) {
    int64_t have = 0;
    auto e = C.best(seq, L, have);
    if (have == L) {
        e->used = ++C.tick;
        st.cached_tokens += L;
        return {e->k, e->v};
    }
    auto c = m.new_cache(1, L);
    if (have > 0) {
        for (size_t l = 0; l < c.k.size(); ++l) {
            c.k[l].narrow(2, 0, have).copy_(e->k[l].narrow(2, 0, have));
            c.v[l].narrow(2, 0, have).copy_(e->v[l].narrow(2, 0, have));
        }
        c.len = have;
        st.cached_tokens += have;
    }
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<int64_t> ids(seq.begin() + have, seq.begin() + L);
    auto tokens = torch::tensor(ids, i64).to(m.device()).unsqueeze(0);  // (1, L - have)
    for (int64_t s = 0; s < L - have; s += chunk) {
        forward_args a;
        a.tokens = tokens.narrow(1, s, std::min(chunk, L - have - s));
        a.cache = &c;
        a.last_only = true;
        a.dense = true;
        a.hidden = true;  // only the keys/values are wanted
        m.forward(a);
    }
    st.prefill_tokens += L - have;
    prefix_kv out{c.k, c.v};
    if (C.o.cache_mb > 0) {
        // an entry this one extends is superseded by it
        if (have > 0 && have == static_cast<int64_t>(e->tokens.size())) C.erase(e);
        entry n;
        n.tokens.assign(seq.begin(), seq.begin() + L);
        n.k = c.k;
        n.v = c.v;
        for (size_t l = 0; l < c.k.size(); ++l) n.bytes += 2 * c.k[l].numel() * static_cast<int64_t>(sizeof(float));
        C.insert(std::move(n));
    }
    return out;
}

detail::prefilled prefill_shared(const llama_model& m, const std::vector<std::vector<int32_t>>& prompts, int64_t P,
                                 int64_t N, const sampling_params& sp, prefix_cache::impl& C) {
    C.check_model(m);
    const int64_t B = static_cast<int64_t>(prompts.size()), min_tokens = std::max<int64_t>(1, C.o.min_tokens);
    const int64_t chunk = std::max(1, sp.prefill_chunk);
    struct plan {
        std::vector<size_t> members;
        int64_t len = 0;
    };
    std::vector<plan> plans;
    std::vector<size_t> alone;
    for (auto& g : find_prefix_groups(prompts, {}, min_tokens)) {
        if (g.len > 0)
            plans.push_back({std::move(g.members), g.len});
        else
            alone = std::move(g.members);
    }
    // a prompt that shares nothing in this batch may still share an earlier batch's prefix
    std::vector<size_t> rest;
    for (size_t i : alone) {
        int64_t have = 0;
        if (C.o.cache_mb > 0) C.best(prompts[i], static_cast<int64_t>(prompts[i].size()) - 1, have);
        if (have >= min_tokens)
            plans.push_back({{i}, have});
        else
            rest.push_back(i);
    }
    if (!rest.empty()) plans.push_back({rest, 0});

    const auto dev = m.device();
    const auto i64 = torch::TensorOptions().dtype(torch::kInt64);
    detail::prefilled st;
    st.cache = m.new_cache(B, P + N);
    st.key_valid = torch::zeros({B, P + N}, torch::TensorOptions().dtype(torch::kBool).device(dev));  // (B, P+N)
    st.key_valid.narrow(1, P, N).fill_(true);
    st.logits = torch::empty({B, 1, m.config.vocab_size}, torch::TensorOptions().dtype(torch::kFloat32).device(dev));
    std::vector<int64_t> next_pos;
    int64_t r0 = 0;
    // each group's rows [r0, r0 + G) hold, in slots [off, P): its prefix, then each row's suffix
    // left-padded to the group's longest, so every row's last prompt token sits in slot P - 1
    for (const auto& g : plans) {
        const int64_t G = static_cast<int64_t>(g.members.size()), L = g.len;
        int64_t S = 0;
        for (size_t i : g.members) S = std::max<int64_t>(S, static_cast<int64_t>(prompts[i].size()) - L);
        const int64_t off = P - (L + S);
        auto rows_k = [&](const torch::Tensor& t) { return t.narrow(0, r0, G).narrow(2, off, L + S); };
        if (L > 0) {
            auto kv = compute_prefix(m, C, prompts[g.members[0]], L, chunk, st);
            for (size_t l = 0; l < kv.k.size(); ++l) {  // (1, K, L, D) broadcast over the group's rows
                rows_k(st.cache.k[l]).narrow(2, 0, L).copy_(kv.k[l].narrow(2, 0, L));
                rows_k(st.cache.v[l]).narrow(2, 0, L).copy_(kv.v[l].narrow(2, 0, L));
            }
            st.key_valid.narrow(0, r0, G).narrow(1, off, L).fill_(true);
        }
        std::vector<int64_t> tok(G * S, 0), pos(G * S, L);
        for (int64_t r = 0; r < G; ++r) {
            const auto& p = prompts[g.members[r]];
            const int64_t s = static_cast<int64_t>(p.size()) - L, pad = S - s;
            for (int64_t t = 0; t < s; ++t) {
                tok[r * S + pad + t] = p[L + t];
                pos[r * S + pad + t] = L + t;
            }
            st.key_valid[r0 + r].narrow(0, off + L + pad, s).fill_(true);
            st.prefill_tokens += s;
            st.prefill_pad += pad;
            st.rows.push_back(static_cast<int64_t>(g.members[r]));
            next_pos.push_back(static_cast<int64_t>(p.size()));
        }
        auto tokens = torch::tensor(tok, i64).view({G, S}).to(dev);     // (G, S)
        auto positions = torch::tensor(pos, i64).view({G, S}).to(dev);  // (G, S)
        kv_cache view;  // the group's rows and slots of the batch cache (writes land there)
        for (size_t l = 0; l < st.cache.k.size(); ++l) {
            view.k.push_back(rows_k(st.cache.k[l]));
            view.v.push_back(rows_k(st.cache.v[l]));
        }
        view.len = L;
        auto valid = st.key_valid.narrow(0, r0, G).narrow(1, off, L + S);  // (G, L+S)
        torch::Tensor logits;
        for (int64_t s = 0; s < S; s += chunk) {
            const int64_t n = std::min(chunk, S - s);
            forward_args a;
            a.tokens = tokens.narrow(1, s, n);
            a.positions = positions.narrow(1, s, n);
            a.key_valid = valid;
            a.cache = &view;
            a.last_only = true;
            a.dense = true;
            logits = m.forward(a);  // (G, 1, V)
        }
        st.logits.narrow(0, r0, G).copy_(logits);
        r0 += G;
    }
    st.cache.len = P;
    st.next_pos = torch::tensor(next_pos, i64).to(dev).unsqueeze(1);  // (B, 1)
    return st;
}

}  // namespace

std::vector<generation> generate_shared(const llama_model& model, const std::vector<std::vector<int32_t>>& prompts,
                                        const sampling_params& params, prefix_cache& cache,
                                        const stop_callback& on_sync, generate_stats* stats) {
    if (!cache.options().enabled) return generate(model, prompts, params, on_sync, stats);
    auto& C = cache.get();
    return detail::run_generation(model, prompts, params, on_sync, stats, [&](int64_t P, int64_t N) {
        return prefill_shared(model, prompts, P, N, params, C);
    });
}

}  // namespace slm::model
