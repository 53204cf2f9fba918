// The tokenizer front: loading vocabularies from tokenizer.json or GGUF metadata, matching
// special/added tokens in raw text, BOS/EOS handling and decoding. The merge algorithms live in
// bpe-tokenizer.cpp and spm-tokenizer.cpp.
#include "model/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/format/gguf-reader.h"
#include "model/tokenizer/tokenizer-impl.h"
#include "model/tokenizer/unicode.h"

namespace slm::model {

namespace {

using json = nlohmann::json;

constexpr std::string_view k_space_marker = "\xE2\x96\x81";  // "▁"

// Texts that end a turn in common chat formats; the first present is the eot token.
constexpr const char* k_eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|eom_id|>"};
// Also end generation when present.
constexpr const char* k_eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|eom_id|>",
                                       "<|endoftext|>", "<|end_of_text|>"};

// GGUF tokenizer.ggml.pre names, as llama.cpp groups them by pre-tokenizer regex.
bool pre_style_from_name(const std::string& pre, pretok_style& style, bool& ignore_merges) {
    ignore_merges = false;
    static const char* gpt2[] = {"default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "poro-chat", "viking",
                                 "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "roberta-bpe"};
    static const char* starcoder[] = {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"};
    static const char* llama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"};
    static const char* qwen2[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", "hunyuan"};
    for (const char* n : gpt2)
        if (pre == n) return style = pretok_style::gpt2, true;
    for (const char* n : starcoder)
        if (pre == n) return style = pretok_style::starcoder, true;
    for (const char* n : llama3)
        if (pre == n) return style = pretok_style::llama3, ignore_merges = true, true;
    for (const char* n : qwen2)
        if (pre == n) return style = pretok_style::qwen2, true;
    return false;
}

const char* style_name(pretok_style s) {
    switch (s) {
        case pretok_style::gpt2: return "gpt2";
        case pretok_style::starcoder: return "starcoder";
        case pretok_style::llama3: return "llama3";
        case pretok_style::qwen2: return "qwen2";
    }
    return "?";
}

// Fills lookups that depend on the vocabulary: text -> id, byte tokens, merges, special
// tokens, eot/eog. `merge_pairs` are (left, right) texts in rank order.
void finalize(tokenizer_impl& t, const std::vector<std::pair<std::string, std::string>>& merge_pairs) {
    static std::atomic<uint64_t> next_uid{1};
    t.uid = next_uid++;
    const auto n = static_cast<int32_t>(t.text.size());
    t.attrs.resize(n, token_attr::normal);
    t.lstrip.resize(n, 0);
    t.rstrip.resize(n, 0);
    t.to_id.reserve(n);
    for (int32_t i = 0; i < n; ++i)
        if (!t.text[i].empty()) t.to_id.emplace(t.text[i], i);  // first wins on duplicates

    t.byte_ids.fill(-1);
    for (int b = 0; b < 256; ++b) {
        if (t.kind == tokenizer_kind::bpe) {
            t.byte_ids[b] = t.find(unicode::byte_to_text(static_cast<uint8_t>(b)));
        } else {
            t.byte_ids[b] = t.find(fmt::format("<0x{:02X}>", b));
        }
    }

    if (t.kind == tokenizer_kind::spm) {
        t.spm_word_split = true;
        for (const auto& s : t.text) {
            for (size_t p = s.find(k_space_marker, 1); p != std::string::npos; p = s.find(k_space_marker, p + 1))
                if (s.compare(p - k_space_marker.size(), k_space_marker.size(), k_space_marker) != 0) {
                    t.spm_word_split = false;
                    break;
                }
            if (!t.spm_word_split) break;
        }
    }

    if (t.kind == tokenizer_kind::bpe) {
        t.merges.reserve(merge_pairs.size());
        int32_t rank = 0, skipped = 0;
        std::string joined;
        for (const auto& [a, b] : merge_pairs) {
            const int32_t ia = t.find(a), ib = t.find(b);
            joined = a;
            joined += b;
            const int32_t ir = t.find(joined);
            if (ia < 0 || ib < 0 || ir < 0) {
                ++skipped;
            } else {
                const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia)) << 32) | static_cast<uint32_t>(ib);
                t.merges.emplace(key, merge_info{rank, ir});  // the lowest rank wins on duplicates
            }
            ++rank;
        }
        if (skipped) log_verbose("{}: {} of {} merges refer to tokens not in the vocabulary (ignored)", t.name, skipped, rank);
    }

    for (int32_t i = 0; i < n; ++i) {
        const token_attr a = t.attrs[i];
        if ((a == token_attr::control || a == token_attr::user_defined || a == token_attr::unknown) && !t.text[i].empty())
            t.specials_by_first_byte[static_cast<uint8_t>(t.text[i][0])].push_back(i);
    }
    for (auto& v : t.specials_by_first_byte)
        std::stable_sort(v.begin(), v.end(), [&](int32_t x, int32_t y) { return t.text[x].size() > t.text[y].size(); });

    auto valid = [&](int32_t id) { return id >= 0 && id < n ? id : -1; };
    t.bos = valid(t.bos), t.eos = valid(t.eos), t.eot = valid(t.eot), t.pad = valid(t.pad), t.unk = valid(t.unk);
    if (t.eot < 0) {
        for (const char* s : k_eot_texts)
            if (int32_t id = t.find(s); id >= 0) {
                t.eot = id;
                break;
            }
    }
    if (t.eot < 0) t.eot = t.eos;
    for (int32_t id : {t.eos, t.eot})
        if (id >= 0) t.eog.push_back(id);
    for (const char* s : k_eog_texts)
        if (int32_t id = t.find(s); id >= 0 && t.attrs[id] == token_attr::control) t.eog.push_back(id);
    std::sort(t.eog.begin(), t.eog.end());
    t.eog.erase(std::unique(t.eog.begin(), t.eog.end()), t.eog.end());
}

// ---- tokenizer.json ---------------------------------------------------------------------

[[noreturn]] void bad_json(const std::string& name, const std::string& what) {
    throw user_error(fmt::format("{}: {}", name, what),
                     "slmctl reads BPE tokenizer.json files (GPT-2, SmolLM, StarCoder, Llama-3, Qwen2, Llama-2 "
                     "styles); pass the model's GGUF instead, which carries its tokenizer");
}

std::string special_content(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return {};
}

// The pre-tokenizer style of a tokenizer.json "pre_tokenizer" node.
pretok_style style_from_json(const json& pre, const std::string& name, bool& byte_level) {
    byte_level = false;
    std::vector<json> steps;
    if (pre.is_object() && pre.value("type", "") == "Sequence" && pre.contains("pretokenizers"))
        for (const auto& s : pre["pretokenizers"]) steps.push_back(s);
    else if (!pre.is_null())
        steps.push_back(pre);
    bool digits = false, byte_regex = false;
    std::string split_regex;
    for (const auto& s : steps) {
        const std::string type = s.value("type", "");
        if (type == "ByteLevel") {
            byte_level = true;
            byte_regex = s.value("use_regex", true);
            if (s.value("add_prefix_space", false))
                bad_json(name, "ByteLevel pre-tokenizer with add_prefix_space=true is not supported");
        } else if (type == "Digits" && s.value("individual_digits", false)) {
            digits = true;
        } else if (type == "Split" && s.contains("pattern") && s["pattern"].contains("Regex")) {
            split_regex = s["pattern"]["Regex"].get<std::string>();
        } else if (type == "Metaspace") {
            // Llama-2 style handled as SentencePiece by the caller
        } else {
            bad_json(name, fmt::format("pre-tokenizer step '{}' is not supported ({})", type, s.dump().substr(0, 200)));
        }
    }
    if (!split_regex.empty()) {
        if (byte_regex) bad_json(name, "a Split regex followed by ByteLevel(use_regex=true) is not supported");
        if (split_regex.find("\\p{N}{1,3}") != std::string::npos) return pretok_style::llama3;
        if (split_regex.find("|\\p{N}|") != std::string::npos || split_regex.find("|\\p{N}| ?") != std::string::npos)
            return pretok_style::qwen2;
        bad_json(name, fmt::format("pre-tokenizer regex is not one slmctl implements: {}", split_regex.substr(0, 200)));
    }
    return digits ? pretok_style::starcoder : pretok_style::gpt2;
}

std::shared_ptr<tokenizer_impl> load_hf_json(std::string_view text, std::string_view config_text, const std::string& name) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        bad_json(name, fmt::format("not valid JSON: {}", e.what()));
    }
    json cfg;
    if (!config_text.empty()) {
        try {
            cfg = json::parse(config_text);
        } catch (const json::exception& e) {
            bad_json(name, fmt::format("tokenizer_config.json is not valid JSON: {}", e.what()));
        }
    }
    auto t = std::make_shared<tokenizer_impl>();
    t->name = name;
    try {
        if (!j.contains("model") || !j["model"].is_object()) bad_json(name, "no \"model\" object");
        const json& m = j["model"];
        const std::string type = m.value("type", "BPE");
        if (type != "BPE") bad_json(name, fmt::format("tokenizer model type '{}' is not supported (only BPE)", type));
        if (!m.contains("vocab") || !m["vocab"].is_object()) bad_json(name, "model has no \"vocab\" object");

        // vocab + added tokens decide the size; ids must be dense enough to index
        int64_t max_id = -1;
        for (const auto& [k, v] : m["vocab"].items()) {
            if (!v.is_number_integer() || v.get<int64_t>() < 0) bad_json(name, fmt::format("vocab entry '{}' has a bad id", k));
            max_id = std::max(max_id, v.get<int64_t>());
        }
        const json added = j.value("added_tokens", json::array());
        for (const auto& a : added) max_id = std::max(max_id, a.value("id", int64_t{-1}));
        if (max_id < 0 || max_id > 10'000'000) bad_json(name, fmt::format("vocabulary size {} is out of range", max_id + 1));
        t->text.assign(static_cast<size_t>(max_id + 1), {});
        t->attrs.assign(t->text.size(), token_attr::unused);
        for (const auto& [k, v] : m["vocab"].items()) {
            t->text[v.get<size_t>()] = k;
            t->attrs[v.get<size_t>()] = token_attr::normal;
        }
        t->lstrip.assign(t->text.size(), 0);
        t->rstrip.assign(t->text.size(), 0);
        for (const auto& a : added) {
            const int64_t id = a.value("id", int64_t{-1});
            if (id < 0) bad_json(name, "added token without an id");
            t->text[id] = a.value("content", "");
            t->attrs[id] = a.value("special", false) ? token_attr::control : token_attr::user_defined;
            t->lstrip[id] = a.value("lstrip", false);
            t->rstrip[id] = a.value("rstrip", false);
        }

        std::vector<std::pair<std::string, std::string>> pairs;
        if (m.contains("merges")) {
            pairs.reserve(m["merges"].size());
            for (const auto& mv : m["merges"]) {
                if (mv.is_string()) {
                    const std::string s = mv.get<std::string>();
                    const size_t sp = s.find(' ', 1);
                    if (sp == std::string::npos) bad_json(name, fmt::format("merge '{}' has no space", s));
                    pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
                } else if (mv.is_array() && mv.size() == 2) {
                    pairs.emplace_back(mv[0].get<std::string>(), mv[1].get<std::string>());
                } else {
                    bad_json(name, "a merge is neither \"a b\" nor [a, b]");
                }
            }
        }
        t->ignore_merges = m.value("ignore_merges", false);

        bool byte_level = false;
        const json pre = j.value("pre_tokenizer", json());
        t->style = style_from_json(pre, name, byte_level);
        const bool byte_fallback = m.value("byte_fallback", false);
        if (!byte_level) {
            // Llama-2 style: normalizer Prepend("▁") + Replace(" ", "▁"), BPE with byte fallback.
            // SentencePiece merges by score; a merge's rank orders it the same way.
            const std::string norm = j.value("normalizer", json()).dump();
            if (!byte_fallback || (norm.find("\\u2581") == std::string::npos && norm.find("\xE2\x96\x81") == std::string::npos))
                bad_json(name, "neither a byte-level BPE nor a SentencePiece-style BPE (no ByteLevel pre-tokenizer, "
                               "no byte_fallback with a \"▁\" normalizer)");
            t->kind = tokenizer_kind::spm;
            t->add_space_prefix = norm.find("Prepend") != std::string::npos;
            t->scores.assign(t->text.size(), -std::numeric_limits<float>::infinity());
            for (size_t r = 0; r < pairs.size(); ++r) {
                auto it = m["vocab"].find(pairs[r].first + pairs[r].second);
                if (it == m["vocab"].end()) continue;
                float& s = t->scores[it->get<size_t>()];
                s = std::max(s, -static_cast<float>(r));
            }
            for (size_t i = 0; i < t->text.size(); ++i) {
                const std::string& s = t->text[i];
                if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>' && t->attrs[i] == token_attr::normal)
                    t->attrs[i] = token_attr::byte;
            }
        } else {
            const std::string norm_type = j.value("normalizer", json()).is_object() ? j["normalizer"].value("type", "") : "";
            if (!norm_type.empty())
                log_verbose("{}: normalizer '{}' is not applied (inputs are assumed already normalized)", name, norm_type);
        }

        // special ids: tokenizer_config.json first, then the usual names
        auto id_of = [&](const std::string& s) -> int32_t {
            if (s.empty()) return -1;
            for (size_t i = 0; i < t->text.size(); ++i)
                if (t->text[i] == s) return static_cast<int32_t>(i);
            return -1;
        };
        auto first_of = [&](std::initializer_list<const char*> names) {
            for (const char* s : names)
                if (int32_t id = id_of(s); id >= 0) return id;
            return -1;
        };
        if (cfg.is_object()) {
            t->bos = id_of(special_content(cfg.value("bos_token", json())));
            t->eos = id_of(special_content(cfg.value("eos_token", json())));
            t->pad = id_of(special_content(cfg.value("pad_token", json())));
            t->unk = id_of(special_content(cfg.value("unk_token", json())));
            t->add_bos = cfg.value("add_bos_token", false);
            t->add_eos = cfg.value("add_eos_token", false);
            const json ct = cfg.value("chat_template", json());
            if (ct.is_string()) {
                t->chat_template = ct.get<std::string>();
            } else if (ct.is_array()) {
                for (const auto& e : ct)
                    if (e.value("name", "") == "default") t->chat_template = e.value("template", "");
            }
        } else {
            t->bos = first_of({"<|begin_of_text|>", "<s>", "<|endoftext|>"});
            t->eos = first_of({"<|end_of_text|>", "</s>", "<|endoftext|>"});
            t->unk = first_of({"<unk>"});
            // a post-processor template that starts with a special token means "add BOS"
            const json post = j.value("post_processor", json());
            if (post.is_object() && post.value("type", "") == "TemplateProcessing" && post.contains("single") &&
                !post["single"].empty() && post["single"][0].contains("SpecialToken")) {
                t->add_bos = true;
                t->bos = id_of(post["single"][0]["SpecialToken"].value("id", ""));
            }
        }
        if (t->kind == tokenizer_kind::spm && t->unk < 0) t->unk = first_of({"<unk>"});
        finalize(*t, t->kind == tokenizer_kind::bpe ? pairs : std::vector<std::pair<std::string, std::string>>{});
    } catch (const json::exception& e) {
        bad_json(name, fmt::format("unexpected structure: {}", e.what()));
    }
    return t;
}

