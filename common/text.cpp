// JSON string escaping (32 bytes at a time with AVX2), UTF-8 validation, encoding and safe cutting,
// trimming: the one copy the collector, the tokenizers, the chat templates and clustering share.
#include "common/text.h"

#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace slm {

namespace {

// First byte that is '"', '\\' or a control character, or (NonAscii) any byte >= 0x80; end if none.
template <bool NonAscii>
const char* find_special(const char* p, const char* end) {
#if defined(__AVX2__)
    const __m256i quote = _mm256_set1_epi8('"'), bslash = _mm256_set1_epi8('\\');
    const __m256i space = _mm256_set1_epi8(0x20), lim = _mm256_set1_epi8(0x1f);
    while (end - p >= 32) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        // NonAscii: signed v < 0x20 holds for controls and for bytes >= 0x80 (negative);
        // else unsigned v <= 0x1f, i.e. min(v, 0x1f) == v
        const __m256i ctl = NonAscii ? _mm256_cmpgt_epi8(space, v) : _mm256_cmpeq_epi8(_mm256_min_epu8(v, lim), v);
        const __m256i m = _mm256_or_si256(_mm256_or_si256(_mm256_cmpeq_epi8(v, quote), _mm256_cmpeq_epi8(v, bslash)), ctl);
        const uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(m));
        if (mask) return p + __builtin_ctz(mask);
        p += 32;
    }
#endif
    while (p < end) {
        const unsigned char c = static_cast<unsigned char>(*p);
        if (c == '"' || c == '\\' || c < 0x20 || (NonAscii && c >= 0x80)) return p;
        ++p;
    }
    return end;
}

inline const char* find_escapable(const char* p, const char* end) { return find_special<false>(p, end); }

inline bool is_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

}  // namespace

const char* find_json_special(const char* p, const char* end, bool non_ascii) {
    return non_ascii ? find_special<true>(p, end) : find_special<false>(p, end);
}

bool json_needs_no_escape(std::string_view s) {
    return find_escapable(s.data(), s.data() + s.size()) == s.data() + s.size();
}

void json_escape_into(std::string& out, std::string_view s) {
    const char* p = s.data();
    const char* end = p + s.size();
    while (p < end) {
        const char* q = find_escapable(p, end);
        out.append(p, q);
        if (q >= end) break;
        unsigned char c = static_cast<unsigned char>(*q);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default: {
            static const char hex[] = "0123456789abcdef";
            char buf[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            out.append(buf, 6);
        }
        }
        p = q + 1;
    }
}

std::string json_quoted(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.push_back('"');
    json_escape_into(out, s);
    out.push_back('"');
    return out;
}

bool valid_utf8(std::string_view s) {
    auto p = reinterpret_cast<const unsigned char*>(s.data());
    const auto end = p + s.size();
    while (p < end) {
        if (*p < 0x80) {
            ++p;
            continue;
        }
        const int l = utf8_seq_len(p, end);
        if (!l) return false;
        p += l;
    }
    return true;
}

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

std::string_view utf8_cut(std::string_view s, size_t max) {
    if (s.size() <= max) return s;
    size_t n = max;  // s[n] is the first byte left out: back off while it continues a sequence
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return s.substr(0, n);
}

std::string_view trim_space(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && is_space(static_cast<unsigned char>(s[e - 1]))) --e;
    return s.substr(b, e - b);
}

}  // namespace slm
