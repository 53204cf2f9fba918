// The Llama-family decoder's math: RMSNorm, rotate-half RoPE, grouped-query attention over a
// preallocated KV cache, SwiGLU MLP, and projections that carry optional LoRA adapters.
#include "model/llama.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <chrono>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "common/common.h"
#include "model/net/fused.h"

namespace slm::model {

// B batch, T time, S key slots, C channels, H heads, K kv heads, R = H/K, D head dim, F ffn, V vocab

void llama_config::validate(const std::string& source) const {
    auto need = [&](bool ok, const std::string& what) {
        if (!ok)
            throw user_error(fmt::format("{}: invalid model config: {}", source, what),
                             "the checkpoint's config (config.json or GGUF metadata) is incomplete or not a "
                             "Llama-family decoder");
    };
    need(vocab_size > 0, fmt::format("vocab size {}", vocab_size));
    need(dim > 0, fmt::format("hidden size {}", dim));
    need(n_layers > 0 && n_layers < 1024, fmt::format("{} layers", n_layers));
    need(n_heads > 0, fmt::format("{} attention heads", n_heads));
    need(n_kv_heads > 0 && n_heads % n_kv_heads == 0,
         fmt::format("{} key/value heads do not divide {} heads", n_kv_heads, n_heads));
    need(head_dim > 0 && head_dim % 2 == 0, fmt::format("head dim {} (must be even)", head_dim));
    need(ffn_dim > 0, fmt::format("feed-forward size {}", ffn_dim));
    need(context_length > 0 && context_length <= (1 << 24), fmt::format("context length {}", context_length));
    need(rms_eps > 0 && rms_eps < 1, fmt::format("rms eps {}", rms_eps));
    need(rope_theta > 1, fmt::format("rope theta {}", rope_theta));
    need(rope_freq_factors.empty() || static_cast<int64_t>(rope_freq_factors.size()) == head_dim / 2,
         fmt::format("{} rope frequency factors for head dim {}", rope_freq_factors.size(), head_dim));
}

std::string llama_config::summary() const {
    return fmt::format("{}: {} layers, C {}, H {}/K {}, D {}, F {}, V {}, ctx {}, theta {:g}, eps {:g}{}{}", arch,
                       n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab_size, context_length, rope_theta,
                       rms_eps, tied_embeddings ? ", tied" : "", qkv_bias ? ", qkv bias" : "");
}

std::vector<float> llama3_rope_factors(int64_t head_dim, float theta, float factor, float low_freq_factor,
                                       float high_freq_factor, int64_t original_context) {
    // transformers' _compute_llama3_parameters, expressed as divisors (llama.cpp's rope_freqs)
    const double low_wavelen = original_context / low_freq_factor;
    const double high_wavelen = original_context / high_freq_factor;
    std::vector<float> out;
    for (int64_t i = 0; i < head_dim; i += 2) {
        const double inv_freq = 1.0 / std::pow(static_cast<double>(theta), static_cast<double>(i) / head_dim);
        const double wavelen = 2 * M_PI / inv_freq;
        if (wavelen < high_wavelen) {
            out.push_back(1.f);
        } else if (wavelen > low_wavelen) {
            out.push_back(factor);
        } else {
            const double smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
            out.push_back(static_cast<float>(1.0 / ((1 - smooth) / factor + smooth)));
        }
    }
    return out;
}

const char* proj_name(proj p) {
    switch (p) {
        case proj::q: return "q";
        case proj::k: return "k";
        case proj::v: return "v";
        case proj::o: return "o";
        case proj::gate: return "gate";
        case proj::up: return "up";
        case proj::down: return "down";
    }
    return "?";
}

lora_linear& llama_layer::projection(proj p) {
    return const_cast<lora_linear&>(static_cast<const llama_layer*>(this)->projection(p));
}
const lora_linear& llama_layer::projection(proj p) const {
    switch (p) {
        case proj::q: return wq;
        case proj::k: return wk;
        case proj::v: return wv;
        case proj::o: return wo;
        case proj::gate: return w_gate;
        case proj::up: return w_up;
        case proj::down: return w_down;
    }
    SLM_ASSERT(false, "bad projection {}", static_cast<int>(p));
}

namespace {

// y = x W^T + b. A single fp32 row on the CPU goes through gemv: OpenBLAS's sgemm is ~3x slower
// for M = 1, and batch-1 decoding is all M = 1.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
    if (x.numel() == x.size(-1) && x.scalar_type() == torch::kFloat32 && x.is_cpu() && !x.requires_grad() &&
        !w.requires_grad()) {
        auto sizes = x.sizes().vec();
        sizes.back() = w.size(0);
        auto y = torch::mv(w, x.reshape({-1}));
        if (b.defined()) y = y + b;
        return y.view(sizes);
    }
    return torch::linear(x, w, b);
}

}  // namespace

