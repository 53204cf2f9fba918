// Fused CPU kernels (see fused.h): RMSNorm, SwiGLU with the LoRA adds, and the q/k/v split with
// the LoRA adds, RoPE and the cast to float32, each one pass forward and one backward.
//
// Rounding follows the op chains they replace (model/net/llama.cpp): in bf16 every intermediate
// the chain stores as a bf16 tensor is rounded here too (round-to-nearest-even), so the forward
// values match the chain exactly up to exp/sum ulps, and the gradients are the chain's own
// formulas. Loops are plain per-row float code that the compiler vectorizes (-O3, -march=native):
// bf16 <-> float is a shift and a rounding add, exp a Cephes-style polynomial (~1 ulp).
#include "model/net/fused.h"

#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/common.h"

namespace slm::model::fused {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- element types ---------------------------------------------------------------------------
struct f32 {
    using S = float;
    static float ld(S v) { return v; }
    static S st(float v) { return v; }
    static float rd(float v) { return v; }
};
struct b16 {
    using S = uint16_t;
    static float ld(S v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }
    static S st(float f) {  // round to nearest even; NaN stays NaN
        const uint32_t u = std::bit_cast<uint32_t>(f);
        const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
        return (u & 0x7FFFFFFFu) > 0x7F800000u ? static_cast<uint16_t>(0x7FC0) : static_cast<uint16_t>(r);
    }
    static float rd(float v) { return ld(st(v)); }
};

// e^x to ~1 ulp, branch-free so that loops over it vectorize: x = n ln2 + r, e^r by a degree-6
// polynomial on |r| <= ln2/2 (Cephes expf), 2^n through the exponent bits.
inline float exp_approx(float x) {
    x = x < -87.3f ? -87.3f : x;  // not fmin/fmax: their NaN rules keep the loops scalar
    x = x > 88.3f ? 88.3f : x;
    const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    const int32_t e = (static_cast<int32_t>(n) + 127) << 23;
    return p * std::bit_cast<float>(e);
}

// autograd functions take no undefined tensors: an absent optional input travels as an empty one
at::Tensor opt_in(const at::Tensor& t) { return t.defined() ? t : at::empty({0}); }
bool given(const at::Tensor& t) { return t.defined() && t.numel() > 0; }

template <class S>
S* ptr(const at::Tensor& t) {
    return given(t) ? reinterpret_cast<S*>(t.data_ptr()) : nullptr;
}

// per-thread scratch rows
std::vector<float>& scratch(int which, int64_t n) {
    thread_local std::vector<float> buf[4];
    if (static_cast<int64_t>(buf[which].size()) < n) buf[which].resize(n);
    return buf[which];
}

constexpr int64_t k_grain = 8;  // rows per parallel chunk

// ---- RMSNorm ---------------------------------------------------------------------------------
template <class X>
void rms_fwd(const typename X::S* x, const typename X::S* w, typename X::S* y, float* inv, int64_t M, int64_t C,
             float eps) {
    at::parallel_for(0, M, k_grain, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const auto* xr = x + m * C;
            auto* yr = y + m * C;
            float acc[16] = {};
            int64_t c = 0;
            for (; c + 16 <= C; c += 16)
                for (int j = 0; j < 16; ++j) {
                    const float v = X::ld(xr[c + j]);
                    acc[j] += v * v;
                }
            float ss = 0;
            for (int j = 0; j < 16; ++j) ss += acc[j];
            for (; c < C; ++c) ss += X::ld(xr[c]) * X::ld(xr[c]);
            const float r = 1.f / std::sqrt(ss / static_cast<float>(C) + eps);
            inv[m] = r;
            for (c = 0; c < C; ++c) yr[c] = X::st(X::ld(w[c]) * X::rd(X::ld(xr[c]) * r));
        }
    });
}

