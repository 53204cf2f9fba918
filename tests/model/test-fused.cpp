// The fused CPU kernels (model/net/fused.h) against the libtorch op chains they replace: forward
// values and gradients of RMSNorm, SwiGLU with LoRA deltas, and the q/k/v split + deltas + RoPE +
// float32 cast, in fp32 (float rounding) and bf16 (the chain's rounding points); then a whole
// LoRA-carrying decoder, fused on and off: the same loss, LoRA gradients and greedy tokens.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include "model/adapter.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/net/fused.h"
#include "tests/model/check-tensor.h"

#include <filesystem>

using namespace slm;
using slm::test::check_tensor;

namespace {

torch::Tensor randn(std::vector<int64_t> shape, torch::ScalarType dt, uint64_t seed, double scale = 1.0) {
    auto g = at::detail::createCPUGenerator(seed);
    return (torch::randn(shape, g, torch::TensorOptions().dtype(torch::kFloat32)) * scale).to(dt);
}

// the reference chain of llama.cpp's apply_rope
torch::Tensor rope_chain(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
    const int64_t half = x.size(-1) / 2;
    auto rot = torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
    return x * cos + rot * sin;
}

// max |a - b| relative to max |b|
double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
    auto af = a.to(torch::kFloat32), bf = b.to(torch::kFloat32);
    return (af - bf).abs().max().item<double>() / std::max(1e-30, bf.abs().max().item<double>());
}

// Gradients of sum(out * probe) with respect to `inputs` (each a leaf requiring grad).
std::vector<torch::Tensor> grads_of(const torch::Tensor& out, const torch::Tensor& probe,
                                    const std::vector<torch::Tensor>& inputs) {
    auto l = (out.to(torch::kFloat32) * probe).sum();
    auto gs = torch::autograd::grad({l}, inputs);
    return gs;
}

// A model in `dtype` without tokenizer or 4-bit copies, on one thread (small shapes; ctest runs
// binaries side by side).
std::unique_ptr<model::language_model> load(const std::string& path, const std::string& dtype) {
    model::set_torch_threads(1);
    model::load_options o;
    o.dtype = dtype;
    o.tokenizer = false;
    o.int4_decode = "off";
    return model::load_model(path, o);
}

torch::Tensor random_tokens(int64_t B, int64_t T, int64_t lo, int64_t hi, uint64_t seed) {
    return torch::randint(lo, hi, {B, T}, at::detail::createCPUGenerator(seed), torch::TensorOptions().dtype(torch::kInt64));
}

void check_close(const torch::Tensor& fused, const torch::Tensor& chain, const std::string& what, double tol) {
    const double d = rel_diff(fused, chain);
    MESSAGE(what << ": max diff " << d << " of the largest value (tol " << tol << ")");
    CHECK_MESSAGE(d <= tol, what << ": " << d);
}

}  // namespace

