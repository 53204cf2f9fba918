// Tests of the WordPiece tokenizer and the BERT sentence embedder: ids and embeddings against
// HF tokenizers / sentence-transformers fixtures (tests/ref/minilm/), and load-time checks.
#include <doctest/doctest.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/bert.h"
#include "model/runtime.h"
#include "model/format/safetensors.h"
#include "model/tokenizer/wordpiece-tokenizer.h"
#include "tests/test-util.h"

using namespace slm::model;
namespace fs = std::filesystem;

namespace {

const nlohmann::json& fixture() {
    static const nlohmann::json j = [] {
        const auto path = slm::test::source_dir("tests/ref/minilm/fixture.json");
        std::ifstream f(path);
        REQUIRE_MESSAGE(f.good(), "cannot open " << path);
        auto j = nlohmann::json::parse(f);
        REQUIRE(j.at("version").get<int>() == 1);
        return j;
    }();
    return j;
}

std::string minilm_dir() {
    const std::string dir = default_minilm_dir();
    REQUIRE_MESSAGE(fs::exists(fs::path(dir) / "model.safetensors"),
                    "all-MiniLM-L6-v2 not found at " << dir << ": run scripts/fetch-models.sh to fetch it");
    return dir;
}

const sentence_embedder& minilm(const std::string& dtype) {
    static std::map<std::string, sentence_embedder> cache;
    auto it = cache.find(dtype);
    if (it == cache.end()) {
        sentence_embedder_params p;
        p.dtype = dtype;
        it = cache.emplace(dtype, sentence_embedder::load(minilm_dir(), p)).first;
    }
    return it->second;
}

double dot(const float* a, const float* b, int n) {
    double s = 0;
    for (int i = 0; i < n; ++i) s += double(a[i]) * b[i];
    return s;
}
double cosine(const float* a, const float* b, int n) { return dot(a, b, n) / std::sqrt(dot(a, a, n) * dot(b, b, n)); }

// ---- a tiny random BERT written to a temp dir (load checks, padding invariance) -------------

const std::vector<std::string> k_tiny_vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog",
                                               "sat", "on", "mat", "a", "##s", "run", ".", ",", "!", "un", "##able"};

struct tiny_tensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
};

std::vector<tiny_tensor> tiny_tensors(int64_t C, int64_t F, int64_t V, int64_t P, int layers) {
    std::mt19937 rng(42);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::vector<tiny_tensor> out;
    auto add = [&](std::string name, std::vector<int64_t> shape, float scale, float offset = 0.f) {
        int64_t n = 1;
        for (auto d : shape) n *= d;
        tiny_tensor t{std::move(name), std::move(shape), std::vector<float>(n)};
        for (auto& x : t.data) x = offset + scale * nd(rng);
        out.push_back(std::move(t));
    };
    add("embeddings.word_embeddings.weight", {V, C}, 1.f);
    add("embeddings.position_embeddings.weight", {P, C}, 0.5f);
    add("embeddings.token_type_embeddings.weight", {2, C}, 0.5f);
    add("embeddings.LayerNorm.weight", {C}, 0.1f, 1.f);
    add("embeddings.LayerNorm.bias", {C}, 0.1f);
    for (int i = 0; i < layers; ++i) {
        const std::string p = "encoder.layer." + std::to_string(i) + ".";
        for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"}) {
            add(p + m + ".weight", {C, C}, 1.f / std::sqrt(float(C)));
            add(p + m + ".bias", {C}, 0.1f);
        }
        add(p + "attention.output.LayerNorm.weight", {C}, 0.1f, 1.f);
        add(p + "attention.output.LayerNorm.bias", {C}, 0.1f);
        add(p + "intermediate.dense.weight", {F, C}, 1.f / std::sqrt(float(C)));
        add(p + "intermediate.dense.bias", {F}, 0.1f);
        add(p + "output.dense.weight", {C, F}, 1.f / std::sqrt(float(F)));
        add(p + "output.dense.bias", {C}, 0.1f);
        add(p + "output.LayerNorm.weight", {C}, 0.1f, 1.f);
        add(p + "output.LayerNorm.bias", {C}, 0.1f);
    }
    return out;
}

void write_tensors(const std::string& path, const std::vector<tiny_tensor>& ts) {
    std::vector<st_write_entry> e;
    for (const auto& t : ts) e.push_back({t.name, "F32", t.shape, t.data.data(), t.data.size() * sizeof(float)});
    write_safetensors(path, e);
}