template <class X>
void rms_bwd(const typename X::S* x, const typename X::S* w, const typename X::S* g, const float* inv,
             typename X::S* dx, int64_t M, int64_t C) {
    at::parallel_for(0, M, k_grain, [&](int64_t m0, int64_t m1) {
        for (int64_t m = m0; m < m1; ++m) {
            const auto* xr = x + m * C;
            const auto* gr = g + m * C;
            auto* dr = dx + m * C;
            float acc[16] = {};
            int64_t c = 0;
            for (; c + 16 <= C; c += 16)
                for (int j = 0; j < 16; ++j)
                    acc[j] += X::rd(X::ld(gr[c + j]) * X::ld(w[c + j])) * X::ld(xr[c + j]);
            float dot = 0;
            for (int j = 0; j < 16; ++j) dot += acc[j];
            for (; c < C; ++c) dot += X::rd(X::ld(gr[c]) * X::ld(w[c])) * X::ld(xr[c]);
            const float r = inv[m], coef = r * r * r * dot / static_cast<float>(C);
            // d/dx of x * r(x): r g - x r^3 <g, x> / C, with g the gradient at the normalized x
            for (c = 0; c < C; ++c) dr[c] = X::st(r * X::rd(X::ld(gr[c]) * X::ld(w[c])) - X::ld(xr[c]) * coef);
        }
    });
}

struct rms_fn : torch::autograd::Function<rms_fn> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& w, double eps) {
        auto x = x_in.contiguous();
        const int64_t C = x.size(-1), M = x.numel() / C;
        auto y = at::empty_like(x);
        auto inv = at::empty({M}, x.options().dtype(at::kFloat));
        if (x.scalar_type() == at::kFloat)
            rms_fwd<f32>(ptr<float>(x), ptr<float>(w), ptr<float>(y), ptr<float>(inv), M, C, static_cast<float>(eps));
        else
            rms_fwd<b16>(ptr<uint16_t>(x), ptr<uint16_t>(w), ptr<uint16_t>(y), ptr<float>(inv), M, C,
                         static_cast<float>(eps));
        ctx->save_for_backward({x, w, inv});
        return y;
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto s = ctx->get_saved_variables();
        const auto &x = s[0], &w = s[1], &inv = s[2];
        auto g = grads[0].to(x.scalar_type()).contiguous();
        const int64_t C = x.size(-1), M = x.numel() / C;
        auto dx = at::empty_like(x);
        if (x.scalar_type() == at::kFloat)
            rms_bwd<f32>(ptr<float>(x), ptr<float>(w), ptr<float>(g), ptr<float>(inv), ptr<float>(dx), M, C);
        else
            rms_bwd<b16>(ptr<uint16_t>(x), ptr<uint16_t>(w), ptr<uint16_t>(g), ptr<float>(inv), ptr<uint16_t>(dx), M,
                         C);
        return {dx, at::Tensor(), at::Tensor()};
    }
};

// ---- SwiGLU with the LoRA adds ---------------------------------------------------------------
// gate/up rows after the adds (rounded to the model dtype), into float rows gb/ub
template <class X>
void gate_up_row(const typename X::S* gu, const float* dg, const float* du, float* gb, float* ub, int64_t F) {
    for (int64_t f = 0; f < F; ++f) gb[f] = X::ld(gu[f]);
    for (int64_t f = 0; f < F; ++f) ub[f] = X::ld(gu[F + f]);
    if (dg)
        for (int64_t f = 0; f < F; ++f) gb[f] = X::rd(gb[f] + X::rd(dg[f]));
    if (du)
        for (int64_t f = 0; f < F; ++f) ub[f] = X::rd(ub[f] + X::rd(du[f]));
}

template <class X>
void swiglu_fwd(const typename X::S* gu, const float* dg, const float* du, typename X::S* saved, typename X::S* out,
                int64_t M, int64_t F) {
    at::parallel_for(0, M, k_grain, [&](int64_t m0, int64_t m1) {
        float* gb = scratch(0, F).data();
        float* ub = scratch(1, F).data();
        for (int64_t m = m0; m < m1; ++m) {
            gate_up_row<X>(gu + m * 2 * F, dg ? dg + m * F : nullptr, du ? du + m * F : nullptr, gb, ub, F);
            if (saved) {
                auto* sr = saved + m * 2 * F;
                for (int64_t f = 0; f < F; ++f) sr[f] = X::st(gb[f]);
                for (int64_t f = 0; f < F; ++f) sr[F + f] = X::st(ub[f]);
            }
            auto* o = out + m * F;
            for (int64_t f = 0; f < F; ++f) {
                const float s = X::rd(gb[f] / (1.f + exp_approx(-gb[f])));  // silu, stored in the dtype
                o[f] = X::st(s * ub[f]);
            }
        }
    });
}