TEST_CASE("fused kernels equal the op chains they replace: RMSNorm, SwiGLU, q/k/v + RoPE (fp32, bf16)") {
    torch::manual_seed(0);
    for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
        const bool bf = dt == torch::kBFloat16;
        // fp32: float rounding; bf16: the chain's own rounding (measured: bit-equal), at most one bf16
        // step (2^-8) of the largest value forward
        const double tol_f = bf ? 4e-3 : 2e-6, tol_b = bf ? 1e-2 : 2e-5;
        CAPTURE(bf);

        SUBCASE("RMSNorm") {
            auto x = randn({3, 37, 70}, dt, 1, 2.0).requires_grad_(true);  // C = 70: a tail after 4 x 16
            auto w = randn({70}, dt, 2);
            auto yf = model::fused::rms_norm(x, w, 1e-5);
            auto yc = model::rms_norm(x, w, 1e-5);
            CHECK((yf.scalar_type() == dt));
            check_close(yf, yc, "rms forward", tol_f);
            auto probe = randn({3, 37, 70}, torch::kFloat32, 3);
            check_close(grads_of(yf, probe, {x})[0], grads_of(yc, probe, {x})[0], "rms dx", tol_b);
        }
        SUBCASE("SwiGLU with the LoRA adds, with and without deltas") {
            const int64_t F = 45;
            for (int with : {0, 1, 2, 3}) {
                CAPTURE(with);
                auto gu = randn({2, 19, 2 * F}, dt, 4, 3.0).requires_grad_(true);
                auto dg = randn({2, 19, F}, torch::kFloat32, 5, 0.5).requires_grad_(true);
                auto du = randn({2, 19, F}, torch::kFloat32, 6, 0.5).requires_grad_(true);
                const torch::Tensor g = with & 1 ? dg : torch::Tensor(), u = with & 2 ? du : torch::Tensor();
                auto af = model::fused::swiglu(gu, g, u);
                auto gate = gu.narrow(-1, 0, F), up = gu.narrow(-1, F, F);
                if (g.defined()) gate = gate + g.to(dt);
                if (u.defined()) up = up + u.to(dt);
                auto ac = torch::silu(gate) * up;
                check_close(af, ac, "swiglu forward", tol_f);
                std::vector<torch::Tensor> in = {gu};
                if (g.defined()) in.push_back(g);
                if (u.defined()) in.push_back(u);
                auto probe = randn({2, 19, F}, torch::kFloat32, 7);
                auto gf = grads_of(af, probe, in), gc = grads_of(ac, probe, in);
                for (size_t i = 0; i < in.size(); ++i) check_close(gf[i], gc[i], "swiglu grad " + std::to_string(i), tol_b);
            }
        }
        SUBCASE("q/k/v split, LoRA adds, RoPE, float32") {
            const int64_t B = 2, T = 11, H = 4, K = 2, D = 16, W = (H + 2 * K) * D;
            auto qkv = randn({B, T, W}, dt, 8, 2.0).requires_grad_(true);
            auto dq = randn({B, T, H * D}, torch::kFloat32, 9, 0.3).requires_grad_(true);
            auto dv = randn({B, T, K * D}, torch::kFloat32, 10, 0.3).requires_grad_(true);
            auto ang = torch::rand({B, 1, T, D / 2}, at::detail::createCPUGenerator(11)) * 20;
            auto cos = torch::cat({ang, ang}, -1).cos().to(dt), sin = torch::cat({ang, ang}, -1).sin().to(dt);
            auto r = model::fused::qkv_rope(qkv, dq, torch::Tensor(), dv, cos, sin, H, K, D);  // no k delta
            auto q = qkv.narrow(-1, 0, H * D) + dq.to(dt);
            auto k = qkv.narrow(-1, H * D, K * D);
            auto v = qkv.narrow(-1, (H + K) * D, K * D) + dv.to(dt);
            q = rope_chain(q.reshape({B, T, H, D}).transpose(1, 2), cos, sin).to(torch::kFloat32);
            k = rope_chain(k.reshape({B, T, K, D}).transpose(1, 2), cos, sin).to(torch::kFloat32);
            v = v.reshape({B, T, K, D}).transpose(1, 2).to(torch::kFloat32);
            const torch::Tensor ref[3] = {q, k, v};
            for (int i = 0; i < 3; ++i) {
                CHECK((r[i].scalar_type() == torch::kFloat32));
                CHECK((r[i].sizes() == ref[i].sizes()));
                check_close(r[i], ref[i], "qkv forward " + std::to_string(i), tol_f);
            }
            auto pq = randn({B, H, T, D}, torch::kFloat32, 12), pk = randn({B, K, T, D}, torch::kFloat32, 13),
                 pv = randn({B, K, T, D}, torch::kFloat32, 14);
            auto loss = [&](const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& c) {
                return (a * pq).sum() + (b * pk).sum() + (c * pv).sum();
            };
            auto gf = torch::autograd::grad({loss(r[0], r[1], r[2])}, {qkv, dq, dv});
            auto gc = torch::autograd::grad({loss(q, k, v)}, {qkv, dq, dv});
            check_close(gf[0], gc[0], "qkv grad", tol_b);
            check_close(gf[1], gc[1], "dq grad", tol_b);
            check_close(gf[2], gc[2], "dv grad", tol_b);
        }
    }
}