torch::Tensor int4_weight::forward(const torch::Tensor& x) const {
    auto sizes = x.sizes().vec();
    auto x2 = x.reshape({-1, sizes.back()}).to(torch::kBFloat16);            // (M, in)
    auto y = at::_weight_int4pack_mm_for_cpu(x2, packed, 32, scale_zero);    // (M, out)
    sizes.back() = y.size(-1);
    return y.view(sizes).to(x.scalar_type());
}

int4_weight int4_weight::quantize(const torch::Tensor& w) {
    int4_weight r;
    const int64_t N = w.size(0), K = w.size(1), G = 32;
    if (!w.is_cpu() || K % G != 0 || N % 16 != 0) return r;
    torch::NoGradGuard ng;
    // one pass per group of 32 (min, max, scale, q): the tensor-op version made ~8 passes and took
    // seconds for SmolLM2
    auto wf = w.to(torch::kFloat32).contiguous();                            // (N, K)
    auto q = torch::empty({N, K}, torch::TensorOptions().dtype(torch::kInt32));
    auto sz = torch::empty({K / G, N, 2}, torch::TensorOptions().dtype(torch::kFloat32));  // scale, zero
    const float* src = wf.data_ptr<float>();
    int32_t* qd = q.data_ptr<int32_t>();
    float* szd = sz.data_ptr<float>();
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
            for (int64_t g = 0; g < K / G; ++g) {
                const float* x = src + n * K + g * G;
                float mn = x[0], mx = x[0];
                for (int64_t i = 1; i < G; ++i) mn = std::min(mn, x[i]), mx = std::max(mx, x[i]);
                const float scale = std::max((mx - mn) / 15.f, 1e-12f), inv = 1.f / scale;
                int32_t* qo = qd + n * K + g * G;
                for (int64_t i = 0; i < G; ++i)
                    qo[i] = static_cast<int32_t>(std::clamp(std::nearbyint((x[i] - mn) * inv), 0.f, 15.f));
                szd[(g * N + n) * 2] = scale;
                szd[(g * N + n) * 2 + 1] = mn + 8.f * scale;                 // w = (q - 8) scale + zero
            }
    });
    r.scale_zero = sz.to(torch::kBFloat16);                                  // (K/G, N, 2)
    try {
        r.packed = at::_convert_weight_to_int4pack_for_cpu(q, 1);
    } catch (const c10::Error&) {
        return {};
    }
    return r;
}

torch::Tensor lora_linear::lora_input(const torch::Tensor& x) const {
    // the adapter computes in its own dtype (fp32 while training) and hands back x's dtype
    auto xa = x.to(lora_a.scalar_type());
    if (lora_dropout > 0 && torch::GradMode::is_enabled()) xa = torch::dropout(xa, lora_dropout, /*train=*/true);
    return xa;
}

