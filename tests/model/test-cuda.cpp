// CUDA parity on the committed fixtures (tiny Llama and Qwen2, tests/data/ref): logits, LoRA
// gradients and greedy tokens on the GPU against the CPU. Each case skips with a message where no
// CUDA device is visible (scripts/gpu-check.sh runs them on a GPU machine); the no-GPU errors are
// tested here on every machine.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include "common/common.h"
#include "model/bert.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/runtime.h"
#include "tests/model/check-tensor.h"

using namespace slm::model;
using slm::test::check_tensor;

namespace {

bool cuda_visible() { return runtime().cuda_devices > 0; }

#define SKIP_WITHOUT_CUDA()                                                                        \
    do {                                                                                           \
        if (!cuda_visible()) {                                                                     \
            MESSAGE("no CUDA device visible: skipped (scripts/gpu-check.sh runs it on a GPU)");    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

std::unique_ptr<language_model> load_on(const std::string& name, const std::string& device, const std::string& dtype) {
    set_torch_threads(1);
    load_options o;
    o.device = device;
    o.dtype = dtype;
    o.int4_decode = "off";
    return load_model(slm::test::ref_dir(name), o);
}

torch::Tensor ref_input() {
    const auto j = slm::test::read_json(slm::test::ref_dir("logits.json"));
    return torch::tensor(j.at("input_ids").get<std::vector<int64_t>>()).view({1, -1});
}

torch::Tensor logits_of(const language_model& m, const torch::Tensor& ids) {
    torch::NoGradGuard ng;
    return m.decoder().forward(ids.to(m.decoder().device()))[0].to(torch::kCPU);  // (T, V) float32
}

/// Seeded LoRA adapters (A and B non-zero, made on the CPU) on q, v and down of every layer.
void add_lora(llama_model& dec) {
    torch::manual_seed(3);
    for (auto& L : dec.layers)
        for (proj p : {proj::q, proj::v, proj::down}) {
            auto& P = L.projection(p);
            P.lora_a = (0.1 * torch::randn({4, P.in_features()})).to(dec.device()).requires_grad_(true);
            P.lora_b = (0.1 * torch::randn({P.out_features(), 4})).to(dec.device()).requires_grad_(true);
            P.lora_scale = 2.0;
        }
}

/// d(next-token loss)/d(A, B) of every adapter, on the CPU, in layer/projection order.
std::vector<torch::Tensor> lora_grads(llama_model& dec, const torch::Tensor& x) {
    auto xd = x.to(dec.device());
    const int64_t T = x.size(1);
    auto y = dec.forward(xd);  // (1, T, V) float32
    auto loss = torch::nn::functional::cross_entropy(y[0].narrow(0, 0, T - 1), xd[0].narrow(0, 1, T - 1));
    loss.backward();
    std::vector<torch::Tensor> g;
    for (auto& L : dec.layers)
        for (proj p : {proj::q, proj::v, proj::down}) {
            auto& P = L.projection(p);
            g.push_back(P.lora_a.grad().to(torch::kCPU));
            g.push_back(P.lora_b.grad().to(torch::kCPU));
        }
    return g;
}

}  // namespace

TEST_CASE("--device cuda where no GPU is visible: a user error with a hint, before any file is read") {
    if (cuda_visible()) {
        MESSAGE("a CUDA device is visible: the no-GPU error is not testable here");
        return;
    }
    load_options o;
    o.device = "cuda";
    try {
        (void)load_model("/nonexistent/model.gguf", o);
        FAIL("load_model on cuda without a GPU did not throw");
    } catch (const slm::user_error& e) {
        CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
        CHECK(std::string(e.hint).find("--device cpu") != std::string::npos);
    }
    sentence_embedder_params sp;
    sp.device = "cuda:0";
    CHECK_THROWS_AS(sentence_embedder::load(slm::test::ref_dir(), sp), slm::user_error);
    CHECK_THROWS_AS(check_device("cuda:1"), slm::user_error);
    CHECK_THROWS_AS(check_device("metal"), slm::user_error);
    CHECK_NOTHROW(check_device("cpu"));
}

TEST_CASE("CUDA parity: logits on the GPU match the CPU (fp32 1e-4, bf16 1e-2 of the logit scale)") {
    SKIP_WITHOUT_CUDA();
    const auto x = ref_input();
    for (const char* name : {"tiny-llama", "tiny-qwen2"}) {
        auto c32 = logits_of(*load_on(name, "cpu", "fp32"), x);
        auto g32 = logits_of(*load_on(name, "cuda", "fp32"), x);
        auto c16 = logits_of(*load_on(name, "cpu", "bf16"), x);
        auto g16 = logits_of(*load_on(name, "cuda", "bf16"), x);
        const float scale = std::max(1.f, c32.abs().max().item<float>());
        check_tensor(g32, c32, std::string(name) + " fp32 cuda vs cpu", 1e-4f * scale);
        check_tensor(g16, c16, std::string(name) + " bf16 cuda vs cpu", 1e-2f * scale);
        check_tensor(g16, c32, std::string(name) + " bf16 cuda vs fp32 cpu", 0.1f * scale);
        CHECK((g16.argmax(-1) == c32.argmax(-1)).to(torch::kFloat32).mean().item<float>() >= 0.8f);
    }
}

TEST_CASE("CUDA parity: LoRA gradients on the GPU match the CPU (fp32; bf16 base + fp32 LoRA)") {
    SKIP_WITHOUT_CUDA();
    const auto x = ref_input();
    auto cpu = load_on("tiny-llama", "cpu", "fp32");
    add_lora(cpu->decoder());
    const auto want = lora_grads(cpu->decoder(), x);
    auto g32 = load_on("tiny-llama", "cuda", "fp32");
    add_lora(g32->decoder());
    const auto got = lora_grads(g32->decoder(), x);
    auto g16 = load_on("tiny-llama", "cuda", "bf16");
    add_lora(g16->decoder());
    CHECK((g16->decoder().layers[0].projection(proj::q).lora_a.scalar_type() == torch::kFloat32));
    const auto got16 = lora_grads(g16->decoder(), x);
    REQUIRE(got.size() == want.size());
    REQUIRE(got16.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        const float scale = std::max(1e-6f, want[i].abs().max().item<float>());
        const std::string what = "layer " + std::to_string(i / 6) + " adapter " + std::to_string(i % 6);
        check_tensor(got[i], want[i], what + " grad fp32 cuda vs cpu", 1e-3f * scale);
        check_tensor(got16[i], want[i], what + " grad bf16-base cuda vs fp32 cpu", 0.1f * scale);
    }
}

TEST_CASE("CUDA parity: greedy tokens on the GPU equal the CPU's and transformers'") {
    SKIP_WITHOUT_CUDA();
    const auto j = slm::test::read_json(slm::test::ref_dir("logits.json"));
    for (const char* name : {"tiny-llama", "tiny-qwen2"}) {
        const auto& r = j.at("models").at(name);
        const auto prompt = r.at("greedy_prompt").get<std::vector<int32_t>>();
        const auto hf = r.at("greedy_ids").get<std::vector<int32_t>>();
        sampling_params sp;
        sp.max_tokens = static_cast<int>(hf.size());
        auto cpu = generate(load_on(name, "cpu", "fp32")->decoder(), {prompt}, sp);
        auto gpu = generate(load_on(name, "cuda", "fp32")->decoder(), {prompt, prompt}, sp);  // batch of 2
        CHECK_MESSAGE(gpu[0].tokens == cpu[0].tokens, name);
        CHECK_MESSAGE(gpu[1].tokens == cpu[0].tokens, name);
        CHECK_MESSAGE(gpu[0].tokens == hf, name);
        auto c16 = generate(load_on(name, "cpu", "bf16")->decoder(), {prompt}, sp);
        auto g16 = generate(load_on(name, "cuda", "bf16")->decoder(), {prompt}, sp);
        size_t same = 0;
        while (same < std::min(c16[0].tokens.size(), g16[0].tokens.size()) && c16[0].tokens[same] == g16[0].tokens[same])
            ++same;
        MESSAGE(name << " bf16: cuda and cpu agree on the first " << same << " of " << hf.size() << " greedy tokens");
    }
}

TEST_CASE("CUDA parity: mean-pooled embeddings (the model: embedder) on the GPU match the CPU") {
    SKIP_WITHOUT_CUDA();
    set_torch_threads(1);
    load_options o;
    o.dtype = "fp32";
    o.int4_decode = "off";
    const auto path = slm::test::ref_dir("tiny-llama.gguf");
    auto cpu = load_model(path, o);
    if (!cpu->has_tokenizer()) {
        MESSAGE(path << " has no tokenizer: the embedding parity is covered by the logits case");
        return;
    }
    o.device = "cuda";
    auto gpu = load_model(path, o);
    const std::vector<std::string> texts = {"send an email to the team", "what is the weather", ""};
    auto a = cpu->embed_mean_pooled(texts), b = gpu->embed_mean_pooled(texts);
    REQUIRE(a.size() == b.size());
    check_tensor(torch::tensor(b), torch::tensor(a), "mean-pooled embeddings cuda vs cpu", 1e-4f);
}