/// A BERT with hidden 16, 2 heads, 2 layers, 8 positions in `dir`; `edit` may change the tensors.
void write_tiny_bert(const std::string& dir, const std::function<void(std::vector<tiny_tensor>&)>& edit = {}) {
    const int64_t C = 16, F = 32, V = static_cast<int64_t>(k_tiny_vocab.size()), P = 8;
    fs::create_directories(dir);
    std::ofstream(dir + "/config.json") << nlohmann::json{{"model_type", "bert"}, {"hidden_size", C},
                                                          {"num_hidden_layers", 2}, {"num_attention_heads", 2},
                                                          {"intermediate_size", F}, {"vocab_size", V},
                                                          {"max_position_embeddings", P}, {"type_vocab_size", 2},
                                                          {"hidden_act", "gelu"}, {"layer_norm_eps", 1e-12}}
                                                          .dump();
    std::ofstream(dir + "/sentence_bert_config.json") << R"({"max_seq_length": 8, "do_lower_case": false})";
    std::ofstream voc(dir + "/vocab.txt");
    for (const auto& t : k_tiny_vocab) voc << t << "\n";
    voc.close();
    auto ts = tiny_tensors(C, F, V, P, 2);
    if (edit) edit(ts);
    write_tensors(dir + "/model.safetensors", ts);
}

/// Loads `dir` and returns the user_error's message and hint ("" if it loaded).
std::string load_error(const std::string& dir) {
    try {
        sentence_embedder::load(dir);
    } catch (const slm::user_error& e) {
        return std::string(e.what()) + " | hint: " + e.hint;
    }
    return "";
}

}  // namespace

// ---- WordPiece -----------------------------------------------------------------------------

TEST_CASE("wordpiece: greedy longest-match pieces, [UNK] words, specials, truncation") {
    auto tok = wordpiece_tokenizer::from_tokens(k_tiny_vocab, {}, "tiny");
    CHECK(tok.cls_id() == 2);
    CHECK(tok.sep_id() == 3);
    CHECK(tok.unk_id() == 1);
    CHECK(tok.encode("The cats sat on a mat.") == std::vector<int32_t>{2, 5, 6, 12, 8, 9, 11, 10, 14, 3});
    CHECK(tok.encode("unable", false) == std::vector<int32_t>{17, 18});
    CHECK(tok.encode("catz dog", false) == std::vector<int32_t>{1, 7});    // a word with an unmatched rest is one [UNK]
    CHECK(tok.encode("dog[SEP]cat", false) == std::vector<int32_t>{7, 3, 6});  // special text is the special token
    CHECK(tok.encode("[sep]", false) == std::vector<int32_t>{1, 1, 1});        // ... only verbatim: [ sep ]
    CHECK(tok.encode("") == std::vector<int32_t>{2, 3});
    CHECK(tok.encode("the cat sat on the mat", true, 4) == std::vector<int32_t>{2, 5, 6, 3});
    CHECK(tok.encode(std::string(101, 'a'), false) == std::vector<int32_t>{1});  // > 100 chars
    CHECK(tok.decode({2, 6, 12, 3}) == "[CLS] cats [SEP]");
}

TEST_CASE("wordpiece: BERT normaliser lower-cases, strips accents, spaces CJK, drops controls") {
    auto tok = wordpiece_tokenizer::from_tokens(k_tiny_vocab, {}, "tiny");
    CHECK(tok.normalize("Café DÉJÀ") == "cafe deja");
    CHECK(tok.normalize("a\u0301\u0308b") == "ab");                 // combining marks dropped
    CHECK(tok.normalize("x\u200by\x07z\tw\n") == "xyz w ");          // Cf/Cc dropped, whitespace -> ' '
    CHECK(tok.normalize("北京") == " 北  京 ");
    CHECK(tok.normalize("한") == "\u1112\u1161\u11ab");              // Hangul NFD
    CHECK(tok.normalize("ΆΣ") == "ασ");
    CHECK(tok.normalize("bad\xff\xfe utf8") == "bad utf8");
    CHECK(tok.pre_tokenize("Hello, wörld!! [CLS]x") ==
          std::vector<std::string>{"hello", ",", "world", "!", "!", "[CLS]", "x"});
}

