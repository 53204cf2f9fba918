// Tokenizer tests: llama.cpp's golden vectors (gpt-2 from tokenizer.json and GGUF, starcoder,
// llama-spm), llama2.c's prompts, SmolLM round trips and GGUF-vs-json agreement, specials.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/format/gguf-reader.h"
#include "model/tokenizer/tokenizer-impl.h"
#include "model/tokenizer.h"
#include "tests/test-util.h"
#include "vocab-vectors.h"

using namespace slm::model;
using slm::test::shared_data;

namespace {

using slm::test::k_vocab_dir;
using slm::test::load_vectors;
using slm::test::vector_case;

std::string show(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += fmt::format(" {}", id);
    return s;
}

// Runs every case; prints each failure with expected vs got, returns the number passed.
size_t run_vectors(const tokenizer& tok, const std::vector<vector_case>& cases, const std::string& label) {
    size_t passed = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
        const auto got = tok.encode(cases[i].text);
        if (got == cases[i].ids) {
            ++passed;
        } else {
            MESSAGE(label << " case " << i << " " << nlohmann::json(cases[i].text).dump() << "\n  expected:"
                          << show(cases[i].ids) << "\n  got:     " << show(got));
        }
    }
    return passed;
}

std::string smollm2_path() { return slm::models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

void require_smollm2() {
    REQUIRE_MESSAGE(std::filesystem::exists(smollm2_path()),
                    "SmolLM2 GGUF not found at " << smollm2_path()
                                                 << ": run `make test` or scripts/fetch-models.sh to fetch it");
}

std::vector<std::string> split(pretok_style style, std::string_view text) {
    std::vector<std::string_view> pieces;
    pretokenize(style, text, pieces);
    return {pieces.begin(), pieces.end()};
}

}  // namespace

TEST_CASE("pre-tokenizer splits match the reference regexes") {
    // expected splits from Python's `regex` module with the upstream patterns
    using v = std::vector<std::string>;
    CHECK(split(pretok_style::gpt2, "Hello, y'all! 123  x\n\n\tz  ") ==
          v{"Hello", ",", " y", "'", "all", "!", " 123", " ", " x", "\n\n", "\t", "z", "  "});
    CHECK(split(pretok_style::gpt2, "I've 'RE") == v{"I", "'ve", " '", "RE"});
    CHECK(split(pretok_style::starcoder, "a 123b  45") == v{"a", " ", "1", "2", "3", "b", "  ", "4", "5"});
    CHECK(split(pretok_style::llama3, "Hello, y'all! I'VE 12345  x\n\n\tz  ") ==
          v{"Hello", ",", " y", "'all", "!", " I", "'VE", " ", "123", "45", " ", " x", "\n\n", "\tz", "  "});
    CHECK(split(pretok_style::llama3, "a.\n\nb ...\r\n") == v{"a", ".\n\n", "b", " ...\r\n"});
    CHECK(split(pretok_style::qwen2, "x 2024") == v{"x", " ", "2", "0", "2", "4"});
    CHECK(split(pretok_style::gpt2, "нещо на").size() == 2);
    CHECK(split(pretok_style::gpt2, "").empty());
    // stray bytes are kept, never dropped
    CHECK(split(pretok_style::gpt2, "a\xff\xfe b") == v{"a", "\xff\xfe", " b"});
}

TEST_CASE("gpt-2 vectors from tokenizer.json and from GGUF") {
    const auto cases = load_vectors("ggml-vocab-gpt-2.gguf");
    REQUIRE(cases.size() == 46);
    const auto from_json = tokenizer::from_hf_json(shared_data("tokenizers/gpt2/tokenizer.json"));
    CHECK(std::string(from_json.kind()) == "bpe");
    CHECK(from_json.vocab_size() == 50257);
    CHECK(from_json.eos_id() == 50256);
    CHECK(run_vectors(from_json, cases, "gpt-2 tokenizer.json") == 46);

    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-gpt-2.gguf"));
    const auto from_gguf = tokenizer::from_gguf(g);
    CHECK(std::string(from_gguf.pre_style()) == "gpt2");
    CHECK(run_vectors(from_gguf, cases, "gpt-2 GGUF") == 46);
    for (const auto& c : cases) CHECK(from_gguf.decode(c.ids) == c.text);
}

