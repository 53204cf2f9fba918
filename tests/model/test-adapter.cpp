// model/adapter.h: LoRA init, targets, PEFT and GGUF adapter round trips (same logits), merge ==
// adapted forward, a base that does not fit the adapter, nothing half-written.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/adapter.h"
#include "model/format/gguf-reader.h"
#include "model/format/hf-export.h"
#include "model/format/safetensors.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tests/test-util.h"

using namespace slm;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<model::language_model> load_path(const std::string& path) {
    model::load_options o;
    o.dtype = "fp32";
    o.tokenizer = false;
    o.int4_decode = "off";
    return model::load_model(path, o);
}
std::unique_ptr<model::language_model> load(const std::string& rel) {
    return load_path(test::source_dir("tests/data/ref/" + rel));
}

torch::Tensor logits(const model::llama_model& m) {
    torch::NoGradGuard ng;
    auto tok = torch::tensor(std::vector<int64_t>{1, 17, 200, 3, 45, 45, 99, 128, 7, 255}).unsqueeze(0);
    return m.forward(tok);
}

// Adapters with non-zero B so they change the output.
void randomize_b(model::llama_model& m, uint64_t seed) {
    torch::NoGradGuard ng;
    auto g = at::detail::createCPUGenerator(seed);
    auto ps = model::lora_parameters(m);  // A, B, A, B, ...: B moves, A keeps its init
    for (size_t i = 1; i < ps.size(); i += 2) ps[i].normal_(0, 0.3, g);
}

model::lora_config cfg(bool rslora = false) {
    model::lora_config c;
    c.rank = 4;
    c.alpha = 8;
    c.rslora = rslora;
    return c;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

TEST_CASE("lora init: A Kaiming-uniform within 1/sqrt(in), B zero, the forward unchanged; targets parse") {
    auto lm = load("tiny-llama");
    auto& m = lm->decoder();
    auto before = logits(m);
    model::lora_config c = cfg();
    model::add_lora(m, c, 1);
    auto ps = model::lora_parameters(m);
    REQUIRE(ps.size() == m.layers.size() * 7 * 2);
    const auto& q = m.layers[0].wq;
    const double bound = 1.0 / std::sqrt(double(q.in_features()));
    CHECK(q.lora_a.abs().max().item<double>() <= bound);
    CHECK(q.lora_a.abs().max().item<double>() > 0.8 * bound);
    CHECK(q.lora_b.abs().max().item<double>() == 0);
    CHECK(q.lora_a.requires_grad());
    CHECK(q.lora_scale == doctest::Approx(2.0));
    CHECK(max_diff(logits(m), before) == 0);
    CHECK(model::lora_config{4, 8, 0, true}.scale() == doctest::Approx(4.0));

    using model::proj;
    CHECK((model::lora_config::parse_targets("q,v") == std::vector<proj>{proj::q, proj::v}));
    CHECK(model::lora_config::parse_targets("down_proj, q_proj").size() == 2);
    CHECK(model::lora_config::parse_targets("all").size() == 7);
    try {
        model::lora_config::parse_targets("q,attn");
        FAIL("expected user_error");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("'attn'") != std::string::npos);
        CHECK(e.hint.find("q,k,v,o,gate,up,down") != std::string::npos);
    }
    model::lora_config bad = cfg();
    bad.rank = 0;
    CHECK_THROWS_AS(model::add_lora(m, bad, 0), user_error);
    bad = cfg();
    bad.dropout = 1.0;
    CHECK_THROWS_AS(bad.validate(), user_error);
}