namespace {
// (alpha/r) B A xa for an input from lora_input(), in the adapter's dtype
torch::Tensor lora_product(const torch::Tensor& xa, const torch::Tensor& a, const torch::Tensor& b, double scale) {
    // the scale on the rank-r product, not on the (..., out) one: r columns instead of out, each way
    return torch::linear(torch::linear(xa, a) * scale, b);  // (..., out)
}

// Float32 deltas of projections that read the same adapter input xa (q/k/v, gate/up), undefined
// where a projection has no adapter. With two or more, their A's are stacked (sum of r, in) for one
// product: xa is read once each way (and its gradient written once) instead of once per projection.
std::vector<torch::Tensor> shared_input_deltas(const torch::Tensor& xa, const std::vector<const lora_linear*>& ps) {
    std::vector<torch::Tensor> out(ps.size());
    std::vector<torch::Tensor> as;
    for (const auto* p : ps)
        if (p->has_lora()) as.push_back(p->lora_a);
    if (as.size() < 2) {
        for (size_t i = 0; i < ps.size(); ++i)
            if (ps[i]->has_lora()) out[i] = lora_product(xa, ps[i]->lora_a, ps[i]->lora_b, ps[i]->lora_scale).to(torch::kFloat32);
        return out;
    }
    auto ax = torch::linear(xa, torch::cat(as, 0));  // (..., sum r)
    int64_t off = 0;
    for (size_t i = 0; i < ps.size(); ++i) {
        if (!ps[i]->has_lora()) continue;
        const int64_t r = ps[i]->lora_a.size(0);
        out[i] = torch::linear(ax.narrow(-1, off, r) * ps[i]->lora_scale, ps[i]->lora_b).to(torch::kFloat32);
        off += r;
    }
    return out;
}
}  // namespace

torch::Tensor lora_linear::forward(const torch::Tensor& x) const {
    auto y = linear(x, weight, bias);  // (..., out)
    if (!lora_a.defined()) return y;
    // added in place in the adapter's dtype, rounded once to y's (one pass; the product's backward
    // does not read its output, so autograd allows it)
    auto d = lora_product(lora_input(x), lora_a, lora_b, lora_scale);
    return y.add_(d);
}

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps) {
    auto xf = x.to(torch::kFloat32);                                   // (..., C)
    auto inv = torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);  // (..., 1)
    return w * (xf * inv).to(x.scalar_type());
}

torch::Tensor unpermute_interleaved_rope(const torch::Tensor& w, int64_t n_heads) {
    // interleaved pairs (x0,x1),(x2,x3).. of each head -> halves (x0,x2,..),(x1,x3,..), as
    // transformers' convert_llama_weights_to_hf permute(): view(H, D/2, 2, ...).transpose(1, 2)
    auto sizes = w.sizes().vec();
    const int64_t rows = sizes[0];
    SLM_ASSERT(rows % (2 * n_heads) == 0, "rows {} for {} heads", rows, n_heads);
    std::vector<int64_t> v = {n_heads, rows / n_heads / 2, 2};
    v.insert(v.end(), sizes.begin() + 1, sizes.end());
    return w.reshape(v).transpose(1, 2).reshape(sizes).contiguous();
}

torch::ScalarType parse_dtype(const std::string& name) {
    if (name == "fp32" || name == "float32" || name == "f32") return torch::kFloat32;
    if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
    if (name == "fp16" || name == "float16" || name == "f16") return torch::kFloat16;
    throw user_error(fmt::format("unknown dtype '{}'", name), "use fp32 or bf16");
}

const char* dtype_name(torch::ScalarType t) {
    switch (t) {
        case torch::kFloat32: return "fp32";
        case torch::kBFloat16: return "bf16";
        case torch::kFloat16: return "fp16";
        default: return "other";
    }
}

// ---- the model ---------------------------------------------------------------------------------