TEST_CASE("starcoder vectors from GGUF") {
    const auto cases = load_vectors("ggml-vocab-starcoder.gguf");
    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-starcoder.gguf"));
    const auto tok = tokenizer::from_gguf(g);
    CHECK(std::string(tok.pre_style()) == "starcoder");
    CHECK(run_vectors(tok, cases, "starcoder GGUF") == 46);
    for (const auto& c : cases) CHECK(tok.decode(c.ids) == c.text);
}

TEST_CASE("llama-spm vectors from GGUF") {
    const auto cases = load_vectors("ggml-vocab-llama-spm.gguf");
    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-llama-spm.gguf"));
    const auto tok = tokenizer::from_gguf(g);
    CHECK(std::string(tok.kind()) == "spm");
    CHECK(tok.vocab_size() == 32000);
    CHECK(tok.bos_id() == 1);
    CHECK(tok.eos_id() == 2);
    CHECK(tok.add_bos());
    CHECK(run_vectors(tok, cases, "llama-spm GGUF") == 46);
    for (const auto& c : cases) CHECK(tok.decode(c.ids) == c.text);
}

TEST_CASE("llama2.c encode cases on the Llama-2 SentencePiece vocabulary") {
    const auto j = nlohmann::json::parse(slm::test::read_file(shared_data("models/llama2c/tokenizer_bin_encode_cases.json")));
    // the same 32000-entry vocabulary ships in llama.cpp's llama-spm GGUF and ollama's tiny llama
    for (const char* file : {"tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf", "models/ollama_tiny/llama-2-tiny-random.gguf"}) {
        gguf_reader g(shared_data(file));
        const auto tok = tokenizer::from_gguf(g);
        REQUIRE(j["cases"].size() == 5);
        for (const auto& c : j["cases"]) {
            const std::string text = c["text"];
            const auto want = c["ids_with_bos"].get<std::vector<int32_t>>();
            const auto got = tok.encode(text, /*add_special=*/true);
            CHECK_MESSAGE(got == want, file << " " << nlohmann::json(text).dump() << "\n  expected:" << show(want)
                                            << "\n  got:     " << show(got));
            CHECK(tok.decode(got) == text);
        }
    }
}

TEST_CASE("SmolLM tokenizer.json round-trips and SmolLM2's GGUF agrees with it") {
    const auto cases = load_vectors("ggml-vocab-starcoder.gguf");  // the 46 strings
    const auto json_tok = tokenizer::from_hf_json(shared_data("tokenizers/smollm-135m/tokenizer.json"));
    CHECK(std::string(json_tok.pre_style()) == "starcoder");
    CHECK(json_tok.vocab_size() == 49153);  // the copied json's extra [PAD]
    CHECK(json_tok.token_text(1) == "<|im_start|>");
    for (const auto& c : cases) {
        const auto ids = json_tok.encode(c.text);
        CHECK_MESSAGE(json_tok.decode(ids) == c.text, nlohmann::json(c.text).dump());
    }

    require_smollm2();
    gguf_reader g(smollm2_path());
    const auto gguf_tok = tokenizer::from_gguf(g);
    CHECK(gguf_tok.vocab_size() == 49152);
    CHECK(std::string(gguf_tok.pre_style()) == "starcoder");
    CHECK(gguf_tok.bos_id() == 1);
    CHECK(gguf_tok.eos_id() == 2);
    CHECK(gguf_tok.eot_id() == 2);
    CHECK(!gguf_tok.add_bos());
    CHECK(gguf_tok.chat_template().find("<|im_start|>") != std::string::npos);
    size_t same = 0;
    for (const auto& c : cases) {
        const auto a = gguf_tok.encode(c.text), b = json_tok.encode(c.text);
        if (a == b) ++same;
        else MESSAGE("SmolLM2 GGUF vs json " << nlohmann::json(c.text).dump() << "\n  json:" << show(b) << "\n  gguf:" << show(a));
    }
    CHECK(same == cases.size());
}