TEST_CASE("a LoRA decoder with fused kernels: the op chains' loss, LoRA gradients and greedy tokens") {
    for (std::string dt : {"fp32", "bf16"}) {
        CAPTURE(dt);
        const bool bf = dt == "bf16";
        auto lm = load(test::source_dir("tests/data/ref/tiny-llama"), dt);
        auto& m = lm->decoder();
        model::lora_config c;
        c.rank = 4;
        c.alpha = 8;
        model::add_lora(m, c, 1);
        {
            torch::NoGradGuard ng;
            auto g = at::detail::createCPUGenerator(2);
            auto ps = model::lora_parameters(m);
            for (size_t i = 1; i < ps.size(); i += 2) ps[i].normal_(0, 0.3, g);  // B: zero at init
        }
        auto tokens = random_tokens(3, 24, 3, m.config.vocab_size, 3);
        auto run = [&](bool fused) {
            m.fused_kernels = fused;
            auto ps = model::lora_parameters(m);
            auto logits = m.forward(tokens);
            auto loss = torch::nn::functional::cross_entropy(
                logits.narrow(1, 0, 23).reshape({-1, logits.size(-1)}), tokens.narrow(1, 1, 23).reshape({-1}));
            auto gs = torch::autograd::grad({loss}, ps);
            return std::make_pair(loss.item<double>(), gs);
        };
        auto [lf, gf] = run(true);
        auto [lc, gc] = run(false);
        MESSAGE(dt << " loss fused " << lf << " chain " << lc);
        CHECK(std::abs(lf - lc) <= (bf ? 1e-4 : 1e-5) * std::abs(lc));
        double worst = 0;
        for (size_t i = 0; i < gf.size(); ++i) worst = std::max(worst, rel_diff(gf[i], gc[i]));
        MESSAGE(dt << " LoRA gradients: worst max diff " << worst << " of the largest");
        CHECK(worst <= (bf ? 1e-2 : 1e-4));  // bf16 measured bit-equal

        // greedy decoding through the KV cache: the same tokens
        if (!bf) {
            torch::NoGradGuard ng;
            auto greedy = [&](bool fused) {
                m.fused_kernels = fused;
                auto cache = m.new_cache(1, 64);
                model::forward_args a;
                a.tokens = tokens.narrow(0, 0, 1);
                a.cache = &cache;
                a.last_only = true;
                std::vector<int64_t> out;
                for (int i = 0; i < 12; ++i) {
                    auto next = m.forward(a).argmax(-1);  // (1, 1)
                    out.push_back(next.item<int64_t>());
                    a.tokens = next;
                }
                return out;
            };
            const auto a = greedy(true), b = greedy(false);
            const bool same = a == b;
            CHECK(same);
        }
    }
}