template <class X>
void swiglu_bwd(const typename X::S* gu, const typename X::S* g, typename X::S* dgu, int64_t M, int64_t F) {
    at::parallel_for(0, M, k_grain, [&](int64_t m0, int64_t m1) {
        // float rows first: the vectorizer takes these simple loops, not one over three dtypes' rows
        float* __restrict xb = scratch(0, F).data();
        float* __restrict ub = scratch(1, F).data();
        float* __restrict db = scratch(2, F).data();
        float* __restrict gb = scratch(3, F).data();
        for (int64_t m = m0; m < m1; ++m) {
            const auto* __restrict gr = gu + m * 2 * F;
            const auto* __restrict dr = g + m * F;
            for (int64_t f = 0; f < F; ++f) xb[f] = X::ld(gr[f]);
            for (int64_t f = 0; f < F; ++f) ub[f] = X::ld(gr[F + f]);
            for (int64_t f = 0; f < F; ++f) db[f] = X::ld(dr[f]);
            for (int64_t f = 0; f < F; ++f) {
                const float x = xb[f], u = ub[f], d = db[f];
                const float e = exp_approx(-x), sig = 1.f / (1.f + e);
                const float s = X::rd(x / (1.f + e));
                const float ds = X::rd(d * u);
                ub[f] = X::rd(d * s);                                  // d up
                gb[f] = ds * sig * (1.f + x * (1.f - sig));            // d gate: silu'(x) = sig (1 + x (1 - sig))
            }
            auto* __restrict og = dgu + m * 2 * F;
            for (int64_t f = 0; f < F; ++f) og[f] = X::st(gb[f]);
            for (int64_t f = 0; f < F; ++f) og[F + f] = X::st(ub[f]);
        }
    });
}

struct swiglu_fn : torch::autograd::Function<swiglu_fn> {
    static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gu_in, const at::Tensor& dg_in,
                              const at::Tensor& du_in) {
        auto gu = gu_in.contiguous();
        const int64_t F = gu.size(-1) / 2, M = gu.numel() / (2 * F);
        auto dg = given(dg_in) ? dg_in.contiguous() : at::Tensor();
        auto du = given(du_in) ? du_in.contiguous() : at::Tensor();
        auto sizes = gu.sizes().vec();
        sizes.back() = F;
        auto out = at::empty(sizes, gu.options());
        // the backward needs gate and up after the adds: the input itself when there are none
        auto saved = dg.defined() || du.defined() ? at::empty_like(gu) : gu;
        if (gu.scalar_type() == at::kFloat)
            swiglu_fwd<f32>(ptr<float>(gu), ptr<float>(dg), ptr<float>(du),
                            saved.is_same(gu) ? nullptr : ptr<float>(saved), ptr<float>(out), M, F);
        else
            swiglu_fwd<b16>(ptr<uint16_t>(gu), ptr<float>(dg), ptr<float>(du),
                            saved.is_same(gu) ? nullptr : ptr<uint16_t>(saved), ptr<uint16_t>(out), M, F);
        ctx->save_for_backward({saved});
        ctx->saved_data["dg"] = dg.defined();
        ctx->saved_data["du"] = du.defined();
        return out;
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto saved = ctx->get_saved_variables()[0];
        const int64_t F = saved.size(-1) / 2, M = saved.numel() / (2 * F);
        auto g = grads[0].to(saved.scalar_type()).contiguous();
        auto dgu = at::empty_like(saved);
        if (saved.scalar_type() == at::kFloat)
            swiglu_bwd<f32>(ptr<float>(saved), ptr<float>(g), ptr<float>(dgu), M, F);
        else
            swiglu_bwd<b16>(ptr<uint16_t>(saved), ptr<uint16_t>(g), ptr<uint16_t>(dgu), M, F);
        at::Tensor d_dg, d_du;
        if (ctx->saved_data["dg"].toBool()) d_dg = dgu.narrow(-1, 0, F).to(at::kFloat);
        if (ctx->saved_data["du"].toBool()) d_du = dgu.narrow(-1, F, F).to(at::kFloat);
        return {dgu, d_dg, d_du};
    }
};