void llama_model::finalize() {
    const auto& c = config;
    const int64_t D = c.head_dim;
    SLM_ASSERT(tok_embd.defined(), "finalize() before the weights are set");
    // float32 like transformers' LlamaRotaryEmbedding: inv_freq = 1 / theta^(2i/D), angle = p * inv_freq
    auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    auto inv_freq = 1.0 / torch::pow(torch::tensor(c.rope_theta, f32),
                                     torch::arange(0, D, 2, torch::kInt64).to(torch::kFloat32) / D);  // (D/2)
    if (!c.rope_freq_factors.empty()) inv_freq = inv_freq / torch::tensor(c.rope_freq_factors, f32);
    auto pos = torch::arange(c.context_length, torch::kInt64).to(torch::kFloat32);  // (P)
    auto ang = torch::outer(pos, inv_freq);                                         // (P, D/2)
    auto emb = torch::cat({ang, ang}, -1);                                          // (P, D)
    rope_cos_ = emb.cos().to(device());
    rope_sin_ = emb.sin().to(device());

    // fuse q/k/v and gate/up, then point the projections at row views of the fused tensors
    for (auto& L : layers) {
        L.qkv_weight = torch::cat({L.wq.weight, L.wk.weight, L.wv.weight}, 0);
        const int64_t nq = L.wq.out_features(), nk = L.wk.out_features(), nv = L.wv.out_features();
        L.wq.weight = L.qkv_weight.narrow(0, 0, nq);
        L.wk.weight = L.qkv_weight.narrow(0, nq, nk);
        L.wv.weight = L.qkv_weight.narrow(0, nq + nk, nv);
        if (L.wq.bias.defined() && L.wk.bias.defined() && L.wv.bias.defined()) {
            L.qkv_bias = torch::cat({L.wq.bias, L.wk.bias, L.wv.bias}, 0);
            L.wq.bias = L.qkv_bias.narrow(0, 0, nq);
            L.wk.bias = L.qkv_bias.narrow(0, nq, nk);
            L.wv.bias = L.qkv_bias.narrow(0, nq + nk, nv);
        } else {
            L.qkv_bias = torch::Tensor();
        }
        const int64_t F = L.w_gate.out_features();
        L.gate_up_weight = torch::cat({L.w_gate.weight, L.w_up.weight}, 0);
        L.w_gate.weight = L.gate_up_weight.narrow(0, 0, F);
        L.w_up.weight = L.gate_up_weight.narrow(0, F, F);
    }
}

void llama_model::to(torch::ScalarType dt, torch::Device dev) {
    auto mv = [&](torch::Tensor& t) {
        if (t.defined()) t = t.to(dev, dt);
    };
    const bool tied = output.defined() && output.is_same(tok_embd);
    mv(tok_embd);
    mv(out_norm);
    if (tied)
        output = tok_embd;
    else
        mv(output);
    for (auto& L : layers) {
        mv(L.attn_norm);
        mv(L.ffn_norm);
        for (int p = 0; p < n_projs; ++p) {
            auto& P = L.projection(static_cast<proj>(p));
            mv(P.weight), mv(P.bias), mv(P.lora_a), mv(P.lora_b);
        }
        L.qkv4 = L.wo4 = L.gate_up4 = L.down4 = int4_weight{};  // stale after a cast: enable again
    }
    output4 = int4_weight{};
    int4_max_rows = 0;
    finalize();
}

kv_cache llama_model::new_cache(int64_t batch, int64_t capacity) const {
    kv_cache c;
    auto opt = torch::TensorOptions().dtype(torch::kFloat32).device(device());  // see attention()
    for (size_t l = 0; l < layers.size(); ++l) {
        c.k.push_back(torch::zeros({batch, config.n_kv_heads, capacity, config.head_dim}, opt));
        c.v.push_back(torch::zeros({batch, config.n_kv_heads, capacity, config.head_dim}, opt));
    }
    return c;
}

int64_t llama_model::n_params() const {
    int64_t n = tok_embd.numel() + out_norm.numel();
    if (output.defined() && !output.is_same(tok_embd)) n += output.numel();
    for (const auto& L : layers) {
        n += L.attn_norm.numel() + L.ffn_norm.numel();
        for (int p = 0; p < n_projs; ++p) {
            const auto& P = L.projection(static_cast<proj>(p));
            n += P.weight.numel() + (P.bias.defined() ? P.bias.numel() : 0);
        }
    }
    return n;
}