TEST_CASE("special tokens: parse_special, add_special, user text that looks special") {
    const auto tok = tokenizer::from_hf_json(shared_data("tokenizers/smollm-135m/tokenizer.json"));
    const std::string prompt = "<|im_start|>user\nHi there<|im_end|>\n";
    const auto parsed = tok.encode(prompt, false, true);
    REQUIRE(parsed.size() > 3);
    CHECK(parsed.front() == 1);
    CHECK(std::count(parsed.begin(), parsed.end(), 2) == 1);
    CHECK(tok.decode(parsed) == "user\nHi there\n");
    CHECK(tok.decode(parsed, /*render_special=*/true) == prompt);
    // without parse_special the markers are plain text
    const auto plain = tok.encode(prompt);
    CHECK(std::count(plain.begin(), plain.end(), 1) == 0);
    CHECK(tok.decode(plain) == prompt);
    CHECK(tok.special_tokens().size() == 18);
    CHECK(tok.attr(2) == token_attr::control);

    // gpt-2 json: BOS is not added by the model's post-processor
    const auto gpt2 = tokenizer::from_hf_json(shared_data("tokenizers/gpt2/tokenizer.json"));
    CHECK(gpt2.encode("Hello", true) == std::vector<int32_t>{15496});
    CHECK(gpt2.encode("<|endoftext|>", false, true) == std::vector<int32_t>{50256});
    // llama-spm: BOS on request, "▁" after a special token as llama.cpp does
    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-llama-spm.gguf"));
    const auto spm = tokenizer::from_gguf(g);
    CHECK(spm.encode("Hello", true) == std::vector<int32_t>{1, 15043});
    CHECK(spm.encode("</s>Hello", false, true) == std::vector<int32_t>{2, 15043});
    CHECK(spm.encode("", true) == std::vector<int32_t>{1});
}

TEST_CASE("byte-level BPE is lossless on arbitrary bytes") {
    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-gpt-2.gguf"));
    const auto tok = tokenizer::from_gguf(g);
    std::string bytes;
    for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
    bytes += "\xe2\x82";  // truncated UTF-8 at the end
    CHECK(tok.decode(tok.encode(bytes)) == bytes);
    // spm falls back to <0xNN> for characters outside its vocabulary
    gguf_reader gs(shared_data(k_vocab_dir + "ggml-vocab-llama-spm.gguf"));
    const auto spm = tokenizer::from_gguf(gs);
    const std::string odd = "𝔘𝔫𝔦 \xf0\x9f\xa6\x99 x";
    CHECK(spm.decode(spm.encode(odd)) == odd);
    // random byte strings (mostly invalid UTF-8) and random mixes of tricky characters
    std::mt19937 rng(5);
    const std::vector<std::string> alphabet = {" ", "  ", "\n", "\t", "a", "Z", "1", "'s", "é", "中", "😁", "\xe2\x80", "\xff", "<s>", "▁"};
    for (int k = 0; k < 300; ++k) {
        std::string s;
        const int len = static_cast<int>(rng() % 40);
        for (int i = 0; i < len; ++i) {
            if (k % 2) s += static_cast<char>(rng() % 256);
            else s += alphabet[rng() % alphabet.size()];
        }
        REQUIRE_MESSAGE(tok.decode(tok.encode(s)) == s, "bpe round trip of case " << k);
        // SentencePiece cannot tell a literal "▁" from an escaped space (upstream behaves the same)
        if (s.find("▁") == std::string::npos) REQUIRE(spm.decode(spm.encode(s)) == s);
    }
}