std::string read_text_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot read {}", path), "check the path to the tokenizer files");
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

}  // namespace

// ---- construction ------------------------------------------------------------------------

tokenizer tokenizer::from_hf_json(const std::string& path) {
    const std::string text = read_text_file(path);
    const auto cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
    std::string cfg;
    if (std::filesystem::exists(cfg_path)) cfg = read_text_file(cfg_path.string());
    return tokenizer(load_hf_json(text, cfg, path));
}

tokenizer tokenizer::from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                       const std::string& name) {
    return tokenizer(load_hf_json(tokenizer_json, config_json, name));
}

tokenizer tokenizer::from_gguf(const gguf_reader& g) {
    auto t = std::make_shared<tokenizer_impl>();
    t->name = g.path();
    const std::string model = g.get_string("tokenizer.ggml.model");
    t->text = g.get_array_strings("tokenizer.ggml.tokens");
    const auto n = t->text.size();
    if (n == 0 || n > 10'000'000)
        throw user_error(fmt::format("{}: tokenizer.ggml.tokens has {} entries", g.path(), n),
                         "the GGUF's vocabulary is broken; re-convert the model");
    t->attrs.assign(n, token_attr::normal);
    if (g.has("tokenizer.ggml.token_type")) {
        const auto types = g.get_array_i32("tokenizer.ggml.token_type");
        if (types.size() != n)
            throw user_error(fmt::format("{}: tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens {}",
                                         g.path(), types.size(), n),
                             "the GGUF's vocabulary is broken; re-convert the model");
        for (size_t i = 0; i < n; ++i)
            t->attrs[i] = (types[i] >= 1 && types[i] <= 6) ? static_cast<token_attr>(types[i]) : token_attr::normal;
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    if (model == "gpt2") {
        t->kind = tokenizer_kind::bpe;
        const std::string pre = g.get_string("tokenizer.ggml.pre", "default");
        if (!pre_style_from_name(pre, t->style, t->ignore_merges))
            throw user_error(fmt::format("{}: pre-tokenizer '{}' (tokenizer.ggml.pre) is not supported", g.path(), pre),
                             "supported: gpt-2, starcoder/smollm, llama-bpe (Llama-3), qwen2 and their aliases");
        const auto& merges = g.get_array_strings("tokenizer.ggml.merges");
        pairs.reserve(merges.size());
        for (const auto& s : merges) {
            const size_t sp = s.find(' ', 1);
            if (sp == std::string::npos)
                throw user_error(fmt::format("{}: merge '{}' in tokenizer.ggml.merges has no space", g.path(), s),
                                 "the GGUF's vocabulary is broken; re-convert the model");
            pairs.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        }
        t->add_bos = g.get_bool("tokenizer.ggml.add_bos_token", false);
    } else if (model == "llama") {
        t->kind = tokenizer_kind::spm;
        t->scores = g.get_array_f32("tokenizer.ggml.scores");
        if (t->scores.size() != n)
            throw user_error(fmt::format("{}: tokenizer.ggml.scores has {} entries, tokenizer.ggml.tokens {}", g.path(),
                                         t->scores.size(), n),
                             "the GGUF's vocabulary is broken; re-convert the model");
        t->add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix", true);
        t->add_bos = g.get_bool("tokenizer.ggml.add_bos_token", true);
    } else {
        throw user_error(fmt::format("{}: tokenizer model '{}' (tokenizer.ggml.model) is not supported", g.path(), model),
                         "slmctl supports byte-level BPE ('gpt2') and SentencePiece BPE ('llama') vocabularies");
    }
    t->add_eos = g.get_bool("tokenizer.ggml.add_eos_token", false);
    auto opt_id = [&](const char* key) { return g.has(key) ? static_cast<int32_t>(std::min<uint32_t>(g.get_u32(key), INT32_MAX)) : -1; };
    t->bos = opt_id("tokenizer.ggml.bos_token_id");
    t->eos = opt_id("tokenizer.ggml.eos_token_id");
    t->eot = opt_id("tokenizer.ggml.eot_token_id");
    t->pad = opt_id("tokenizer.ggml.padding_token_id");
    t->unk = opt_id("tokenizer.ggml.unknown_token_id");
    for (int32_t id : {t->bos, t->eos, t->eot, t->pad, t->unk})
        if (id >= static_cast<int32_t>(n))
            throw user_error(fmt::format("{}: special token id {} is outside the vocabulary ({} tokens)", g.path(), id, n),
                             "the GGUF's tokenizer metadata is broken; re-convert the model");
    t->chat_template = g.get_string("tokenizer.chat_template", "");
    finalize(*t, pairs);
    return tokenizer(std::move(t));
}

// ---- encoding ----------------------------------------------------------------------------

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
    const tokenizer_impl& t = *impl_;
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && t.add_bos && t.bos >= 0) out.push_back(t.bos);

    bool prev_special = true;  // SentencePiece puts "▁" at the start and after each special token
    auto encode_text = [&](std::string_view frag) {
        if (frag.empty()) return;
        if (t.kind == tokenizer_kind::bpe) t.encode_bpe(frag, out);
        else t.encode_spm(frag, t.add_space_prefix && prev_special, out);
        prev_special = false;
    };

    // Split on special/added tokens (longest match at the leftmost position), then encode the
    // text between them.
    size_t seg = 0, pos = 0;
    while (pos < text.size()) {
        const auto& cands = t.specials_by_first_byte[static_cast<uint8_t>(text[pos])];
        int32_t hit = -1;
        for (int32_t id : cands) {
            const token_attr a = t.attrs[id];
            if (!parse_special && a != token_attr::user_defined) continue;
            const std::string& s = t.text[id];
            if (text.compare(pos, s.size(), s) == 0) {
                hit = id;
                break;
            }
        }
        if (hit < 0) {
            ++pos;
            continue;
        }
        size_t end_text = pos, next = pos + t.text[hit].size();
        if (t.lstrip[hit])
            while (end_text > seg && (text[end_text - 1] == ' ' || text[end_text - 1] == '\t' || text[end_text - 1] == '\n'))
                --end_text;
        if (t.rstrip[hit])
            while (next < text.size() && (text[next] == ' ' || text[next] == '\t' || text[next] == '\n')) ++next;
        encode_text(text.substr(seg, end_text - seg));
        out.push_back(hit);
        prev_special = true;
        seg = pos = next;
    }
    encode_text(text.substr(seg));

    if (add_special && t.add_eos && t.eos >= 0) out.push_back(t.eos);
    return out;
}