namespace {

// rotate-half RoPE: x * cos + [-x2, x1] * sin.   x (B, H, T, D), cos/sin (B, 1, T, D)
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    const int64_t half = x.size(-1) / 2;
    auto x1 = x.narrow(-1, 0, half);
    auto x2 = x.narrow(-1, half, half);
    auto rot = torch::cat({-x2, x1}, -1);
    return x * cos + rot * sin;
}

}  // namespace

torch::Tensor llama_model::attention(const llama_layer& L, int64_t layer, const torch::Tensor& x,
                                     const torch::Tensor& cos, const torch::Tensor& sin, const attn_mask& mask,
                                     const forward_args& a) const {
    kv_cache* cache = a.cache;
    const auto& c = config;
    const int64_t B = x.size(0), T = x.size(1), H = c.n_heads, K = c.n_kv_heads, D = c.head_dim, R = H / K;
    torch::Tensor q, k, v;
    bool roped = false;  // q, k, v already (B, heads, T, D) float32 with RoPE (the fused kernel)
    const bool no_qkv_lora = !L.wq.has_lora() && !L.wk.has_lora() && !L.wv.has_lora();
    if (L.qkv_weight.defined() && L.wq.bias.defined() == L.qkv_bias.defined()) {
        // one matmul for the three base projections; adapters (training) add their deltas after
        auto qkv = no_qkv_lora && !a.dense && use_int4(x) && L.qkv4.defined()
                       ? (L.qkv_bias.defined() ? L.qkv4.forward(x) + L.qkv_bias : L.qkv4.forward(x))
                       : linear(x, L.qkv_weight, L.qkv_bias);  // (B, T, (H + 2K) * D)
        torch::Tensor dq, dk, dv;  // the adapters' deltas, float32
        if (!no_qkv_lora) {
            const auto& first = L.wq.has_lora() ? L.wq : L.wk.has_lora() ? L.wk : L.wv;
            auto xa = first.lora_input(x);  // one dropout mask for the three
            auto d = shared_input_deltas(xa, {&L.wq, &L.wk, &L.wv});
            dq = d[0], dk = d[1], dv = d[2];
        }
        if (use_fused(qkv) && cos.scalar_type() == qkv.scalar_type()) {
            // one pass: the adds, RoPE and the cast to float32 (fused.h), same rounding as below
            auto r = fused::qkv_rope(qkv, dq, dk, dv, cos, sin, H, K, D);
            q = r[0], k = r[1], v = r[2];
            roped = true;
        } else {
            q = qkv.narrow(-1, 0, H * D);
            k = qkv.narrow(-1, H * D, K * D);
            v = qkv.narrow(-1, (H + K) * D, K * D);
            if (dq.defined()) q = q + dq.to(q.scalar_type());
            if (dk.defined()) k = k + dk.to(k.scalar_type());
            if (dv.defined()) v = v + dv.to(v.scalar_type());
        }
    } else {
        q = L.wq.forward(x), k = L.wk.forward(x), v = L.wv.forward(x);
    }
    if (!roped) {
        // the op chain: heads apart, RoPE in the model dtype, then float32
        q = q.reshape({B, T, H, D}).transpose(1, 2);  // (B, H, T, D)
        k = k.reshape({B, T, K, D}).transpose(1, 2);  // (B, K, T, D)
        v = v.reshape({B, T, K, D}).transpose(1, 2);  // (B, K, T, D)
        q = apply_rope(q, cos, sin);
        k = apply_rope(k, cos, sin);
        // attention runs in float32 whatever the weights' dtype: bf16 scores (magnitude ~10-30) would
        // lose a tenth of a logit, enough to flip greedy choices; the cache is float32 for that reason
        k = k.to(torch::kFloat32);
        v = v.to(torch::kFloat32);
    }
    torch::Tensor keys = k, values = v;  // (B, K, S, D)
    if (cache) {
        const int64_t past = cache->len;
        cache->k[layer].narrow(2, past, T).copy_(k);
        cache->v[layer].narrow(2, past, T).copy_(v);
        keys = cache->k[layer].narrow(2, 0, past + T);
        values = cache->v[layer].narrow(2, 0, past + T);
    } else if (a.prefix) {
        // the attention kernels take one key tensor per row: the prefix's keys are expanded into
        // it (read, not recomputed), and expand's backward sums the rows' gradients
        auto pk = a.prefix->k[layer], pv = a.prefix->v[layer];  // (1|B, K, P, D)
        if (pk.size(0) != B) pk = pk.expand({B, -1, -1, -1}), pv = pv.expand({B, -1, -1, -1});
        keys = torch::cat({pk, k}, 2);    // (B, K, P+T, D)
        values = torch::cat({pv, v}, 2);
    }
    if (a.capture) {
        a.capture->k[layer] = keys;
        a.capture->v[layer] = values;
    }
    const int64_t S = keys.size(2);
    torch::Tensor y;  // (B, H, T, D) float32
    if (explicit_attention) {
        // reference path: grouped-query attention without repeating K/V, the R query heads of one
        // kv head as rows; bias is additive, -inf where `allowed` is false
        auto qg = q.to(torch::kFloat32).contiguous().view({B, K, R * T, D});         // (B, K, R*T, D)
        auto att = torch::matmul(qg, keys.transpose(-2, -1)) * (1.0 / std::sqrt(double(D)));  // (B, K, R*T, S)
        att = att.view({B, K, R, T, S});
        if (mask.allowed.defined() || mask.causal) {
            auto allowed = mask.allowed.defined() ? mask.allowed
                                                  : torch::ones({T, S}, torch::TensorOptions().dtype(torch::kBool)
                                                                            .device(x.device())).tril(S - T).view({1, 1, T, S});
            auto bias = torch::zeros(allowed.sizes(), torch::TensorOptions().dtype(torch::kFloat32).device(x.device()))
                            .masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());  // (B|1, 1, T, S)
            att = att + bias.unsqueeze(1);                                            // (B|1, 1, 1, T, S)
        }
        att = torch::softmax(att, -1).view({B, K, R * T, S});
        y = torch::matmul(att, values).view({B, H, T, D});                            // (B, H, T, D)
    } else {
        // fused attention (flash kernel on CPU and CUDA where the shapes allow), GQA without a copy
        y = at::scaled_dot_product_attention(q.to(torch::kFloat32), keys, values,
                                             mask.allowed.defined() ? std::optional<torch::Tensor>(mask.allowed)
                                                                    : std::nullopt,
                                             /*dropout_p=*/0.0, /*is_causal=*/mask.causal && !mask.allowed.defined(),
                                             /*scale=*/std::nullopt, /*enable_gqa=*/K != H);  // (B, H, T, D)
    }
    y = y.transpose(1, 2).reshape({B, T, H * D}).to(x.scalar_type());                 // (B, T, H*D)
    if (!a.dense && use_int4(y) && L.wo4.defined() && !L.wo.has_lora()) return L.wo4.forward(y);
    return L.wo.forward(y);                                                       // (B, T, C)
}

