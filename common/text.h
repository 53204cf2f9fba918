// Small text helpers every module needs the same way: JSON string escaping, UTF-8 validation,
// encoding and cutting to a byte budget without splitting a character, trimming ASCII whitespace.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slm {

/// Appends `s` escaped for the inside of a JSON string (no quotes added): '"', '\\' and the
/// control characters below 0x20 (\n, \r, \t, \b, \f by name, the rest as \u00xx); every other
/// byte as it is, so valid UTF-8 stays valid (and unescaped) UTF-8, as Python's
/// json.dumps(ensure_ascii=False) writes it.
void json_escape_into(std::string& out, std::string_view s);
/// `s` JSON-escaped and quoted: "\"a\\nb\"".
std::string json_quoted(std::string_view s);
/// The first byte in [p, end) that a JSON string cannot hold as is ('"', '\\', a control
/// character), or, with `non_ascii`, also any byte >= 0x80 (for a scanner that validates UTF-8
/// there); `end` when there is none. 32 bytes at a time with AVX2.
const char* find_json_special(const char* p, const char* end, bool non_ascii = false);
/// True when no byte of `s` needs escaping inside a JSON string.
bool json_needs_no_escape(std::string_view s);

/// Length of the valid UTF-8 sequence at `p` (1..4), or 0 when it is not one (overlong forms,
/// UTF-16 surrogates, values above U+10FFFF, a sequence cut by `end`). Inline: the JSON scanner's
/// hot path.
inline int utf8_seq_len(const unsigned char* p, const unsigned char* end) {
    const unsigned char c = p[0];
    if (c < 0x80) return 1;
    auto cont = [&](int i) { return p + i < end && (p[i] & 0xC0) == 0x80; };
    if (c < 0xC2) return 0;
    if (c < 0xE0) return cont(1) ? 2 : 0;
    if (c < 0xF0) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0;  // overlong
        if (c == 0xED && p[1] >= 0xA0) return 0;  // UTF-16 surrogate
        return 3;
    }
    if (c < 0xF5) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  // overlong
        if (c == 0xF4 && p[1] >= 0x90) return 0;  // > U+10FFFF
        return 4;
    }
    return 0;
}
/// True when all of `s` is valid UTF-8.
bool valid_utf8(std::string_view s);
/// Appends the UTF-8 encoding of `cp` (at most U+10FFFF).
void append_utf8(std::string& out, uint32_t cp);

/// The longest prefix of `s` of at most `max` bytes that does not end inside a UTF-8 sequence
/// (it backs off over continuation bytes; invalid bytes are cut like any other).
std::string_view utf8_cut(std::string_view s, size_t max);

/// `s` without leading and trailing ASCII whitespace (space, \t, \n, \v, \f, \r).
std::string_view trim_space(std::string_view s);

}  // namespace slm