// ---- decoding ----------------------------------------------------------------------------

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
    const tokenizer_impl& t = *impl_;
    if (id < 0 || id >= static_cast<int32_t>(t.text.size())) return {};
    const std::string& s = t.text[id];
    switch (t.attrs[id]) {
        case token_attr::control: return render_special ? s : std::string();
        case token_attr::unused: return {};
        case token_attr::user_defined:
        case token_attr::unknown: return s;
        case token_attr::byte:
            if (t.kind == tokenizer_kind::spm && s.size() == 6)
                return std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
            return s;
        case token_attr::normal: break;
    }
    std::string out;
    if (t.kind == tokenizer_kind::bpe) {
        // byte-level: every character stands for one byte
        out.reserve(s.size());
        for (size_t i = 0; i < s.size();) {
            size_t len;
            const uint32_t cp = unicode::decode_utf8(s, i, len);
            const int b = cp == unicode::invalid_cpt ? -1 : unicode::text_cpt_to_byte(cp);
            if (b >= 0) out += static_cast<char>(b);
            else out.append(s, i, len);
            i += len;
        }
    } else {
        for (size_t i = 0; i < s.size();) {
            if (s.compare(i, k_space_marker.size(), k_space_marker) == 0) {
                out += ' ';
                i += k_space_marker.size();
            } else {
                out += s[i++];
            }
        }
    }
    return out;
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
    const tokenizer_impl& t = *impl_;
    std::string out;
    bool at_start = true;  // before the first piece of text
    for (int32_t id : ids) {
        std::string piece = token_to_piece(id, render_special);
        // undo the "▁" the SentencePiece encoder put in front of the text
        if (at_start && t.kind == tokenizer_kind::spm && t.add_space_prefix && !piece.empty() && piece[0] == ' ' &&
            attr(id) == token_attr::normal)
            piece.erase(0, 1);
        if (at_start && (!piece.empty() || attr(id) == token_attr::normal)) at_start = false;
        out += piece;
    }
    return out;
}