torch::Tensor llama_model::forward(const forward_args& a) const {
    const auto& c = config;
    SLM_ASSERT(a.tokens.dim() == 2, "tokens must be (B, T)");
    const int64_t B = a.tokens.size(0), T = a.tokens.size(1);
    SLM_ASSERT(!(a.cache && a.prefix), "a forward call takes a cache or a prefix, not both");
    const int64_t past = a.cache ? a.cache->len : a.prefix ? a.prefix->len : 0, S = past + T;
    if (a.prefix)
        SLM_ASSERT(a.prefix->k.size() == layers.size() && a.prefix->v.size() == layers.size(),
                   "prefix has {} layers, the model {}", a.prefix->k.size(), layers.size());
    if (a.capture) {
        a.capture->k.assign(layers.size(), torch::Tensor());
        a.capture->v.assign(layers.size(), torch::Tensor());
        a.capture->len = S;
    }
    if (a.cache) {
        SLM_ASSERT(a.cache->batch() == B, "cache batch {} != {}", a.cache->batch(), B);
        SLM_ASSERT(S <= a.cache->capacity(), "cache overflow: {} slots needed, {} allocated", S, a.cache->capacity());
    }
    const auto dev = device();
    auto positions = a.positions.defined() ? a.positions
                                           : (torch::arange(past, S, torch::TensorOptions().dtype(torch::kInt64).device(dev))
                                                  .unsqueeze(0)
                                                  .expand({B, T}));  // (B, T)
    if (S > c.context_length)
        throw user_error(fmt::format("sequence of {} tokens exceeds the model's context length {}", S, c.context_length),
                         "use a shorter prompt or fewer --max-tokens");
    auto pos_flat = positions.reshape({-1}).clamp(0, c.context_length - 1);
    auto cos = rope_cos_.index_select(0, pos_flat).view({B, 1, T, c.head_dim}).to(dtype());  // (B, 1, T, D)
    auto sin = rope_sin_.index_select(0, pos_flat).view({B, 1, T, c.head_dim}).to(dtype());

    // which key slots each query sees: causal, padding slots masked; a query always sees its own
    // slot so that padding rows stay finite. Plain causal (no cache, no padding) needs no tensor.
    attn_mask mask;
    if (a.key_valid.defined() || (T > 1 && past > 0)) {
        auto iopt = torch::TensorOptions().dtype(torch::kInt64).device(dev);
        auto qslot = torch::arange(past, S, iopt).view({T, 1});  // (T, 1)
        auto kslot = torch::arange(0, S, iopt).view({1, S});     // (1, S)
        auto allowed = (kslot <= qslot).unsqueeze(0);            // (1, T, S)
        if (a.key_valid.defined()) {
            SLM_ASSERT(a.key_valid.size(0) == B && a.key_valid.size(1) >= S, "key_valid must be (B, >= S)");
            allowed = allowed.logical_and(a.key_valid.narrow(1, 0, S).unsqueeze(1));  // (B, T, S)
        }
        allowed = allowed.logical_or((kslot == qslot).unsqueeze(0));
        mask.allowed = allowed.unsqueeze(1);  // (B|1, 1, T, S)
    } else {
        mask.causal = T > 1;  // T == 1 after a full cache: every slot is visible
    }

    auto x = torch::embedding(tok_embd, a.tokens);  // (B, T, C)
    for (size_t l = 0; l < layers.size(); ++l) {
        const auto& L = layers[l];
        auto h = x + attention(L, static_cast<int64_t>(l), norm(x, L.attn_norm), cos, sin, mask, a);
        auto m = norm(h, L.ffn_norm);  // (B, T, C)
        torch::Tensor gate, up, act;  // (B, T, F)
        if (L.gate_up_weight.defined()) {
            const bool no_lora = !L.w_gate.has_lora() && !L.w_up.has_lora();
            auto gu = no_lora && !a.dense && use_int4(m) && L.gate_up4.defined() ? L.gate_up4.forward(m)
                                                                     : linear(m, L.gate_up_weight, torch::Tensor());  // (B, T, 2F)
            torch::Tensor dg, du;  // the adapters' deltas, float32
            if (!no_lora) {
                auto ma = (L.w_gate.has_lora() ? L.w_gate : L.w_up).lora_input(m);  // one dropout mask for both
                auto d = shared_input_deltas(ma, {&L.w_gate, &L.w_up});
                dg = d[0], du = d[1];
            }
            if (use_fused(gu)) {
                act = fused::swiglu(gu, dg, du);  // the adds and silu(gate) * up in one pass
            } else {
                gate = gu.narrow(-1, 0, c.ffn_dim);
                up = gu.narrow(-1, c.ffn_dim, c.ffn_dim);
                if (dg.defined()) gate = gate + dg.to(gate.scalar_type());
                if (du.defined()) up = up + du.to(up.scalar_type());
            }
        } else {
            gate = L.w_gate.forward(m), up = L.w_up.forward(m);
        }
        if (!act.defined()) act = torch::silu(gate) * up;  // (B, T, F)
        auto ff = !a.dense && use_int4(act) && L.down4.defined() && !L.w_down.has_lora() ? L.down4.forward(act)
                                                                            : L.w_down.forward(act);  // (B, T, C)
        x = h + ff;
    }
    if (a.cache) a.cache->len = S;
    if (a.last_only) x = x.narrow(1, T - 1, 1);  // (B, 1, C)
    x = norm(x, out_norm);
    if (a.hidden) return x.to(torch::kFloat32);  // (B, T, C)
    if (!a.dense && use_int4(x) && output4.defined()) return output4.forward(x).to(torch::kFloat32);  // (B, T, V)
    return linear(x, output, torch::Tensor()).to(torch::kFloat32);  // (B, T, V)
}