TEST_CASE("small synthetic tokenizer.json files: Llama-3 split regex, Llama-2 SentencePiece style") {
    // Llama-3 style: Split(regex) + ByteLevel(use_regex=false), ignore_merges
    const std::string llama3 = R"({
      "added_tokens": [{"id": 9, "content": "<|eot_id|>", "special": true}],
      "normalizer": null,
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]},
      "model": {"type": "BPE", "ignore_merges": true,
        "vocab": {"h": 0, "i": 1, "Ġ": 2, "hi": 3, "Ġhi": 4, "1": 5, "2": 6, "3": 7, "4": 8},
        "merges": ["h i", "Ġ hi"]}})";
    const auto t3 = tokenizer::from_hf_json_text(llama3, "", "llama3.json");
    CHECK(std::string(t3.pre_style()) == "llama3");
    CHECK(t3.encode("hi hi1234") == std::vector<int32_t>{3, 4, 5, 6, 7, 8});
    CHECK(t3.eot_id() == 9);
    CHECK(t3.encode("hi<|eot_id|>", false, true) == std::vector<int32_t>{3, 9});
    CHECK(t3.decode(t3.encode("hi hi1234")) == "hi hi1234");

    // Llama-2 style: "▁" normalizer, BPE with byte fallback -> SentencePiece merging
    const std::string llama2 = R"({
      "added_tokens": [{"id": 0, "content": "<unk>", "special": true}, {"id": 1, "content": "<s>", "special": true},
                       {"id": 2, "content": "</s>", "special": true}],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                     {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
      "pre_tokenizer": null,
      "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}]},
      "model": {"type": "BPE", "byte_fallback": true,
        "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x21>": 3, "\u2581": 4, "h": 5, "i": 6, "\u2581h": 7, "\u2581hi": 8},
        "merges": ["\u2581 h", "\u2581h i"]}})";
    const auto t2 = tokenizer::from_hf_json_text(llama2, "", "llama2.json");
    CHECK(std::string(t2.kind()) == "spm");
    CHECK(t2.add_bos());
    CHECK(t2.encode("hi hi!", true) == std::vector<int32_t>{1, 8, 8, 3});
    CHECK(t2.decode(t2.encode("hi hi!", true)) == "hi hi!");
}

TEST_CASE("unsupported tokenizer.json layouts give user errors" ) {
    CHECK_THROWS_AS(tokenizer::from_hf_json_text("{", "", "bad.json"), slm::user_error);
    CHECK_THROWS_AS(tokenizer::from_hf_json_text(R"({"model":{"type":"WordPiece","vocab":{}}})", "", "wp.json"),
                    slm::user_error);
    CHECK_THROWS_AS(tokenizer::from_hf_json("/nonexistent/tokenizer.json"), slm::user_error);
}

// Throughput on a few MB of mixed text; run with: test-model -tc="tokenizer throughput*" --no-skip
TEST_CASE("tokenizer throughput" * doctest::skip()) {
    // ~3 MB of distinct text (agent logs, a vocabulary file), so the word cache starts cold
    std::string text = slm::test::read_file(shared_data("logs/pydantic-ai-chat-completions.jsonl"));
    text += slm::test::read_file(shared_data("tokenizers/gpt2/tokenizer.json"));
    auto bench = [&](const tokenizer& tok, const std::string& label) {
        const auto t0 = std::chrono::steady_clock::now();
        size_t n = 0;
        for (size_t pos = 0; pos < text.size(); pos += 2000) n += tok.encode(std::string_view(text).substr(pos, 2000)).size();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        MESSAGE(label << ": " << text.size() / 1e6 << " MB -> " << n << " tokens in " << s << " s = " << n / s / 1e6
                      << " M tokens/s, " << text.size() / s / 1e6 << " MB/s");
    };
    bench(tokenizer::from_hf_json(shared_data("tokenizers/smollm-135m/tokenizer.json")), "smollm (bpe)");
    gguf_reader g(shared_data(k_vocab_dir + "ggml-vocab-gpt-2.gguf"));
    bench(tokenizer::from_gguf(g), "gpt-2 (bpe)");
    gguf_reader gs(shared_data(k_vocab_dir + "ggml-vocab-llama-spm.gguf"));
    bench(tokenizer::from_gguf(gs), "llama (spm)");
}
