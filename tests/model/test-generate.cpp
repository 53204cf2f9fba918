// Generation tests: batched prompts of different lengths give what each prompt gives alone,
// seeded sampling is reproducible, stops (EOS, callback, stop strings) cut where they should, and
// the real SmolLM2-135M-Instruct answers a chat question.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <filesystem>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/model.h"
#include "tests/model/check-tensor.h"

using namespace slm::model;

namespace {

std::unique_ptr<language_model> load(const std::string& path, const std::string& dtype = "fp32") {
    // one thread: OpenMP hand-offs cost more than these models' matmuls, and far more when ctest
    // runs binaries side by side on 2 cores (a tiny-model test went from 0.15 s to 18 s)
    set_torch_threads(1);
    load_options o;
    o.dtype = dtype;
    return load_model(path, o);
}

const language_model& stories() {
    static auto m = load(slm::test::shared_data("models/llama2c/stories260K.bin"));
    return *m;
}

std::vector<int32_t> story_ids() {
    return slm::test::read_json(slm::test::shared_data("models/llama2c/stories260K_greedy_from_bos.json"))
        .at("greedy_ids")
        .get<std::vector<int32_t>>();
}

// Prompts of different lengths: BOS then a varying piece of the story (not just prefixes, so
// each continues differently).
std::vector<std::vector<int32_t>> mixed_prompts() {
    const auto ids = story_ids();
    std::vector<std::vector<int32_t>> out;
    for (auto [from, n] : {std::pair{0, 0}, {3, 2}, {40, 17}, {100, 6}, {7, 31}}) {
        std::vector<int32_t> p = {1};
        p.insert(p.end(), ids.begin() + from, ids.begin() + from + n);
        out.push_back(p);
    }
    return out;
}

}  // namespace

TEST_CASE("batched greedy generation equals generating each prompt alone") {
    const auto& m = stories();
    const auto prompts = mixed_prompts();
    sampling_params sp;
    sp.max_tokens = 40;
    sp.sync_every = 5;
    // doctest reruns the case body per SUBCASE: compute the references once
    static const auto alone = [&] {
        std::vector<std::vector<int32_t>> r;
        for (const auto& p : prompts) r.push_back(generate(m.decoder(), {p}, sp)[0].tokens);
        return r;
    }();
    static const auto batched = generate(m.decoder(), prompts, sp);
    REQUIRE(batched.size() == prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        INFO("prompt " << i << " of length " << prompts[i].size());
        CHECK(batched[i].tokens == alone[i]);
        CHECK(batched[i].tokens.size() == 40);
    }
    CHECK(alone[0] != alone[2]);  // the prompts do lead to different continuations

    SUBCASE("rows that stop early leave the batch; the others are unaffected") {
        // sequence 1 stops after 5 tokens and 3 after 10: the batch shrinks twice
        auto cb = [](size_t seq, const std::vector<int32_t>& t) -> int64_t {
            if (seq == 1 && t.size() >= 5) return 5;
            if (seq == 3 && t.size() >= 10) return 10;
            return -1;
        };
        generate_stats st;
        auto out = generate(m.decoder(), prompts, sp, cb, &st);
        CHECK(out[1].reason == finish_reason::stop);
        CHECK(out[1].tokens == std::vector<int32_t>(alone[1].begin(), alone[1].begin() + 5));
        CHECK(out[3].tokens == std::vector<int32_t>(alone[3].begin(), alone[3].begin() + 10));
        for (size_t i : {0, 2, 4}) {
            CHECK(out[i].tokens == alone[i]);
            CHECK(out[i].reason == finish_reason::length);
        }
        CHECK(st.generated_tokens == 3 * 40 + 5 + 10);
        CHECK(st.prompt_tokens > 0);
    }
    SUBCASE("EOS ids end a sequence and are not returned") {
        sampling_params e = sp;
        e.eos_ids = {alone[2][7]};  // the 8th token of sequence 2
        auto out = generate(m.decoder(), prompts, e);
        CHECK(out[2].reason == finish_reason::eos);
        CHECK(out[2].tokens.size() <= 7);
        for (auto id : out[2].tokens) CHECK(id != e.eos_ids[0]);
    }
}