bool llama_model::fused_kernels_default() {
    static const bool on = [] {
        const char* e = std::getenv("SLMCTL_FUSED_KERNELS");
        return !(e && std::string(e) == "0");
    }();
    return on;
}

bool llama_model::use_fused(const torch::Tensor& x) const { return fused_kernels && fused::supported(x); }

torch::Tensor llama_model::norm(const torch::Tensor& x, const torch::Tensor& w) const {
    if (use_fused(x) && w.scalar_type() == x.scalar_type() && !w.requires_grad()) return fused::rms_norm(x, w, config.rms_eps);
    return rms_norm(x, w, config.rms_eps);
}

bool llama_model::use_int4(const torch::Tensor& x) const {
    if (int4_max_rows <= 0 || x.numel() / x.size(-1) > int4_max_rows || torch::GradMode::is_enabled() || !x.is_cpu())
        return false;
    // the copies belong to the weights, not to this call: made once, on first use
    std::call_once(*int4_once_, [this] { const_cast<llama_model*>(this)->build_int4(); });
    return true;
}

void llama_model::prepare_decode(int64_t rows) const {
    if (int4_max_rows > 0 && rows <= int4_max_rows && device().is_cpu())
        std::call_once(*int4_once_, [this] { const_cast<llama_model*>(this)->build_int4(); });
}