// ---- accessors ---------------------------------------------------------------------------

int32_t tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->text.size()); }

const std::string& tokenizer::token_text(int32_t id) const {
    static const std::string empty;
    return id >= 0 && id < vocab_size() ? impl_->text[id] : empty;
}

int32_t tokenizer::token_id(std::string_view text) const { return impl_->find(text); }

token_attr tokenizer::attr(int32_t id) const {
    return id >= 0 && id < vocab_size() ? impl_->attrs[id] : token_attr::unused;
}

std::vector<int32_t> tokenizer::special_tokens() const {
    std::vector<int32_t> out;
    for (int32_t i = 0; i < vocab_size(); ++i)
        if (impl_->attrs[i] == token_attr::control || impl_->attrs[i] == token_attr::user_defined) out.push_back(i);
    return out;
}

int32_t tokenizer::bos_id() const { return impl_->bos; }
int32_t tokenizer::eos_id() const { return impl_->eos; }
int32_t tokenizer::eot_id() const { return impl_->eot; }
int32_t tokenizer::pad_id() const { return impl_->pad; }
int32_t tokenizer::unk_id() const { return impl_->unk; }
bool tokenizer::add_bos() const { return impl_->add_bos; }
bool tokenizer::add_eos() const { return impl_->add_eos; }
std::vector<int32_t> tokenizer::eog_ids() const { return impl_->eog; }
const char* tokenizer::kind() const { return impl_->kind == tokenizer_kind::bpe ? "bpe" : "spm"; }
const char* tokenizer::pre_style() const { return impl_->kind == tokenizer_kind::spm ? "spm" : style_name(impl_->style); }
const std::string& tokenizer::chat_template() const { return impl_->chat_template; }

}  // namespace slm::model
