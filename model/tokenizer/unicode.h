// UTF-8 decoding/encoding and Unicode codepoint classes (letter, number, whitespace, ...) for
// the tokenizers' pre-tokenizer splitting, plus GPT-2's byte <-> printable-codepoint map.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "common/text.h"  // append_utf8, valid_utf8

namespace slm::model::unicode {

/// Codepoint class bits: general category major class, plus the White_Space property.
enum : uint8_t {
    cpt_letter = 1,       ///< \p{L}
    cpt_number = 2,       ///< \p{N}
    cpt_mark = 4,         ///< \p{M}
    cpt_punct = 8,        ///< \p{P}
    cpt_symbol = 16,      ///< \p{S}
    cpt_whitespace = 32,  ///< \s (White_Space property)
};

/// Class bits of a codepoint (0 for controls, separators other than whitespace, unassigned).
uint8_t cpt_flags(uint32_t cp);
inline bool is_letter(uint32_t cp) { return cpt_flags(cp) & cpt_letter; }
inline bool is_number(uint32_t cp) { return cpt_flags(cp) & cpt_number; }
inline bool is_whitespace(uint32_t cp) { return cpt_flags(cp) & cpt_whitespace; }

/// Marks a byte that is not valid UTF-8; decode_utf8 returns it with length 1 so that
/// splitting stays lossless on arbitrary bytes.
constexpr uint32_t invalid_cpt = 0xFFFFFFFFu;

/// Decodes the codepoint starting at s[pos]; sets `len` to its byte length (1 for an invalid
/// byte, which yields invalid_cpt). Rejects overlong forms, surrogates and values > 0x10FFFF.
uint32_t decode_utf8(std::string_view s, size_t pos, size_t& len);

/// GPT-2 byte-level map: each byte 0..255 -> a printable codepoint (its UTF-8 text), and back.
const std::string& byte_to_text(uint8_t b);
/// The byte for a byte-level codepoint, or -1 if `cp` is not one of the 256.
int text_cpt_to_byte(uint32_t cp);

}  // namespace slm::model::unicode
