// Internal state shared by tokenizer.cpp (loading, special tokens, decoding), bpe-tokenizer.cpp
// (pre-tokenizer splitting and rank merges) and spm-tokenizer.cpp (score merges). Not public.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"

namespace slm::model {

enum class tokenizer_kind { bpe, spm };

/// Pre-tokenizer regex families, each split by hand (see bpe-tokenizer.cpp for the patterns).
enum class pretok_style {
    gpt2,       ///< 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    starcoder,  ///< \p{N} (each digit alone) first, then gpt2 on the rest (StarCoder, SmolLM)
    llama3,     ///< (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    qwen2,      ///< as llama3 with \p{N} one digit at a time
};

struct merge_info {
    int32_t rank;    ///< lower merges first
    int32_t result;  ///< id of the merged token
};

struct tokenizer_impl {
    uint64_t uid = 0;  ///< unique per loaded vocabulary: keys the per-thread word caches
    std::string name;  ///< source file, for messages
    tokenizer_kind kind = tokenizer_kind::bpe;
    pretok_style style = pretok_style::gpt2;

    std::vector<std::string> text;   ///< id -> stored token text
    std::vector<token_attr> attrs;   ///< id -> kind of token
    std::vector<float> scores;       ///< spm: id -> merge score
    std::unordered_map<std::string_view, int32_t> to_id;  ///< views into `text` (never resized after build)

    // bpe
    std::unordered_map<uint64_t, merge_info> merges;  ///< (left << 32 | right) -> merge
    bool ignore_merges = false;                       ///< Llama-3: a pre-token already in the vocab is kept whole
    // bpe: id of each byte's byte-level character; spm: id of <0xNN>; -1 when absent
    std::array<int32_t, 256> byte_ids{};

    // spm
    bool add_space_prefix = true;
    bool spm_word_split = false;  ///< no piece has "▁" after another char: words merge independently

    // special / added tokens matched in raw text before pre-tokenization
    std::array<std::vector<int32_t>, 256> specials_by_first_byte;  ///< longest first
    std::vector<uint8_t> lstrip, rstrip;                           ///< id -> HF added-token flags

    int32_t bos = -1, eos = -1, eot = -1, pad = -1, unk = -1;
    bool add_bos = false, add_eos = false;
    std::vector<int32_t> eog;
    std::string chat_template;

    int32_t find(std::string_view s) const {
        auto it = to_id.find(s);
        return it == to_id.end() ? -1 : it->second;
    }

    // Text fragments without special tokens, appended to `out`.
    void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;        // bpe-tokenizer.cpp
    void encode_spm(std::string_view text, bool prefix_space, std::vector<int32_t>& out) const;  // spm-tokenizer.cpp
};

/// Splits `text` into pre-tokens (byte offsets; pieces cover the text in order) per `style`.
/// Exposed for tests.
void pretokenize(pretok_style style, std::string_view text, std::vector<std::string_view>& pieces);

}  // namespace slm::model