// ---- q/k/v split, LoRA adds, RoPE, float32 ---------------------------------------------------
struct qkv_dims {
    int64_t M, W, H, K, D;
};

// row m of cos/sin (M, D) as floats
template <class X>
void cos_sin_row(const typename X::S* cs, const typename X::S* sn, int64_t m, int64_t D, float* cf, float* sf) {
    for (int64_t i = 0; i < D; ++i) cf[i] = X::ld(cs[m * D + i]), sf[i] = X::ld(sn[m * D + i]);
}

template <class X>
void qkv_fwd(const typename X::S* qkv, const float* dq, const float* dk, const float* dv, const typename X::S* cs,
             const typename X::S* sn, float* q, float* k, float* v, const qkv_dims& d) {
    const int64_t D = d.D, half = D / 2, HD = d.H * D, KD = d.K * D;
    at::parallel_for(0, d.M, k_grain, [&](int64_t m0, int64_t m1) {
        float* xv = scratch(0, D).data();
        float* cf = scratch(1, D).data();
        float* sf = scratch(2, D).data();
        for (int64_t m = m0; m < m1; ++m) {
            const auto* row = qkv + m * d.W;
            cos_sin_row<X>(cs, sn, m, D, cf, sf);
            // q and k heads: x = rd(base + rd(delta)), out = rd(rd(x cos) + rd(rot(x) sin))
            auto rope = [&](const typename X::S* base, const float* delta, float* out) {
                for (int64_t i = 0; i < D; ++i) xv[i] = X::ld(base[i]);
                if (delta)
                    for (int64_t i = 0; i < D; ++i) xv[i] = X::rd(xv[i] + X::rd(delta[i]));
                for (int64_t i = 0; i < half; ++i)
                    out[i] = X::rd(X::rd(xv[i] * cf[i]) + X::rd(-xv[i + half] * sf[i]));
                for (int64_t i = half; i < D; ++i)
                    out[i] = X::rd(X::rd(xv[i] * cf[i]) + X::rd(xv[i - half] * sf[i]));
            };
            for (int64_t h = 0; h < d.H; ++h)
                rope(row + h * D, dq ? dq + m * HD + h * D : nullptr, q + (m * d.H + h) * D);
            for (int64_t h = 0; h < d.K; ++h)
                rope(row + HD + h * D, dk ? dk + m * KD + h * D : nullptr, k + (m * d.K + h) * D);
            const auto* vb = row + HD + KD;
            float* vo = v + m * KD;
            for (int64_t i = 0; i < KD; ++i) vo[i] = X::ld(vb[i]);
            if (dv)
                for (int64_t i = 0; i < KD; ++i) vo[i] = X::rd(vo[i] + X::rd(dv[m * KD + i]));
        }
    });
}

