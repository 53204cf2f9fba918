// language_model's text side: tokenizer access, chat rendering, stop strings and decoding around
// the token-level generate(). No torch here (the decoder is only passed along by reference).
#include "model/model.h"

#include <algorithm>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/format/llama2c.h"
#include "model/prefix.h"

namespace slm::model {

nlohmann::json model_info::to_json() const {
    nlohmann::json specials = nlohmann::json::array();
    for (size_t i = 0; i < special_tokens.size(); ++i)
        specials.push_back({{"role", special_tokens[i].first},
                            {"id", special_tokens[i].second},
                            {"text", i < special_texts.size() ? special_texts[i] : ""}});
    return {
        {"path", path},
        {"format", source_format_name(format)},
        {"architecture", architecture},
        {"name", name},
        {"parameters", n_params},
        {"layers", n_layers},
        {"hidden_size", dim},
        {"heads", n_heads},
        {"kv_heads", n_kv_heads},
        {"head_dim", head_dim},
        {"ffn_size", ffn_dim},
        {"vocab_size", vocab_size},
        {"context_length", context_length},
        {"rope_theta", rope_theta},
        {"rms_eps", rms_eps},
        {"tied_embeddings", tied_embeddings},
        {"qkv_bias", qkv_bias},
        {"tensor_types", tensor_types},
        {"dtype", dtype},
        {"dtype_choice", dtype_choice},
        {"int4_decode", int4_decode},
        {"device", device},
        {"tokenizer", tokenizer_kind},
        {"chat_template", chat_format},
        {"special_tokens", specials},
        {"load_seconds", load_s},
    };
}

const tokenizer& language_model::tok() const {
    if (!tokenizer_)
        throw user_error(fmt::format("{} has no tokenizer that slmctl can load", info_.path),
                         info_.format == source_format::llama2c
                             ? "put the llama2.c tokenizer (tok{V}.bin or tokenizer.bin) beside the checkpoint"
                             : "an HF directory needs tokenizer.json; a GGUF file needs tokenizer.ggml.* metadata");
    return *tokenizer_;
}

std::vector<int32_t> language_model::encode(const std::string& text, bool add_special, bool parse_special) const {
    if (!tokenizer_ && llama2c_vocab_) return llama2c_vocab_->encode(text, add_special);
    return tok().encode(text, add_special, parse_special);
}

std::string language_model::decode(const std::vector<int32_t>& ids) const {
    if (!tokenizer_ && llama2c_vocab_) return llama2c_vocab_->decode(ids);
    return tok().decode(ids);
}

std::vector<int32_t> language_model::eos_ids() const {
    if (tokenizer_) return tokenizer_->eog_ids();
    if (llama2c_vocab_ || info_.format == source_format::llama2c) return {1, 2};  // run.c stops at BOS
    return {};
}

const chat_template& language_model::chat() const {
    if (!chat_)
        throw user_error(fmt::format("{} has no chat template", info_.path),
                         "use --prompt instead of --chat, or a model whose metadata carries a chat template");
    return *chat_;
}

std::vector<int32_t> language_model::encode_chat(const std::vector<chat_message>& messages) const {
    const std::string text = chat().render(messages, /*add_generation_prompt=*/true);
    // the rendered text carries its own BOS when the template wants one
    return tok().encode(text, /*add_special=*/false, /*parse_special=*/true);
}

std::vector<completion> language_model::generate_ids(const std::vector<std::vector<int32_t>>& prompts,
                                                     const text_params& p, generate_stats* stats) const {
    sampling_params sp = p.sampling;
    if (sp.eos_ids.empty()) sp.eos_ids = eos_ids();
    std::vector<std::string> cut_text(prompts.size());
    std::vector<char> stopped(prompts.size(), 0);
    stop_callback cb;
    if (!p.stop.empty() || p.on_text) {
        cb = [&](size_t seq, const std::vector<int32_t>& toks) -> int64_t {
            std::string text = decode(toks);
            size_t cut = std::string::npos;
            for (const auto& s : p.stop)
                if (!s.empty()) cut = std::min(cut, text.find(s));
            if (cut == std::string::npos) {
                if (p.on_text) p.on_text(seq, text);
                return -1;
            }
            // keep the tokens that decode entirely before the stop string
            int64_t keep = static_cast<int64_t>(toks.size());
            while (keep > 0 && decode(std::vector<int32_t>(toks.begin(), toks.begin() + keep)).size() > cut) --keep;
            cut_text[seq] = text.substr(0, cut);
            stopped[seq] = 1;
            if (p.on_text) p.on_text(seq, cut_text[seq]);
            return keep;
        };
    }
    auto gens = p.prefixes ? generate_shared(*decoder_, prompts, sp, *p.prefixes, cb, stats)
                           : model::generate(*decoder_, prompts, sp, cb, stats);
    std::vector<completion> out(gens.size());
    for (size_t i = 0; i < gens.size(); ++i) {
        out[i].reason = gens[i].reason;
        out[i].text = stopped[i] ? cut_text[i] : decode(gens[i].tokens);
        out[i].tokens = std::move(gens[i].tokens);
        if (p.on_text && !stopped[i]) p.on_text(i, out[i].text);
    }
    return out;
}

std::vector<completion> language_model::generate(const std::vector<std::string>& prompts, const text_params& p,
                                                 generate_stats* stats) const {
    std::vector<std::vector<int32_t>> ids;
    for (const auto& s : prompts) {
        auto e = encode(s, /*add_special=*/true);
        if (e.empty() && tokenizer_ && tokenizer_->bos_id() >= 0) e.push_back(tokenizer_->bos_id());
        if (e.empty())
            throw user_error("the prompt encodes to no tokens and the model has no BOS token", "give a non-empty prompt");
        ids.push_back(std::move(e));
    }
    return generate_ids(ids, p, stats);
}

std::vector<completion> language_model::chat_generate(const std::vector<std::vector<chat_message>>& chats,
                                                      const text_params& p, generate_stats* stats) const {
    std::vector<std::vector<int32_t>> ids;
    for (const auto& c : chats) ids.push_back(encode_chat(c));
    text_params q = p;
    if (q.sampling.eos_ids.empty()) q.sampling.eos_ids = chat().stop_ids(tok());
    for (const auto& s : chat().stop_strings())
        if (std::find(q.stop.begin(), q.stop.end(), s) == q.stop.end()) q.stop.push_back(s);
    return generate_ids(ids, q, stats);
}

}  // namespace slm::model