TEST_CASE("wordpiece: all-MiniLM-L6-v2 ids equal HF tokenizers' on the fixture texts") {
    const auto tok = wordpiece_tokenizer::from_dir(minilm_dir());
    CHECK(tok.vocab_size() == 30522);
    int checked = 0;
    for (const auto& c : fixture()["tokenizer"]) {
        const auto text = c["text"].get<std::string>();
        const auto want = c["ids"].get<std::vector<int32_t>>();
        const auto got = tok.encode(text, true, fixture()["max_seq_length"].get<size_t>());
        CHECK_MESSAGE(got == want, "text: " << text << "\n  got:  " << tok.decode(got) << "\n  want: " << tok.decode(want));
        ++checked;
    }
    CHECK(checked >= 50);
}

// ---- BERT sentence embedder ----------------------------------------------------------------

TEST_CASE("bert: missing or corrupt model files are user errors naming the file and tensor") {
    slm::test::temp_dir t;
    const std::string missing = t / "nothing-here";
    auto msg = load_error(missing);
    CHECK(msg.find(missing) != std::string::npos);
    CHECK(msg.find("scripts/fetch-models.sh") != std::string::npos);

    const std::string ok = t / "ok";
    write_tiny_bert(ok);
    CHECK(load_error(ok) == "");

    const std::string no_w = t / "no-weights";
    write_tiny_bert(no_w);
    fs::remove(no_w + "/model.safetensors");
    msg = load_error(no_w);
    CHECK(msg.find(no_w + "/model.safetensors") != std::string::npos);
    CHECK(msg.find("fetch-models.sh") != std::string::npos);

    const std::string no_t = t / "missing-tensor";
    write_tiny_bert(no_t, [](auto& ts) { std::erase_if(ts, [](auto& x) { return x.name == "encoder.layer.1.output.dense.bias"; }); });
    msg = load_error(no_t);
    CHECK(msg.find("model.safetensors") != std::string::npos);
    CHECK(msg.find("'encoder.layer.1.output.dense.bias' is missing") != std::string::npos);
    CHECK(msg.find("hint:") != std::string::npos);

    const std::string shape = t / "bad-shape";
    write_tiny_bert(shape, [](auto& ts) {
        for (auto& x : ts)
            if (x.name == "encoder.layer.0.intermediate.dense.weight") x.shape = {16, 32};
    });
    msg = load_error(shape);
    CHECK(msg.find("'encoder.layer.0.intermediate.dense.weight' has shape [16, 32], expected [32, 16]") != std::string::npos);

    const std::string nan = t / "nan";
    write_tiny_bert(nan, [](auto& ts) { ts[3].data[5] = std::nanf(""); });
    msg = load_error(nan);
    CHECK(msg.find("'embeddings.LayerNorm.weight' holds NaN") != std::string::npos);

    const std::string trunc = t / "truncated";
    write_tiny_bert(trunc);
    fs::resize_file(trunc + "/model.safetensors", fs::file_size(trunc + "/model.safetensors") - 100);
    msg = load_error(trunc);
    CHECK(msg.find(trunc + "/model.safetensors") != std::string::npos);
    MESSAGE("truncated: " << msg);

    const std::string cfg = t / "bad-config";
    write_tiny_bert(cfg);
    std::ofstream(cfg + "/config.json") << "{\"hidden_size\": 16";
    msg = load_error(cfg);
    CHECK(msg.find(cfg + "/config.json") != std::string::npos);

    const std::string voc = t / "bad-vocab";
    write_tiny_bert(voc);
    std::ofstream(voc + "/vocab.txt") << "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n";
    msg = load_error(voc);
    CHECK(msg.find("vocab") != std::string::npos);
}

TEST_CASE("bert: embeddings do not depend on batching, padding or order; bf16 agrees with fp32") {
    slm::test::temp_dir t;
    write_tiny_bert(t / "m");
    const std::vector<std::string> texts = {"the cat sat on the mat .", "a dog", "", "cats run", "the dog sat on a cat !",
                                            "un", "the mat , the mat"};
    sentence_embedder_params p;
    p.dtype = "fp32";
    p.batch_size = 3;
    const auto e = sentence_embedder::load(t / "m", p);
    REQUIRE(e.dim() == 16);
    const auto batched = e.embed(texts);
    REQUIRE(batched.size() == texts.size() * 16);
    for (size_t i = 0; i < texts.size(); ++i) {
        const auto single = e.embed({texts[i]});
        CHECK_MESSAGE(cosine(single.data(), batched.data() + i * 16, 16) > 0.99999, "text " << i);
        CHECK(std::abs(dot(single.data(), single.data(), 16) - 1.0) < 1e-5);
    }
    CHECK(e.embed({}).empty());
    p.dtype = "bf16";
    const auto eb = sentence_embedder::load(t / "m", p);
    const auto bf = eb.embed(texts);
    for (size_t i = 0; i < texts.size(); ++i)
        CHECK_MESSAGE(cosine(bf.data() + i * 16, batched.data() + i * 16, 16) > 0.99, "text " << i);
    // max_seq_length 8 from sentence_bert_config.json: longer texts are truncated, not rejected
    CHECK(e.embed({"the cat sat on the mat the cat sat on the mat"}).size() == 16);
}

