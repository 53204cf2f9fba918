// load_tokenizer(): a tokenizer.json, a directory holding one, a vocab-only or a full GGUF, with
// no weights loaded; ids equal llama.cpp's golden vectors; chat templates come along; errors.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "vocab-vectors.h"

using namespace slm;
using namespace slm::model;
namespace fs = std::filesystem;

namespace {

size_t passed(const tokenizer& tok, const std::vector<test::vector_case>& cases) {
    size_t n = 0;
    for (const auto& c : cases) n += tok.encode(c.text) == c.ids;
    return n;
}

}  // namespace

TEST_CASE("load_tokenizer: vocab-only GGUF files give the reference ids") {
    for (const char* vocab : {"ggml-vocab-gpt-2.gguf", "ggml-vocab-starcoder.gguf", "ggml-vocab-llama-spm.gguf"}) {
        const std::string path = test::shared_data(test::k_vocab_dir + vocab);
        CHECK(is_tokenizer_path(path));
        const auto src = load_tokenizer(path);
        CHECK(src.file == path);
        const auto cases = test::load_vectors(vocab);
        REQUIRE(cases.size() == 46);
        CHECK_MESSAGE(passed(src.tok, cases) == 46, vocab);
    }
}

TEST_CASE("load_tokenizer: a tokenizer.json, or the directory holding it") {
    const auto cases = test::load_vectors("ggml-vocab-gpt-2.gguf");
    const std::string dir = test::shared_data("tokenizers/gpt2");
    const auto from_file = load_tokenizer(dir + "/tokenizer.json");
    const auto from_dir = load_tokenizer(dir);
    CHECK(from_dir.file == dir + "/tokenizer.json");
    CHECK(passed(from_file.tok, cases) == 46);
    CHECK(passed(from_dir.tok, cases) == 46);
    CHECK(from_dir.tok.eos_id() == 50256);  // tokenizer_config.json beside it was read

    // SmolLM-135M's files (no weights in the directory): the same ids as SmolLM2's GGUF vocabulary
    const auto smol = load_tokenizer(test::shared_data("tokenizers/smollm-135m"));
    CHECK(std::string(smol.tok.pre_style()) == "starcoder");
    const auto ids = smol.tok.encode("Hello world 123");
    CHECK(smol.tok.decode(ids) == "Hello world 123");
    CHECK(smol.tok.token_text(ids.back()) == "3");
}

TEST_CASE("load_tokenizer: a whole GGUF model brings its chat template; no weights are needed") {
    const std::string smol2 = default_smollm2_path();
    REQUIRE_MESSAGE(fs::exists(smol2), smol2 << " missing: run scripts/fetch-models.sh");
    const auto src = load_tokenizer(smol2);
    REQUIRE(src.chat);
    CHECK(std::string(src.chat->format_name()) == "chatml");
    const auto json_side = load_tokenizer(test::shared_data("tokenizers/smollm-135m/tokenizer.json"));
    for (const auto& c : test::load_vectors("ggml-vocab-starcoder.gguf"))
        CHECK(src.tok.encode(c.text) == json_side.tok.encode(c.text));

    // the vocab-only GGUFs carry no template
    CHECK_FALSE(load_tokenizer(test::shared_data(test::k_vocab_dir + "ggml-vocab-gpt-2.gguf")).chat);
}

TEST_CASE("load_tokenizer: errors name the path and say what to give") {
    test::temp_dir t;
    auto message = [](const std::string& p) {
        try {
            load_tokenizer(p);
        } catch (const user_error& e) {
            CHECK(!e.hint.empty());
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(message(t / "missing.json").find("missing.json") != std::string::npos);
    CHECK(message(t.path.string()).find("no tokenizer.json") != std::string::npos);
    std::ofstream(t / "junk.bin") << "not a model";
    CHECK(!is_tokenizer_path(t / "junk.bin"));
    CHECK(message(t / "junk.bin").find("not a tokenizer.json") != std::string::npos);
    CHECK(!is_tokenizer_path(t / "missing.gguf"));
    CHECK(is_tokenizer_path(t.path.string()));
}