TEST_CASE("batched generation on a GQA model with qkv bias (tiny Qwen2) equals alone") {
    auto m = load(slm::test::ref_dir("tiny-qwen2"));
    std::vector<std::vector<int32_t>> prompts = {{1, 5}, {1, 42, 43, 44, 45, 46, 47, 48, 49}, {7}};
    sampling_params sp;
    sp.max_tokens = 12;
    auto batched = generate(m->decoder(), prompts, sp);
    for (size_t i = 0; i < prompts.size(); ++i) CHECK(batched[i].tokens == generate(m->decoder(), {prompts[i]}, sp)[0].tokens);
}

TEST_CASE("sampling: seeded, reproducible, top-p near 0 is greedy") {
    const auto& m = stories();
    const auto prompts = mixed_prompts();
    sampling_params g;
    g.max_tokens = 24;
    const auto greedy = generate(m.decoder(), prompts, g);
    sampling_params s = g;
    s.temperature = 1.0f;
    s.top_p = 0.9f;
    s.seed = 42;
    const auto a = generate(m.decoder(), prompts, s), b = generate(m.decoder(), prompts, s);
    s.seed = 43;
    const auto c = generate(m.decoder(), prompts, s);
    int same_ab = 0, same_ac = 0, same_greedy = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
        same_ab += a[i].tokens == b[i].tokens;
        same_ac += a[i].tokens == c[i].tokens;
        same_greedy += a[i].tokens == greedy[i].tokens;
        for (auto id : a[i].tokens) CHECK((id >= 0 && id < 512));
    }
    CHECK(same_ab == 5);
    CHECK(same_ac < 5);
    CHECK(same_greedy < 5);
    s.top_p = 1e-6f;  // only the most likely token survives
    const auto d = generate(m.decoder(), prompts, s);
    for (size_t i = 0; i < prompts.size(); ++i) CHECK(d[i].tokens == greedy[i].tokens);
    s.top_p = 0;
    CHECK_THROWS_AS(generate(m.decoder(), prompts, s), slm::user_error);
    CHECK_THROWS_AS(generate(m.decoder(), {{}}, g), slm::user_error);
    CHECK_THROWS_AS(generate(m.decoder(), {{1, 9999}}, g), slm::user_error);
}

TEST_CASE("stop strings cut the text and the tokens before the stop") {
    const auto& m = stories();
    text_params p;
    p.sampling.max_tokens = 64;
    p.stop = {"girl"};
    auto out = m.generate_ids({{1}}, p);
    CHECK(out[0].reason == finish_reason::stop);
    CHECK(out[0].text.find("girl") == std::string::npos);
    CHECK(out[0].text.find("Once upon a time, there was a little") != std::string::npos);
    CHECK(m.decode(out[0].tokens).find("girl") == std::string::npos);
    CHECK(out[0].tokens.size() < 20);
}

TEST_CASE("SmolLM2-135M-Instruct (Q4_1 GGUF) answers: the capital of France is Paris") {
    const std::string path = default_smollm2_path();
    REQUIRE_MESSAGE(std::filesystem::exists(path),
                    "SmolLM2 GGUF not found at " << path << ": run scripts/fetch-models.sh to fetch it");
    auto m = load(path);
    CHECK(m->info().architecture == "llama");
    CHECK(m->info().chat_format == "chatml");
    CHECK(m->info().tensor_types.count("Q4_1") == 1);
    text_params p;
    p.sampling.max_tokens = 48;
    generate_stats st;
    auto out = m->chat_generate({{{"user", "What is the capital of France?"}}}, p, &st);
    MESSAGE("SmolLM2 says: " << out[0].text << " (" << st.decode_tokens_per_s() << " tokens/s)");
    CHECK(out[0].text.find("Paris") != std::string::npos);
    CHECK(out[0].reason == finish_reason::eos);
    CHECK(out[0].text.find("<|im_end|>") == std::string::npos);

    // bf16 (the CPU fast path) gives the same answer; its first-token margin is thin (~0.1 logit),
    // which is why attention runs in float32
    auto b = load(path, "bf16");
    auto out16 = b->chat_generate({{{"user", "What is the capital of France?"}}}, p);
    MESSAGE("SmolLM2 bf16 says: " << out16[0].text);
    CHECK(out16[0].text.find("Paris") != std::string::npos);
}