TEST_CASE("SmolLM2 fp32: a prompt's last logits, whole or as prefix + suffix, fused on and off" *
          doctest::skip(!std::filesystem::exists(model::default_smollm2_path()))) {
    auto lm = load(model::default_smollm2_path(), "fp32");
    auto& m = lm->decoder();
    torch::NoGradGuard ng;
    auto tokens = random_tokens(1, 300, 100, 40000, 5);
    auto logits = [&](bool fused, bool split) {
        m.fused_kernels = fused;
        if (!split) return m.forward(tokens).select(1, 299);
        model::kv_prefix p;
        model::forward_args a;
        a.tokens = tokens.narrow(1, 0, 200);
        a.capture = &p;
        a.dense = true;
        (void)m.forward(a);
        model::forward_args b;
        b.tokens = tokens.narrow(1, 200, 100);
        b.prefix = &p;
        b.dense = true;
        return m.forward(b).select(1, 99);
    };
    auto wc = logits(false, false), sc = logits(false, true), wf = logits(true, false), sf = logits(true, true);
    auto d = [](const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); };
    MESSAGE("chain whole vs split " << d(wc, sc) << "; fused whole vs split " << d(wf, sf) << "; fused vs chain "
                                    << d(wf, wc) << " / " << d(sf, sc));
    CHECK(d(wf, sf) <= 1e-3);
    CHECK(d(wf, wc) <= 1e-3);

    // two rows through a KV cache as batched generation runs them: the prefix, then suffixes of
    // different lengths (row 1 left-padded by 7: masked slots, shifted positions)
    auto cached = [&](bool fused) {
        m.fused_kernels = fused;
        auto cache = m.new_cache(2, 320);
        model::forward_args a;
        a.tokens = tokens.narrow(1, 0, 200).expand({2, 200}).contiguous();
        a.cache = &cache;
        a.dense = true;
        (void)m.forward(a);
        auto valid = torch::ones({2, 300}, torch::TensorOptions().dtype(torch::kBool));
        valid.index_put_({1, torch::indexing::Slice(200, 207)}, false);
        auto pos = torch::arange(200, 300, torch::TensorOptions().dtype(torch::kInt64)).unsqueeze(0).repeat({2, 1});
        pos.index_put_({1, torch::indexing::Slice(7, 100)}, torch::arange(200, 293, torch::TensorOptions().dtype(torch::kInt64)));
        model::forward_args b;
        b.tokens = tokens.narrow(1, 200, 100).repeat({2, 1});
        b.tokens.index_put_({1, torch::indexing::Slice(7, 100)}, tokens.narrow(1, 200, 93).squeeze(0));
        b.cache = &cache;
        b.key_valid = valid;
        b.positions = pos;
        b.dense = true;
        return m.forward(b).select(1, 99);  // (2, V): row 0 = all 300 tokens, row 1 = the first 293
    };
    auto cc = cached(false), cf = cached(true);
    auto w293 = logits(false, false);  // reference for row 0 (the whole prompt)
    MESSAGE("cached batch of 2: fused vs chain " << d(cf, cc) << "; row 0 vs the whole prompt " << d(cf[0], w293));
    CHECK(d(cf, cc) <= 1e-3);
}

TEST_CASE("SmolLM2 bf16: fused kernels as close to fp32 as the op chains" *
          doctest::skip(!std::filesystem::exists(model::default_smollm2_path()))) {
    // bf16 results are not bit-equal: RMSNorm sums its squares in another order than libtorch, so
    // 1/rms may differ by a float ulp and a bf16 rounding of x/rms flip now and then; through 30
    // layers that moves logits by bf16 noise. What matters is that neither is further from fp32.
    auto ref = load(model::default_smollm2_path(), "fp32");
    auto lm = load(model::default_smollm2_path(), "bf16");
    auto& m = lm->decoder();
    torch::NoGradGuard ng;
    auto tokens = random_tokens(1, 300, 100, 40000, 5);
    auto ce = [&](const torch::Tensor& l) {
        return torch::nn::functional::cross_entropy(l.narrow(1, 0, 299).reshape({-1, l.size(-1)}),
                                                    tokens.narrow(1, 1, 299).reshape({-1}))
            .item<double>();
    };
    auto want = ref->decoder().forward(tokens);
    m.fused_kernels = false;
    auto chain = m.forward(tokens);
    m.fused_kernels = true;
    auto fused = m.forward(tokens);
    const double dc = (chain - want).abs().mean().item<double>(), df = (fused - want).abs().mean().item<double>();
    MESSAGE("mean |logit - fp32|: chain " << dc << ", fused " << df << "; loss fp32 " << ce(want) << ", chain "
                                         << ce(chain) << ", fused " << ce(fused));
    CHECK(df <= 1.1 * dc);
    CHECK(std::abs(ce(fused) - ce(want)) <= std::abs(ce(chain) - ce(want)) + 0.01);
}