TEST_CASE("bert: all-MiniLM-L6-v2 embeddings match sentence-transformers (cosine >= 0.999)") {
    const auto& fx = fixture()["embeddings"];
    std::vector<std::string> texts;
    for (const auto& c : fx) texts.push_back(c["text"].get<std::string>());
    for (const char* dtype : {"fp32", "auto"}) {
        const auto& m = minilm(dtype);
        REQUIRE(m.dim() == 384);
        const auto got = m.embed(texts);
        double worst = 1;
        for (size_t i = 0; i < texts.size(); ++i) {
            const auto want = fx[i]["embedding"].get<std::vector<float>>();
            REQUIRE(want.size() == 384);
            const double cs = cosine(got.data() + i * 384, want.data(), 384);
            worst = std::min(worst, cs);
            CHECK_MESSAGE(cs >= 0.999, dtype << " text " << i << " (" << fx[i]["n_tokens"] << " tokens): cosine " << cs);
            CHECK(std::abs(dot(got.data() + i * 384, got.data() + i * 384, 384) - 1.0) < 1e-4);
        }
        MESSAGE("minilm " << m.dtype() << ": min cosine with sentence-transformers 1 - " << 1 - worst << " over "
                          << texts.size() << " texts");
    }
}

TEST_CASE("bert: all-MiniLM-L6-v2 puts paraphrases closer than unrelated sentences") {
    const auto& m = minilm("auto");
    const auto e = m.embed({"A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
                            "Extract the order number from this email as JSON.",
                            "Return the order id found in the customer's message, in JSON.",
                            "Write a poem about autumn leaves."});
    auto cs = [&](int a, int b) { return cosine(e.data() + a * 384, e.data() + b * 384, 384); };
    CHECK(cs(0, 1) > cs(0, 2) + 0.2);
    CHECK(cs(3, 4) > cs(3, 5) + 0.2);
    CHECK(cs(3, 4) > cs(3, 0) + 0.2);
    MESSAGE("paraphrase " << cs(0, 1) << " vs unrelated " << cs(0, 2) << "; " << cs(3, 4) << " vs " << cs(3, 5));
}

TEST_CASE("bench: bert minilm sentences/s on 1000 short texts (run with -tc='bench*bert*' --no-skip)" * doctest::skip(true)) {
    set_torch_threads(std::getenv("SLMCTL_BENCH_THREADS") ? std::atoi(std::getenv("SLMCTL_BENCH_THREADS")) : 0);
    std::mt19937 rng(7);
    const std::vector<std::string> words = {"extract", "the", "order", "number", "from", "this", "email", "write", "a",
                                            "summary", "of", "customer", "ticket", "json", "classify", "sentiment",
                                            "translate", "to", "french", "code", "python", "function", "bug", "fix"};
    std::vector<std::string> texts(1000);
    for (auto& s : texts) {
        const int n = 4 + static_cast<int>(rng() % 28);
        for (int i = 0; i < n; ++i) s += words[rng() % words.size()] + (i + 1 < n ? " " : ".");
    }
    const auto cpu_s = [] {
        timespec t{};
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
        return t.tv_sec + t.tv_nsec * 1e-9;
    };
    for (const std::string dtype : {"fp32", "bf16"}) {
        for (int bs : {32, 64, 128}) {
            sentence_embedder_params p;
            p.dtype = dtype;
            p.batch_size = bs;
            const auto m = sentence_embedder::load(minilm_dir(), p);
            m.embed({texts.begin(), texts.begin() + 64});  // warm-up
            const auto t0 = std::chrono::steady_clock::now();
            const double c0 = cpu_s();
            const auto e = m.embed(texts);
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            MESSAGE(dtype << " batch " << bs << ", " << runtime().threads << " threads: " << texts.size() / s
                          << " sentences/s (" << texts.size() / (cpu_s() - c0) << " per CPU-second)");
        }
    }
}