TEST_CASE("bench: SmolLM2 decode tokens/s (run with -tc='bench*')" * doctest::skip(true)) {
    const std::string path = default_smollm2_path();
    REQUIRE(std::filesystem::exists(path));
    for (const char* dt : {"fp32", "bf16"}) {
        auto m = load(path, dt);
        if (const char* e = std::getenv("SLMCTL_BENCH_THREADS")) set_torch_threads(std::atoi(e));
        for (int batch : {1, 8}) {
            sampling_params sp;
            sp.max_tokens = 64;
            std::vector<std::vector<int32_t>> prompts(batch, m->encode("Once upon a time, in a land far away,"));
            generate_stats st;
            generate(m->decoder(), prompts, sp, {}, &st);
            MESSAGE(std::string(dt) << " batch " << batch << ": " << st.decode_tokens_per_s() << " tokens/s ("
                       << st.generated_tokens / batch / st.decode_s << " steps/s), prefill " << st.prefill_s << " s");
        }
    }
}

TEST_CASE("profile: SmolLM2 decode ops (writes /tmp/slm-trace.json)" * doctest::skip(true)) {
    auto m = load(default_smollm2_path(), std::getenv("SLMCTL_BENCH_DTYPE") ? std::getenv("SLMCTL_BENCH_DTYPE") : "fp32");
    if (const char* e = std::getenv("SLMCTL_BENCH_THREADS")) set_torch_threads(std::atoi(e));
    sampling_params sp;
    sp.max_tokens = 8;
    const int batch = std::getenv("SLMCTL_BENCH_BATCH") ? std::atoi(std::getenv("SLMCTL_BENCH_BATCH")) : 1;
    std::vector<std::vector<int32_t>> prompts(batch, m->encode("Once upon a time, in a land far away,"));
    generate(m->decoder(), prompts, sp);
    {
        torch::autograd::profiler::RecordProfile rp("/tmp/slm-trace.json");
        generate(m->decoder(), prompts, sp);
    }
}

TEST_CASE("int4 decode: Q4_1-shaped weights are kept exactly; SmolLM2 greedy answers equal the dense path") {
    torch::NoGradGuard ng;
    // w = d q + m per group of 32 with q in 0..15 and both ends present: what a Q4_1 file holds
    const int64_t N = 64, K = 128;
    auto q = torch::randint(0, 16, {N, K / 32, 32}, torch::TensorOptions().dtype(torch::kInt64));
    q.select(2, 0).fill_(0);
    q.select(2, 31).fill_(15);
    // bf16-representable d and m, so that only the kernel's bf16 arithmetic remains
    auto d = (torch::rand({N, K / 32, 1}) * 0.05 + 0.01).to(torch::kBFloat16).to(torch::kFloat32);
    auto mn = (-torch::rand({N, K / 32, 1}) * 0.4).to(torch::kBFloat16).to(torch::kFloat32);
    auto w = (q.to(torch::kFloat32) * d + mn).view({N, K});
    auto w4 = int4_weight::quantize(w);
    REQUIRE(w4.defined());
    auto x = torch::randn({3, K}).to(torch::kBFloat16).to(torch::kFloat32);
    auto ref = torch::linear(x, w);
    auto got = w4.forward(x);
    const float err = (got - ref).abs().max().item<float>(), scale = ref.abs().max().item<float>();
    MESSAGE("int4 vs dense on Q4_1-shaped weights: max abs diff " << err << " of " << scale);
    CHECK(err <= 0.02f * scale);  // bf16 output rounding and bf16 zero = m + 8 d
    CHECK(!int4_weight::quantize(torch::randn({64, 100})).defined());  // in % 32 != 0: no 4-bit copy

    const std::string path = default_smollm2_path();
    REQUIRE_MESSAGE(std::filesystem::exists(path), "SmolLM2 GGUF not found at " << path);
    set_torch_threads(1);
    load_options on, off;
    on.dtype = off.dtype = "fp32";
    off.int4_decode = "off";
    auto m4 = load_model(path, on), md = load_model(path, off);
    CHECK(m4->info().int4_decode == "layers");  // the tied Q8_0 embedding stays dense
    CHECK(md->info().int4_decode == "off");
    text_params p;
    p.sampling.max_tokens = 40;
    for (const char* question : {"What is the capital of France?", "Name three primary colors."}) {
        auto a = m4->chat_generate({{{"user", question}}}, p)[0].text;
        auto b = md->chat_generate({{{"user", question}}}, p)[0].text;
        MESSAGE("int4: " << a << "\ndense: " << b);
        CHECK(a == b);
    }
}
