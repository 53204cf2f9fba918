// Internal to slm_collector's scrubber: character classes, the scan view and match type that
// scrub.cpp's detectors and scrub-vendors.cpp's rule table share. Other modules see collector.h.
#pragma once
#include <cstddef>
#include <cstring>
#include <string_view>

#include "collector/collector.h"

namespace slm::collector::scrub_detail {

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
inline bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
inline bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
inline bool is_alpha(char c) { return is_upper(c) || is_lower(c); }
inline bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }
inline bool is_word(char c) { return is_alnum(c) || c == '_'; }
inline bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
inline bool is_b64url(char c) { return is_alnum(c) || c == '_' || c == '-'; }
inline char lower(char c) { return is_upper(c) ? static_cast<char>(c + 32) : c; }

struct match {
    size_t start = 0, end = 0;
    pii kind = pii::email;
    // identity of the value for placeholder consistency: the text, lowercased, or its digits
    bool lower_norm = false;
    bool digits_norm = false;
};

// A view over one string being scanned; `floor` is the end of the last replacement.
struct scan {
    const char* s;
    size_t n;
    size_t floor;
    char at(size_t i) const { return i < n ? s[i] : '\0'; }
    char before(size_t i) const { return i > 0 ? s[i - 1] : '\0'; }
    template <size_t N> bool starts(size_t i, const char (&lit)[N]) const {
        return i + N - 1 <= n && std::memcmp(s + i, lit, N - 1) == 0;
    }
    // s[i-1] ends a backslash escape (\n, \", \u00e9...): in raw JSON text (quarantined lines) that
    // is a boundary, not part of the word that follows
    bool escape_before(size_t i) const {
        if (i >= 2 && s[i - 2] == '\\' && s[i - 1] && std::strchr("nrtbf\"/", s[i - 1])) return true;
        return i >= 6 && s[i - 6] == '\\' && s[i - 5] == 'u' && is_hex(s[i - 4]) && is_hex(s[i - 3]) &&
               is_hex(s[i - 2]) && is_hex(s[i - 1]);
    }
    // i begins a token: no letter, digit, '_' or '-' just before it
    bool token_start(size_t i) const {
        if (i < floor) return false;
        char p = before(i);
        return !(is_word(p) || p == '-') || escape_before(i);
    }
    size_t run(size_t i, bool (*pred)(char)) const {
        while (i < n && pred(s[i])) ++i;
        return i;
    }
};

/// The body alphabet of a vendor token.
enum class charset : unsigned char {
    alnum,       ///< [A-Za-z0-9]
    b64url,      ///< [A-Za-z0-9_-]
    b64,         ///< [A-Za-z0-9+/=]
    hex_lower,   ///< [0-9a-f]
    hex,         ///< [0-9A-Fa-f]
    upper_digit, ///< [A-Z0-9]
    alpha,       ///< [A-Za-z]
    word,        ///< [A-Za-z0-9_]
    token,       ///< [A-Za-z0-9_.-]
};

/// One vendor token format: a literal prefix, then a body of `min`..`max` characters of `body`.
/// `shape` names a structural check beyond prefix + body (dotted parts, a digit id before ':').
struct vendor_rule {
    const char* name;    ///< rule id, for tests and docs: "stripe-secret-key"
    const char* prefix;  ///< literal, case-sensitive; "" for shape-only rules
    charset body;
    unsigned short min, max;
    pii kind;
    unsigned char flags;  ///< vendor_flag bits
};
enum vendor_flag : unsigned char {
    vf_digit = 1,       ///< the body holds at least one digit (keeps words like "sk-learn-pipeline" out)
    vf_exact = 2,       ///< the body run must not be longer than `max`
    vf_sendgrid = 4,    ///< SG.<22>.<43>: two dot-separated parts
    vf_telegram = 8,    ///< <8-10 digits>:<35 b64url> (prefix "")
    vf_discord = 16,    ///< <24-28 b64 id>.<6>.<27+> with the id starting M, N or O (prefix "")
    vf_mailchimp = 32,  ///< <32 hex>-us<1-2 digits> (prefix "")
    vf_url = 64,        ///< matched just after "scheme://"; the host and path prefix stay, the rest goes
    vf_keep_prefix = 128,  ///< the prefix is a key name (AccountKey=): it stays, the value goes
};

/// The table (scrub-vendors.cpp), terminated by a rule with a null name.
const vendor_rule* vendor_rules();
/// A vendor token starting at `ts` (a token start): its rule, or null; `m` gets its span.
const vendor_rule* vendor_at(const scan& t, size_t ts, match& m);

}  // namespace slm::collector::scrub_detail