TEST_CASE("PEFT and GGUF adapters round trip: save -> load on a fresh base -> the same logits") {
    test::temp_dir t;
    for (const char* base : {"tiny-llama", "tiny-llama.gguf", "tiny-qwen2"}) {
        for (bool rs : {false, true}) {
            CAPTURE(base);
            CAPTURE(rs);
            auto lm = load(base);
            auto& m = lm->decoder();
            auto c = cfg(rs);
            model::add_lora(m, c, 2);
            randomize_b(m, 3);
            auto want = logits(m);
            CHECK(max_diff(want, [&] {
                      auto plain = load(base);
                      return logits(plain->decoder());
                  }()) > 1e-3);  // the adapter matters
            const std::string dir = t / (std::string(base) + (rs ? "-rs" : "") + "-peft");
            model::save_peft_adapter(m, c, dir, base);
            const std::string gguf = t / (std::string(base) + (rs ? "-rs" : "") + ".gguf");
            model::save_gguf_adapter(m, c, gguf);

            auto fresh = load(base);
            auto got = model::load_adapter(fresh->decoder(), dir);
            CHECK(got.rank == 4);
            CHECK(got.rslora == rs);
            CHECK(got.targets.size() == 7);
            CHECK(max_diff(logits(fresh->decoder()), want) < 1e-5);

            auto fresh2 = load(base);
            auto g2 = model::load_adapter(fresh2->decoder(), gguf);
            CHECK(g2.rank == 4);
            CHECK(max_diff(logits(fresh2->decoder()), want) < 1e-5);
        }
    }
    // the files say what PEFT and llama.cpp expect
    auto j = nlohmann::json::parse(test::read_file(t / "tiny-llama-peft/adapter_config.json"));
    CHECK(j["peft_type"] == "LORA");
    CHECK(j["task_type"] == "CAUSAL_LM");
    CHECK(j["bias"] == "none");
    CHECK(j["r"] == 4);
    CHECK(j["lora_alpha"] == 8);
    CHECK(j["fan_in_fan_out"] == false);
    CHECK(j["modules_to_save"].is_null());
    CHECK(j["target_modules"].size() == 7);
    model::safetensors_file st(t / "tiny-llama-peft/adapter_model.safetensors");
    const auto* a = st.find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
    const auto* b = st.find("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
    REQUIRE(a);
    REQUIRE(b);
    CHECK(a->shape == std::vector<int64_t>{4, 64});   // (r, in)
    CHECK(b->shape == std::vector<int64_t>{64, 4});   // (out, r)
    model::gguf_reader g(t / "tiny-llama-rs.gguf");
    CHECK(g.get_string("general.type") == "adapter");
    CHECK(g.get_string("adapter.type") == "lora");
    CHECK(g.get_f32("adapter.lora.alpha") == doctest::Approx(16.0));  // rsLoRA folded: 8 * sqrt(4)
    const auto& ta = g.tensor("blk.0.attn_q.weight.lora_a");
    CHECK(ta.dims == std::vector<int64_t>{64, 4});  // ggml ne [in, r]
    const auto& tb = g.tensor("blk.0.ffn_gate.weight.lora_b");
    CHECK(tb.dims == std::vector<int64_t>{4, 128});  // ne [r, out]
}

TEST_CASE("merge: the merged forward equals the adapted one; the merged HF dir loads back") {
    test::temp_dir t;
    auto lm = load("tiny-llama.gguf");
    auto& m = lm->decoder();
    model::add_lora(m, cfg(), 4);
    randomize_b(m, 5);
    auto want = logits(m);
    model::merge_lora(m);
    CHECK(model::lora_parameters(m).empty());
    CHECK(max_diff(logits(m), want) < 1e-4);
    model::save_merged_hf(*lm, t / "merged");
    CHECK(fs::exists(t / "merged/config.json"));
    auto back = load_path(t / "merged");
    CHECK(max_diff(logits(back->decoder()), want) < 1e-4);
}

TEST_CASE("an adapter that does not fit the base is refused, naming the tensor; nothing half-written") {
    test::temp_dir t;
    auto lm = load("tiny-llama");
    model::add_lora(lm->decoder(), cfg(), 6);
    model::save_peft_adapter(lm->decoder(), cfg(), t / "a", "tiny-llama");
    model::save_gguf_adapter(lm->decoder(), cfg(), t / "a.gguf");
    // stories260K: the same width, five layers instead of two, another FFN size
    auto other = load_path(test::shared_data("models/llama2c/stories260K.bin"));
    try {
        model::load_adapter(other->decoder(), t / "a");
        FAIL("expected user_error");
    } catch (const user_error& e) {
        const std::string msg = e.what();
        CHECK((msg.find("layer 0") != std::string::npos || msg.find("layers.") != std::string::npos));
        CHECK(e.hint.find("--base") != std::string::npos);
    }
    CHECK_THROWS_AS(model::load_adapter(other->decoder(), t / "a.gguf"), user_error);
    CHECK(model::lora_parameters(other->decoder()).empty());  // a failed load leaves no half adapter
    // unsupported PEFT options
    {
        auto j = nlohmann::json::parse(test::read_file(t / "a/adapter_config.json"));
        j["use_dora"] = true;
        std::ofstream(t / "a/adapter_config.json") << j.dump();
        auto fresh = load("tiny-llama");
        CHECK_THROWS_WITH_AS(model::load_adapter(fresh->decoder(), t / "a"), doctest::Contains("DoRA"), user_error);
    }
    CHECK_THROWS_AS(model::load_adapter(lm->decoder(), t / "missing"), user_error);
    // a save whose parent is a file: an error, no temp directory left behind
    std::ofstream(t / "file") << "x";
    CHECK_THROWS_AS(model::save_peft_adapter(lm->decoder(), cfg(), t / "file/sub", "x"), user_error);
    for (const auto& e : fs::directory_iterator(t.path))
        CHECK_MESSAGE(e.path().filename().string().find(".tmp") == std::string::npos, e.path().string());
}

// Parity with HF PEFT and llama.cpp (tests/ref/peft_parity.py, dev-time). This test writes our side
// of the fixtures when SLMCTL_WRITE_FIXTURES=1 (our PEFT dir, GGUF adapter, logits, greedy tokens)
// and otherwise checks the committed ones: our adapter still loads to the logits PEFT was compared
// against, and the adapter PEFT itself saved (peft-made/) gives the logits PEFT computed.
TEST_CASE("adapter fixtures: ours (checked by PEFT and llama.cpp) and PEFT's own load to the recorded logits") {
    const std::string dir = test::source_dir("tests/data/ref/adapter");
    const std::vector<int64_t> ids = {1, 17, 200, 3, 45, 45, 99, 128, 7, 255};
    auto logits_of = [&](const model::llama_model& m) {
        torch::NoGradGuard ng;
        return m.forward(torch::tensor(ids).unsqueeze(0))[0];  // (T, V)
    };
    auto to_json = [](const torch::Tensor& t) {
        nlohmann::json rows = nlohmann::json::array();
        auto c = t.contiguous();
        for (int64_t i = 0; i < c.size(0); ++i) {
            auto r = c[i];
            rows.push_back(std::vector<float>(r.data_ptr<float>(), r.data_ptr<float>() + r.numel()));
        }
        return rows;
    };
    auto from_json = [](const nlohmann::json& rows) {
        std::vector<float> flat;
        for (const auto& r : rows)
            for (float x : r) flat.push_back(x);
        return torch::tensor(flat).view({int64_t(rows.size()), -1});
    };
    const char* write = std::getenv("SLMCTL_WRITE_FIXTURES");
    if (write && std::string(write) == "1") {
        fs::create_directories(dir);
        auto lm = load("tiny-llama");
        auto& m = lm->decoder();
        auto c = cfg();
        model::add_lora(m, c, 11);
        randomize_b(m, 12);
        model::save_peft_adapter(m, c, dir + "/ours-peft", "tests/data/ref/tiny-llama");
        model::save_gguf_adapter(m, c, dir + "/ours.gguf");
        // greedy continuation of the GGUF base with the adapter, as llama.cpp should produce it
        auto lg = load("tiny-llama.gguf");
        model::load_adapter(lg->decoder(), dir + "/ours.gguf");
        model::sampling_params sp;
        sp.max_tokens = 16;
        auto gen = model::generate(lg->decoder(), {{1, 42, 43, 44}}, sp);
        nlohmann::json j = {{"input_ids", ids}, {"logits", to_json(logits_of(m))}, {"greedy_prompt", {1, 42, 43, 44}},
                            {"greedy_tokens", gen[0].tokens}};
        std::ofstream(dir + "/ours-logits.json") << j.dump() << "\n";
        MESSAGE("wrote our adapter fixtures to ", dir);
    }
    // SLMCTL_PARITY_OUT=DIR: the uncommitted side of peft_parity.py (transformers loads our merged
    // checkpoints and our tokenizer.json rebuilt from GGUF vocabularies)
    if (const char* out = std::getenv("SLMCTL_PARITY_OUT"); out && *out) {
        const std::string o = out;
        fs::create_directories(o);
        auto lm = load("tiny-llama");
        model::load_adapter(lm->decoder(), dir + "/ours-peft");
        model::merge_lora(lm->decoder());
        model::save_merged_hf(*lm, o + "/merged-from-hf");
        auto lg = load("tiny-llama.gguf");
        model::load_adapter(lg->decoder(), dir + "/ours.gguf");
        model::merge_lora(lg->decoder());
        model::save_merged_hf(*lg, o + "/merged-from-gguf");
        for (const char* qb : {"tiny-qwen2", "tiny-qwen2.gguf"}) {  // q/k/v biases, qwen2 config
            auto q = load(qb);
            model::add_lora(q->decoder(), cfg(), 31);
            randomize_b(q->decoder(), 32);
            auto want = logits_of(q->decoder());
            model::merge_lora(q->decoder());
            const std::string d = o + "/merged-" + std::string(qb).substr(0, std::string(qb).find('.')) +
                                  (std::string(qb).ends_with(".gguf") ? "-gguf" : "");
            model::save_merged_hf(*q, d);
            std::ofstream(d + "/slmctl-logits.json") << nlohmann::json{{"input_ids", ids}, {"logits", to_json(want)}}.dump() << "\n";
        }
        const std::string vocab = test::shared_data("tokenizers/llama.cpp-vocab/");
        std::vector<std::pair<std::string, std::string>> toks = {{"gpt-2", vocab + "ggml-vocab-gpt-2.gguf"},
                                                                 {"llama-spm", vocab + "ggml-vocab-llama-spm.gguf"}};
        if (fs::exists(model::default_smollm2_path())) toks.push_back({"smollm2", model::default_smollm2_path()});
        for (const auto& [name, f] : toks) {
            const std::string d = o + "/tokenizer-" + name;
            fs::create_directories(d);
            model::write_hf_tokenizer(model::gguf_reader(f), d, 2048);
            // our own encodings of the llama.cpp test strings, for transformers to match
            auto tok = model::tokenizer::from_gguf(model::gguf_reader(f));
            const std::string inp = test::read_file(vocab + "ggml-vocab-llama-spm.gguf.inp");
            nlohmann::json cases = nlohmann::json::array();
            const std::string sep = "\n__ggml_vocab_test__\n";
            for (size_t at = 0;;) {
                size_t next = inp.find(sep, at);
                if (next == std::string::npos) break;
                const std::string s = inp.substr(at, next - at);
                cases.push_back({{"text", s}, {"ids", tok.encode(s, false, false)}});
                at = next + sep.size();
            }
            std::ofstream(d + "/slmctl-encodings.json") << cases.dump() << "\n";
        }
        // SmolLM2 (GGUF, Q4_1 dequantized to fp32, tied head) with an adapter, merged: the whole path
        // a user takes from `slmctl finetune --merge` to transformers
        if (fs::exists(model::default_smollm2_path())) {
            model::load_options lo;
            lo.dtype = "fp32";
            lo.int4_decode = "off";
            auto sm = model::load_model(model::default_smollm2_path(), lo);
            auto& d = sm->decoder();
            auto c = cfg();
            model::add_lora(d, c, 21);
            {
                torch::NoGradGuard ng;
                auto g = at::detail::createCPUGenerator(22);
                auto ps = model::lora_parameters(d);
                for (size_t i = 1; i < ps.size(); i += 2) ps[i].normal_(0, 0.02, g);
            }
            const std::string text = "<|im_start|>user\nWrite a haiku about 42 cats.<|im_end|>\n<|im_start|>assistant\n";
            const auto ids32 = sm->tok().encode(text, false, true);
            const std::vector<int64_t> sids(ids32.begin(), ids32.end());
            torch::Tensor lg;
            {
                torch::NoGradGuard ng;
                lg = d.forward(torch::tensor(sids).unsqueeze(0))[0];  // (T, V)
            }
            auto plain_argmax = lg.argmax(-1);
            model::merge_lora(d);
            model::save_merged_hf(*sm, o + "/merged-smollm2");
            auto last = lg[-1].contiguous();
            nlohmann::json j = {{"text", text},
                                {"input_ids", sids},
                                {"argmax", std::vector<int64_t>(plain_argmax.data_ptr<int64_t>(),
                                                                plain_argmax.data_ptr<int64_t>() + plain_argmax.numel())},
                                {"last_logits", std::vector<float>(last.data_ptr<float>(), last.data_ptr<float>() + last.numel())}};
            std::ofstream(o + "/merged-smollm2/slmctl-logits.json") << j.dump() << "\n";
        }
        MESSAGE("wrote the parity scratch outputs to ", o);
    }
    REQUIRE_MESSAGE(fs::exists(dir + "/ours-logits.json"), "run with SLMCTL_WRITE_FIXTURES=1, then tests/ref/peft_parity.py");
    auto ours = nlohmann::json::parse(test::read_file(dir + "/ours-logits.json"));
    {
        auto lm = load("tiny-llama");
        model::load_adapter(lm->decoder(), dir + "/ours-peft");
        CHECK(max_diff(logits_of(lm->decoder()), from_json(ours["logits"])) < 1e-5);
        auto lg = load("tiny-llama.gguf");
        model::load_adapter(lg->decoder(), dir + "/ours.gguf");
        CHECK(max_diff(logits_of(lg->decoder()), from_json(ours["logits"])) < 1e-4);
    }
    if (fs::exists(dir + "/peft-made/adapter_config.json")) {
        auto theirs = nlohmann::json::parse(test::read_file(dir + "/peft-made-logits.json"));
        auto lm = load("tiny-llama");
        auto c = model::load_adapter(lm->decoder(), dir + "/peft-made");
        CHECK(c.rank == theirs.value("r", 0));
        const double d = max_diff(logits_of(lm->decoder()), from_json(theirs["logits"]));
        MESSAGE("PEFT-saved adapter: max abs logit diff vs PEFT ", d);
        CHECK(d < 1e-4);
    }
}

// A merged checkpoint of a GGUF base carries a tokenizer.json rebuilt from the GGUF vocabulary: read
// back by our HF loader it must tokenize like the GGUF itself (transformers' side: peft_parity.py).
TEST_CASE("GGUF vocabulary -> tokenizer.json: the same tokens as the GGUF tokenizer") {
    const std::string vocab = test::shared_data("tokenizers/llama.cpp-vocab/");
    std::vector<std::string> cases;
    {
        const std::string inp = test::read_file(vocab + "ggml-vocab-llama-spm.gguf.inp");
        const std::string sep = "\n__ggml_vocab_test__\n";
        for (size_t at = 0;;) {
            size_t next = inp.find(sep, at);
            if (next == std::string::npos) break;
            cases.push_back(inp.substr(at, next - at));
            at = next + sep.size();
        }
        cases.push_back("<|im_start|>user\nHi <s> 1234567 don't\t\tstop</s><|im_end|>");
    }
    REQUIRE(cases.size() > 20);
    std::vector<std::string> files = {vocab + "ggml-vocab-gpt-2.gguf", vocab + "ggml-vocab-llama-spm.gguf"};
    if (fs::exists(model::default_smollm2_path())) files.push_back(model::default_smollm2_path());
    for (const auto& f : files) {
        CAPTURE(f);
        test::temp_dir t;
        model::gguf_reader g(f);
        model::write_hf_tokenizer(g, t.path.string(), 2048);
        CHECK(fs::exists(t / "tokenizer_config.json"));
        CHECK(fs::exists(t / "special_tokens_map.json"));
        auto want = model::tokenizer::from_gguf(g);
        auto got = model::tokenizer::from_hf_json(t / "tokenizer.json");
        CHECK(got.vocab_size() == want.vocab_size());
        CHECK(got.bos_id() == want.bos_id());
        CHECK(got.eos_id() == want.eos_id());
        CHECK(got.add_bos() == want.add_bos());
        size_t same = 0;
        for (const auto& s : cases) {
            const auto a = got.encode(s, false, true), b = want.encode(s, false, true);
            if (a == b) ++same;
            else MESSAGE("differs on: ", s);
        }
        CHECK(same == cases.size());
        auto cfg = nlohmann::json::parse(test::read_file(t / "tokenizer_config.json"));
        CHECK(cfg.value("chat_template", std::string()) == g.get_string("tokenizer.chat_template", ""));
    }
}

TEST_CASE("merged config.json: rope_scaling recovered from the frequency factors") {
    model::llama_config c;
    c.head_dim = 64;
    c.rope_theta = 500000.f;
    CHECK(model::hf_rope_scaling(c).is_null());
    c.rope_freq_factors = model::llama3_rope_factors(64, 500000.f, 32.f, 1.f, 4.f, 8192);  // Llama 3.2
    auto j = model::hf_rope_scaling(c);
    CHECK(j["rope_type"] == "llama3");
    CHECK(j["factor"].get<double>() == doctest::Approx(32));
    CHECK(j["low_freq_factor"].get<double>() == doctest::Approx(1));
    CHECK(j["high_freq_factor"].get<double>() == doctest::Approx(4));
    CHECK(j["original_max_position_embeddings"] == 8192);
    c.rope_freq_factors.assign(32, 2.f);
    CHECK(model::hf_rope_scaling(c)["rope_type"] == "linear");
    for (size_t i = 0; i < 32; ++i) c.rope_freq_factors[i] = 1.f + float(i % 3);
    CHECK_THROWS_AS(model::hf_rope_scaling(c), user_error);
}