template <class X>
void qkv_bwd(const float* gq, const float* gk, const float* gv, const typename X::S* cs, const typename X::S* sn,
             typename X::S* dqkv, const qkv_dims& d) {
    const int64_t D = d.D, half = D / 2, HD = d.H * D, KD = d.K * D;
    at::parallel_for(0, d.M, k_grain, [&](int64_t m0, int64_t m1) {
        float* gt = scratch(0, D).data();
        float* cf = scratch(1, D).data();
        float* sf = scratch(2, D).data();
        for (int64_t m = m0; m < m1; ++m) {
            auto* row = dqkv + m * d.W;
            cos_sin_row<X>(cs, sn, m, D, cf, sf);
            // the chain's backward: g rounded to the dtype (the cast), then x gets g cos and, through
            // rot, +g sin from the second half (i < D/2) or -g sin from the first (i >= D/2)
            auto unrope = [&](const float* g, typename X::S* out) {
                if (!g) {
                    for (int64_t i = 0; i < D; ++i) out[i] = X::st(0.f);
                    return;
                }
                for (int64_t i = 0; i < D; ++i) gt[i] = X::rd(g[i]);
                for (int64_t i = 0; i < half; ++i)
                    out[i] = X::st(X::rd(gt[i] * cf[i]) + X::rd(gt[i + half] * sf[i + half]));
                for (int64_t i = half; i < D; ++i)
                    out[i] = X::st(X::rd(gt[i] * cf[i]) - X::rd(gt[i - half] * sf[i - half]));
            };
            for (int64_t h = 0; h < d.H; ++h) unrope(gq ? gq + (m * d.H + h) * D : nullptr, row + h * D);
            for (int64_t h = 0; h < d.K; ++h) unrope(gk ? gk + (m * d.K + h) * D : nullptr, row + HD + h * D);
            auto* vo = row + HD + KD;
            if (gv)
                for (int64_t i = 0; i < KD; ++i) vo[i] = X::st(gv[m * KD + i]);
            else
                for (int64_t i = 0; i < KD; ++i) vo[i] = X::st(0.f);
        }
    });
}

struct qkv_fn : torch::autograd::Function<qkv_fn> {
    // returns q (B, T, H, D), k and v (B, T, K, D), float32, contiguous
    static variable_list forward(AutogradContext* ctx, const at::Tensor& qkv_in, const at::Tensor& dq_in,
                                 const at::Tensor& dk_in, const at::Tensor& dv_in, const at::Tensor& cos_in,
                                 const at::Tensor& sin_in, int64_t H, int64_t K, int64_t D) {
        auto qkv = qkv_in.contiguous();
        const int64_t B = qkv.size(0), T = qkv.size(1);
        const qkv_dims d{B * T, qkv.size(2), H, K, D};
        auto c = [](const at::Tensor& t) { return given(t) ? t.contiguous() : at::Tensor(); };
        auto dq = c(dq_in), dk = c(dk_in), dv = c(dv_in);
        auto cs = cos_in.expand({B, 1, T, D}).contiguous(), sn = sin_in.expand({B, 1, T, D}).contiguous();
        auto f = qkv.options().dtype(at::kFloat);
        auto q = at::empty({B, T, H, D}, f), k = at::empty({B, T, K, D}, f), v = at::empty({B, T, K, D}, f);
        if (qkv.scalar_type() == at::kFloat)
            qkv_fwd<f32>(ptr<float>(qkv), ptr<float>(dq), ptr<float>(dk), ptr<float>(dv), ptr<float>(cs),
                         ptr<float>(sn), ptr<float>(q), ptr<float>(k), ptr<float>(v), d);
        else
            qkv_fwd<b16>(ptr<uint16_t>(qkv), ptr<float>(dq), ptr<float>(dk), ptr<float>(dv), ptr<uint16_t>(cs),
                         ptr<uint16_t>(sn), ptr<float>(q), ptr<float>(k), ptr<float>(v), d);
        ctx->save_for_backward({cs, sn});
        ctx->saved_data["qkv_sizes"] = qkv.sizes().vec();
        ctx->saved_data["dtype"] = static_cast<int64_t>(qkv.scalar_type());
        ctx->saved_data["dq"] = dq.defined();
        ctx->saved_data["dk"] = dk.defined();
        ctx->saved_data["dv"] = dv.defined();
        ctx->saved_data["hkd"] = std::vector<int64_t>{H, K, D};
        return {q, k, v};
    }
    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto s = ctx->get_saved_variables();
        const auto &cs = s[0], &sn = s[1];
        const auto sizes = ctx->saved_data["qkv_sizes"].toIntVector();
        const auto dt = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
        const auto hkd = ctx->saved_data["hkd"].toIntVector();
        const qkv_dims d{sizes[0] * sizes[1], sizes[2], hkd[0], hkd[1], hkd[2]};
        auto c = [](const at::Tensor& t) { return t.defined() ? t.to(at::kFloat).contiguous() : at::Tensor(); };
        auto gq = c(grads[0]), gk = c(grads[1]), gv = c(grads[2]);
        auto dqkv = at::empty(sizes, cs.options().dtype(dt));
        if (dt == at::kFloat)
            qkv_bwd<f32>(ptr<float>(gq), ptr<float>(gk), ptr<float>(gv), ptr<float>(cs), ptr<float>(sn),
                         ptr<float>(dqkv), d);
        else
            qkv_bwd<b16>(ptr<float>(gq), ptr<float>(gk), ptr<float>(gv), ptr<uint16_t>(cs), ptr<uint16_t>(sn),
                         ptr<uint16_t>(dqkv), d);
        const int64_t HD = d.H * d.D, KD = d.K * d.D;
        auto part = [&](bool has, int64_t off, int64_t n) {
            return has ? dqkv.narrow(-1, off, n).to(at::kFloat) : at::Tensor();
        };
        return {dqkv,         part(ctx->saved_data["dq"].toBool(), 0, HD),
                part(ctx->saved_data["dk"].toBool(), HD, KD), part(ctx->saved_data["dv"].toBool(), HD + KD, KD),
                at::Tensor(), at::Tensor(),              at::Tensor(),              at::Tensor(),
                at::Tensor()};
    }
};

}  // namespace