bool llama_model::enable_int4_decode(int64_t max_rows, bool head_too) {
    if (!device().is_cpu() || layers.empty()) return false;
    // the kernel's shape rules, checked now so that the lazy build cannot fail
    auto ok = [](const torch::Tensor& w) { return w.defined() && w.size(1) % 32 == 0 && w.size(0) % 16 == 0; };
    for (const auto& L : layers)
        if (!ok(L.qkv_weight) || !ok(L.wo.weight) || !ok(L.gate_up_weight) || !ok(L.w_down.weight)) return false;
    if (head_too && !ok(output)) return false;
    int4_head_ = head_too;
    int4_once_ = std::make_shared<std::once_flag>();
    int4_max_rows = max_rows;
    return true;
}

void llama_model::build_int4() {
    const auto t0 = std::chrono::steady_clock::now();
    torch::NoGradGuard ng;
    for (auto& L : layers) {
        L.qkv4 = int4_weight::quantize(L.qkv_weight);
        L.wo4 = int4_weight::quantize(L.wo.weight);
        L.gate_up4 = int4_weight::quantize(L.gate_up_weight);
        L.down4 = int4_weight::quantize(L.w_down.weight);
    }
    if (int4_head_) output4 = int4_weight::quantize(output);
    log_verbose("int4 decode copies made in {:.2f} s", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

torch::Tensor llama_model::forward(const torch::Tensor& tokens) const {
    forward_args a;
    a.tokens = tokens;
    return forward(a);
}

}  // namespace slm::model
