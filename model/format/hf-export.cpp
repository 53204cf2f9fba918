// HF tokenizer files rebuilt from a GGUF vocabulary, and rope_scaling for config.json: what a merged
// checkpoint of a GGUF base needs so that transformers loads it (model/adapter.h save_merged_hf).
#include "model/format/hf-export.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include <fmt/format.h>

#include "common/common.h"
#include "model/format/gguf-reader.h"
#include "model/llama.h"

namespace slm::model {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type)
enum : int32_t { tt_normal = 1, tt_unknown = 2, tt_control = 3, tt_user = 4, tt_unused = 5, tt_byte = 6 };

// The split regexes transformers' tokenizer.json files use (tokenizer.cpp recognises both).
constexpr const char* k_llama3_regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr const char* k_qwen2_regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

std::string json_str(const std::string& s) { return json(s).dump(-1, ' ', false, json::error_handler_t::replace); }

void write_file(const fs::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << s;
    if (!f) throw user_error(fmt::format("cannot write {}", p.string()), "check free disk space and permissions");
}

ojson byte_level(bool use_regex) {
    return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

// The pre-tokenizer for a tokenizer.ggml.pre name (the groups model/tokenizer/tokenizer.cpp reads).
ojson gpt2_pre_tokenizer(const std::string& pre, const std::string& file) {
    static const char* gpt2[] = {"default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "poro-chat", "viking",
                                 "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "roberta-bpe"};
    static const char* starcoder[] = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"};
    static const char* llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"};
    static const char* qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"};
    auto in = [&](const auto& names) { return std::find(std::begin(names), std::end(names), pre) != std::end(names); };
    auto split = [](const char* re) {
        return ojson{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}};
    };
    if (in(gpt2)) return byte_level(true);
    if (in(starcoder))
        return {{"type", "Sequence"},
                {"pretokenizers", ojson::array({ojson{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}};
    if (in(llama3)) return {{"type", "Sequence"}, {"pretokenizers", ojson::array({split(k_llama3_regex), byte_level(false)})}};
    if (in(qwen2)) return {{"type", "Sequence"}, {"pretokenizers", ojson::array({split(k_qwen2_regex), byte_level(false)})}};
    throw user_error(fmt::format("{}: pre-tokenizer '{}' (tokenizer.ggml.pre) has no tokenizer.json form here", file, pre),
                     "copy tokenizer.json from the HF model into the merged directory by hand");
}

// Boundaries of the UTF-8 code points of s (transformers splits pieces by character).
std::vector<size_t> char_starts(const std::string& s) {
    std::vector<size_t> out;
    for (size_t i = 0; i < s.size(); ++i)
        if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) out.push_back(i);
    return out;
}

}  // namespace

void write_hf_tokenizer(const gguf_reader& g, const std::string& dir_s, int64_t model_max_length) {
    const fs::path dir(dir_s);
    const std::string file = g.path();
    const std::string model = g.get_string("tokenizer.ggml.model", "");
    if (model != "gpt2" && model != "llama")
        throw user_error(fmt::format("{}: tokenizer.ggml.model '{}' has no tokenizer.json form here", file, model),
                         "copy the tokenizer files from the HF model into the merged directory by hand");
    const bool spm = model == "llama";
    const auto& tokens = g.get_array_strings("tokenizer.ggml.tokens");
    const size_t n = tokens.size();
    std::vector<int32_t> types(n, tt_normal);
    if (g.has("tokenizer.ggml.token_type")) {
        types = g.get_array_i32("tokenizer.ggml.token_type");
        if (types.size() != n)
            throw user_error(fmt::format("{}: tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens {}", file,
                                         types.size(), n),
                             "the GGUF's vocabulary is broken; re-convert the model");
    }
    auto id_key = [&](const char* k) -> int64_t {
        if (!g.has(k)) return -1;
        const int64_t v = g.get_u32(k);
        return v < int64_t(n) ? v : -1;
    };
    const int64_t bos = id_key("tokenizer.ggml.bos_token_id"), eos = id_key("tokenizer.ggml.eos_token_id");
    const int64_t unk = id_key("tokenizer.ggml.unknown_token_id"), pad = id_key("tokenizer.ggml.padding_token_id");
    const bool add_bos = g.get_bool("tokenizer.ggml.add_bos_token", spm) && bos >= 0;
    const bool add_eos = g.get_bool("tokenizer.ggml.add_eos_token", false) && eos >= 0;
    const bool add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix", spm);

    // vocab: text -> id, the first id of a text that appears twice
    std::unordered_map<std::string, int64_t> vocab;
    vocab.reserve(n);
    std::string vocab_json = "{";
    for (size_t i = 0; i < n; ++i) {
        if (!vocab.emplace(tokens[i], int64_t(i)).second) continue;
        if (vocab_json.size() > 1) vocab_json += ',';
        vocab_json += json_str(tokens[i]) + ':' + std::to_string(i);
    }
    vocab_json += '}';

    // merges: the GGUF's for byte-level BPE; derived from scores for SentencePiece
    std::vector<std::string> merges;
    if (!spm) {
        merges = g.get_array_strings("tokenizer.ggml.merges");
    } else {
        const auto scores = g.get_array_f32("tokenizer.ggml.scores");
        if (scores.size() != n)
            throw user_error(fmt::format("{}: tokenizer.ggml.scores has {} entries, tokenizer.ggml.tokens {}", file,
                                         scores.size(), n),
                             "the GGUF's vocabulary is broken; re-convert the model");
        struct merge {
            float score;
            int64_t l, r;
            std::string text;
        };
        std::vector<merge> all;
        for (size_t i = 0; i < n; ++i) {
            if (types[i] != tt_normal && types[i] != tt_user) continue;
            const std::string& piece = tokens[i];
            std::vector<merge> local;
            for (size_t cut : char_starts(piece)) {
                if (cut == 0) continue;
                auto l = vocab.find(piece.substr(0, cut)), r = vocab.find(piece.substr(cut));
                if (l != vocab.end() && r != vocab.end())
                    local.push_back({scores[i], l->second, r->second, piece.substr(0, cut) + ' ' + piece.substr(cut)});
            }
            std::sort(local.begin(), local.end(), [](const merge& a, const merge& b) { return std::pair(a.l, a.r) < std::pair(b.l, b.r); });
            all.insert(all.end(), std::make_move_iterator(local.begin()), std::make_move_iterator(local.end()));
        }
        std::stable_sort(all.begin(), all.end(), [](const merge& a, const merge& b) { return a.score > b.score; });
        merges.reserve(all.size());
        for (auto& m : all) merges.push_back(std::move(m.text));
    }
    std::string merges_json = "[";
    for (size_t i = 0; i < merges.size(); ++i) {
        if (i) merges_json += ',';
        merges_json += json_str(merges[i]);
    }
    merges_json += ']';

    // added tokens: control and user-defined ones (and SentencePiece's unknown)
    ojson added = ojson::array();
    ojson added_decoder = ojson::object();
    for (size_t i = 0; i < n; ++i) {
        const int32_t t = types[i];
        if (!(t == tt_control || t == tt_user || (spm && t == tt_unknown))) continue;
        const bool special = t != tt_user;
        added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                         {"normalized", !special && spm}, {"special", special}});
        added_decoder[std::to_string(i)] = {{"content", tokens[i]}, {"lstrip", false}, {"normalized", !special && spm},
                                            {"rstrip", false}, {"single_word", false}, {"special", special}};
    }

    ojson post = nullptr;
    if (add_bos || add_eos) {
        auto special = [&](int64_t id, int type_id) { return ojson{{"SpecialToken", {{"id", tokens[id]}, {"type_id", type_id}}}}; };
        auto seq = [](const char* id, int type_id) { return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
        ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
        for (int side = 0; side < 2; ++side) {
            auto& v = side ? pair : single;
            if (add_bos) v.push_back(special(bos, 0));
            v.push_back(seq("A", 0));
            if (add_eos) v.push_back(special(eos, 0));
        }
        if (add_bos) pair.push_back(special(bos, 1));
        pair.push_back(seq("B", 1));
        if (add_eos) pair.push_back(special(eos, 1));
        for (int64_t id : {add_bos ? bos : -1, add_eos ? eos : -1})
            if (id >= 0) specials[tokens[id]] = {{"id", tokens[id]}, {"ids", {id}}, {"tokens", {tokens[id]}}};
        post = {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
    }

    ojson tj;
    tj["version"] = "1.0";
    tj["truncation"] = nullptr;
    tj["padding"] = nullptr;
    tj["added_tokens"] = added;
    ojson bpe = {{"type", "BPE"},
                 {"dropout", nullptr},
                 {"unk_token", spm && unk >= 0 ? ojson(tokens[unk]) : ojson(nullptr)},
                 {"continuing_subword_prefix", nullptr},
                 {"end_of_word_suffix", nullptr},
                 {"fuse_unk", spm},
                 {"byte_fallback", spm},
                 {"ignore_merges", !spm && g.get_string("tokenizer.ggml.pre", "default").find("llama") != std::string::npos},
                 {"vocab", "@VOCAB@"},
                 {"merges", "@MERGES@"}};
    if (spm) {
        const ojson replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}};
        tj["normalizer"] = add_space_prefix
                               ? ojson{{"type", "Sequence"},
                                       {"normalizers", ojson::array({ojson{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}}, replace})}}
                               : replace;
        tj["pre_tokenizer"] = nullptr;
        tj["post_processor"] = post;
        ojson dec = ojson::array({ojson{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                  ojson{{"type", "ByteFallback"}}, ojson{{"type", "Fuse"}}});
        if (add_space_prefix) dec.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
        tj["decoder"] = {{"type", "Sequence"}, {"decoders", dec}};
    } else {
        tj["normalizer"] = nullptr;
        tj["pre_tokenizer"] = gpt2_pre_tokenizer(g.get_string("tokenizer.ggml.pre", "default"), file);
        tj["post_processor"] = post;
        tj["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
    }
    tj["model"] = bpe;
    std::string text = tj.dump(1, ' ', false, json::error_handler_t::replace);
    // the big arrays are spliced in as text: an ordered_json object of 150k keys inserts in O(n^2)
    auto splice = [&](const std::string& mark, const std::string& with) {
        const auto at = text.find(json_str(mark));
        SLM_ASSERT(at != std::string::npos, "placeholder {}", mark);
        text.replace(at, mark.size() + 2, with);
    };
    splice("@VOCAB@", vocab_json);
    splice("@MERGES@", merges_json);
    write_file(dir / "tokenizer.json", text + "\n");

    auto tok_or_null = [&](int64_t id) { return id >= 0 ? ojson(tokens[id]) : ojson(nullptr); };
    ojson cfg;
    cfg["add_bos_token"] = add_bos;
    cfg["add_eos_token"] = add_eos;
    cfg["added_tokens_decoder"] = added_decoder;
    cfg["bos_token"] = tok_or_null(bos);
    cfg["eos_token"] = tok_or_null(eos);
    cfg["unk_token"] = tok_or_null(unk);
    cfg["pad_token"] = tok_or_null(pad);
    const std::string chat = g.get_string("tokenizer.chat_template", "");
    if (!chat.empty()) cfg["chat_template"] = chat;
    cfg["clean_up_tokenization_spaces"] = false;
    cfg["model_max_length"] = model_max_length;
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast";  // tokenizer.json as written, no class-specific rebuild
    write_file(dir / "tokenizer_config.json", cfg.dump(2, ' ', false, json::error_handler_t::replace) + "\n");

    ojson map = ojson::object();
    for (auto [k, id] : {std::pair{"bos_token", bos}, {"eos_token", eos}, {"unk_token", unk}, {"pad_token", pad}})
        if (id >= 0) map[k] = tokens[id];
    write_file(dir / "special_tokens_map.json", map.dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

json hf_rope_scaling(const llama_config& c) {
    const auto& f = c.rope_freq_factors;
    if (f.empty()) return nullptr;
    const float lo = *std::min_element(f.begin(), f.end()), hi = *std::max_element(f.begin(), f.end());
    if (hi - lo <= 1e-6f * hi) return {{"rope_type", "linear"}, {"type", "linear"}, {"factor", hi}};
    // Llama 3.1/3.2 ship factor 8 or 32, low 1, high 4, original 8192; try the usual sets
    for (int64_t orig : {8192, 4096, 2048, 16384, 32768})
        for (auto [low, high] : {std::pair{1.f, 4.f}, {1.f, 2.f}, {2.f, 8.f}}) {
            const auto want = llama3_rope_factors(c.head_dim, c.rope_theta, hi, low, high, orig);
            bool same = want.size() == f.size();
            for (size_t i = 0; same && i < f.size(); ++i) same = std::abs(want[i] - f[i]) <= 1e-4f * std::max(1.f, f[i]);
            if (same)
                return {{"rope_type", "llama3"}, {"type", "llama3"}, {"factor", hi}, {"low_freq_factor", low},
                        {"high_freq_factor", high}, {"original_max_position_embeddings", orig}};
        }
    throw user_error(fmt::format("the base's RoPE frequency factors ({} values from {} to {}) match neither linear nor "
                                 "Llama 3 scaling with the usual parameters",
                                 f.size(), lo, hi),
                     "serve the adapter on the original checkpoint instead of a merged copy");
}

}  // namespace slm::model