bool supported(const at::Tensor& x) {
    return x.defined() && x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16);
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
    SLM_ASSERT(supported(x) && w.scalar_type() == x.scalar_type() && !w.requires_grad() && w.numel() == x.size(-1),
               "fused::rms_norm: x {} / w {}", c10::str(x.sizes()), c10::str(w.sizes()));
    return rms_fn::apply(x, w.contiguous(), eps);
}

at::Tensor swiglu(const at::Tensor& gu, const at::Tensor& dgate, const at::Tensor& dup) {
    SLM_ASSERT(supported(gu) && gu.size(-1) % 2 == 0, "fused::swiglu: gu {}", c10::str(gu.sizes()));
    for (const auto* t : {&dgate, &dup})
        SLM_ASSERT(!t->defined() || (t->scalar_type() == at::kFloat && t->numel() * 2 == gu.numel()),
                   "fused::swiglu: delta {}", c10::str(t->sizes()));
    return swiglu_fn::apply(gu, opt_in(dgate), opt_in(dup));
}

std::array<at::Tensor, 3> qkv_rope(const at::Tensor& qkv, const at::Tensor& dq, const at::Tensor& dk,
                                   const at::Tensor& dv, const at::Tensor& cos, const at::Tensor& sin, int64_t H,
                                   int64_t K, int64_t D) {
    SLM_ASSERT(supported(qkv) && qkv.dim() == 3 && qkv.size(2) == (H + 2 * K) * D && D % 2 == 0,
               "fused::qkv_rope: qkv {}", c10::str(qkv.sizes()));
    SLM_ASSERT(cos.scalar_type() == qkv.scalar_type() && sin.scalar_type() == qkv.scalar_type() &&
                   cos.size(-1) == D && sin.size(-1) == D,
               "fused::qkv_rope: cos/sin {}", c10::str(cos.sizes()));
    const int64_t n[3] = {H * D, K * D, K * D};
    const at::Tensor* ds[3] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; ++i)
        SLM_ASSERT(!ds[i]->defined() || (ds[i]->scalar_type() == at::kFloat && ds[i]->size(-1) == n[i] &&
                                         ds[i]->numel() / n[i] == qkv.size(0) * qkv.size(1)),
                   "fused::qkv_rope: delta {}", c10::str(ds[i]->sizes()));
    auto r = qkv_fn::apply(qkv, opt_in(dq), opt_in(dk), opt_in(dv), cos, sin, H, K, D);
    return {r[0].transpose(1, 2), r[1].transpose(1, 2), r[2].transpose(1, 2)};
}

}  // namespace slm::model::fused
