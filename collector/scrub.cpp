// S2 scrubbing: hand-written scanners for PII and secrets, replaced by typed placeholders that are
// consistent within a call (<EMAIL_1> for every occurrence of one address). No std::regex.
//
// One pass per string: a SIMD skip to the next "trigger" byte (digit, uppercase, @ + ( - = _ :),
// then the detectors that can start (or, for @ : = - _, end) at that byte. Detectors that look
// backwards (email local part, assignment key, sk-/xox-/ghp_ prefixes) never reach before the end
// of the previous replacement.
#include <algorithm>
#include <cstring>

#include "collector/collector.h"
#include "collector/scrub-internal.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace slm::collector {

// ---- kinds ------------------------------------------------------------------------------------

static const pii_kind_info k_kinds[pii_kind_count] = {
    {"email", "EMAIL"},       {"phone", "PHONE"},        {"card", "CARD"},
    {"ssn", "SSN"},           {"ipv4", "IPV4"},          {"ipv6", "IPV6"},
    {"iban", "IBAN"},         {"api_key", "API_KEY"},    {"aws_key", "AWS_KEY"},
    {"github_token", "GITHUB_TOKEN"}, {"slack_token", "SLACK_TOKEN"}, {"jwt", "JWT"},
    {"private_key", "PRIVATE_KEY"},   {"secret", "SECRET"},           {"address", "ADDRESS"},
};

const pii_kind_info& kind_info(pii k) { return k_kinds[static_cast<int>(k)]; }

// ---- character classes and trigger bytes ----------------------------------------------------

using namespace scrub_detail;

namespace {

inline bool is_email_local(char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

// trigger bytes: digits and ':' (0x30..0x3a), '@' and uppercase (0x40..0x5a), + ( - = _
inline bool is_trigger(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    return (u >= 0x30 && u <= 0x3a) || (u >= 0x40 && u <= 0x5a) || u == '+' || u == '(' || u == '-' || u == '=' ||
           u == '_';
}

inline size_t next_trigger(const char* s, size_t i, size_t n) {
#if defined(__AVX2__)
    const __m256i c30 = _mm256_set1_epi8(0x30), c0a = _mm256_set1_epi8(0x0a);
    const __m256i c40 = _mm256_set1_epi8(0x40), c1a = _mm256_set1_epi8(0x1a);
    const __m256i plus = _mm256_set1_epi8('+'), lpar = _mm256_set1_epi8('('), dash = _mm256_set1_epi8('-');
    const __m256i eq = _mm256_set1_epi8('='), under = _mm256_set1_epi8('_');
    while (i + 32 <= n) {
        __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i));
        __m256i a = _mm256_sub_epi8(v, c30);
        __m256i b = _mm256_sub_epi8(v, c40);
        __m256i m = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_min_epu8(a, c0a), a),
                                    _mm256_cmpeq_epi8(_mm256_min_epu8(b, c1a), b));
        m = _mm256_or_si256(m, _mm256_or_si256(_mm256_cmpeq_epi8(v, plus), _mm256_cmpeq_epi8(v, lpar)));
        m = _mm256_or_si256(m, _mm256_or_si256(_mm256_cmpeq_epi8(v, dash), _mm256_cmpeq_epi8(v, eq)));
        m = _mm256_or_si256(m, _mm256_cmpeq_epi8(v, under));
        uint32_t mask = static_cast<uint32_t>(_mm256_movemask_epi8(m));
        if (mask) return i + __builtin_ctz(mask);
        i += 32;
    }
#endif
    while (i < n && !is_trigger(s[i])) ++i;
    return i;
}

pii credential_kind(std::string_view v);

// ---- detectors ------------------------------------------------------------------------------

bool luhn_ok(const char* digits, size_t n) {
    int sum = 0;
    bool dbl = false;
    for (size_t k = n; k-- > 0;) {
        int d = digits[k] - '0';
        if (dbl) {
            d *= 2;
            if (d > 9) d -= 9;
        }
        sum += d;
        dbl = !dbl;
    }
    return sum % 10 == 0;
}

// Issuer prefixes of the major card networks (Visa, Mastercard, Amex, Discover, JCB, Diners,
// UnionPay): with Luhn, keeps order numbers and ids out.
bool card_prefix_ok(const char* d, size_t n) {
    auto pre = [&](int len) {
        int v = 0;
        for (int k = 0; k < len; ++k) v = v * 10 + (d[k] - '0');
        return v;
    };
    if (d[0] == '4') return n == 13 || n == 16 || n == 19;
    int p2 = pre(2), p3 = pre(3), p4 = pre(4);
    if (p2 >= 51 && p2 <= 55) return n == 16;
    if (p4 >= 2221 && p4 <= 2720) return n == 16;
    if (p2 == 34 || p2 == 37) return n == 15;
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) return n >= 16 && n <= 19;
    if (p2 == 35) return n >= 16 && n <= 19;
    if (p2 == 36 || p2 == 38 || (p3 >= 300 && p3 <= 305)) return n >= 14 && n <= 16;
    if (p2 == 62) return n >= 16 && n <= 19;
    return false;
}

// ASCII IBAN lengths per country (ISO 13616 registry).
int iban_length(char a, char b) {
    static const struct {
        char cc[3];
        int len;
    } table[] = {
        {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
        {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28},
        {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23},
        {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
        {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
        {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18},
        {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
        {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
        {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
    };
    for (const auto& e : table)
        if (e.cc[0] == a && e.cc[1] == b) return e.len;
    return 0;
}

bool iban_mod97_ok(const char* c, size_t n) {
    int r = 0;
    auto feed = [&](char ch) {
        if (is_digit(ch))
            r = (r * 10 + (ch - '0')) % 97;
        else
            r = (r * 100 + (ch - 'A' + 10)) % 97;
    };
    for (size_t k = 4; k < n; ++k) feed(c[k]);
    for (size_t k = 0; k < 4; ++k) feed(c[k]);
    return r == 1;
}

// Counts up to `max` digits at i; returns the end.
inline size_t digits_at(const scan& t, size_t i, size_t max = 64) {
    size_t j = i;
    while (j < t.n && j - i < max && is_digit(t.s[j])) ++j;
    return j;
}

// After a number: the next char must not continue it (letter, digit, or ".5" / "-5").
inline bool number_ends(const scan& t, size_t j) {
    char c = t.at(j);
    if (is_alnum(c) || c == '_') return false;
    if ((c == '.' || c == '-') && is_digit(t.at(j + 1))) return false;
    return true;
}

bool ipv4_at(const scan& t, size_t i, match& m) {
    size_t j = i;
    for (int octet = 0; octet < 4; ++octet) {
        size_t e = digits_at(t, j, 4);
        size_t len = e - j;
        if (len == 0 || len > 3) return false;
        int v = 0;
        for (size_t k = j; k < e; ++k) v = v * 10 + (t.s[k] - '0');
        if (v > 255) return false;
        j = e;
        if (octet < 3) {
            if (t.at(j) != '.') return false;
            ++j;
        }
    }
    if (!number_ends(t, j)) return false;
    m = {i, j, pii::ipv4, false, false};
    return true;
}

bool ssn_at(const scan& t, size_t i, match& m) {
    // ddd-dd-dddd, area not 000/666/9xx, group not 00, serial not 0000
    if (i + 11 > t.n) return false;
    const char* s = t.s + i;
    for (int k : {0, 1, 2, 4, 5, 7, 8, 9, 10})
        if (!is_digit(s[k])) return false;
    if (s[3] != '-' || s[6] != '-') return false;
    if (!number_ends(t, i + 11)) return false;
    int area = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    if (area == 0 || area == 666 || area >= 900) return false;
    if (s[4] == '0' && s[5] == '0') return false;
    if (s[7] == '0' && s[8] == '0' && s[9] == '0' && s[10] == '0') return false;
    m = {i, i + 11, pii::ssn, false, false};
    m.digits_norm = true;
    return true;
}

// Digit groups separated by single separators from `seps` (one separator kind per number).
struct groups {
    char digits[24];
    size_t ndigits = 0;
    int ngroups = 0;
    int lens[12] = {};
    size_t end = 0;
    char sep = 0;
};

bool read_groups(const scan& t, size_t i, const char* seps, groups& g, size_t max_digits) {
    size_t j = i;
    for (;;) {
        size_t e = digits_at(t, j, max_digits + 1);
        size_t len = e - j;
        if (len == 0 || g.ndigits + len > max_digits || g.ngroups >= 12) return false;
        std::memcpy(g.digits + g.ndigits, t.s + j, len);
        g.ndigits += len;
        g.lens[g.ngroups++] = static_cast<int>(len);
        j = e;
        char c = t.at(j);
        if (c && std::strchr(seps, c) && is_digit(t.at(j + 1)) && (g.sep == 0 || g.sep == c)) {
            g.sep = c;
            ++j;
            continue;
        }
        break;
    }
    g.end = j;
    return true;
}

bool card_at(const scan& t, size_t i, match& m) {
    groups g;
    if (!read_groups(t, i, " -", g, 19)) return false;
    if (g.ndigits < 13 || g.ndigits > 19) return false;
    if (g.ngroups > 1) {
        for (int k = 0; k < g.ngroups; ++k) {
            bool last = k == g.ngroups - 1;
            if (g.lens[k] > 6 || g.lens[k] < (last ? 3 : 4)) return false;
        }
    }
    if (!number_ends(t, g.end)) return false;
    if (!card_prefix_ok(g.digits, g.ndigits) || !luhn_ok(g.digits, g.ndigits)) return false;
    m = {i, g.end, pii::card, false, false};
    m.digits_norm = true;
    return true;
}

// National formats without a '+': NANP 415-555-2671 / 415.555.2671 / 415 555 2671 (optionally
// 1-415-...), and 3+ groups of 2-4 digits totalling 10-11 (020 7946 0958, 01 23 45 67 89).
bool phone_national_at(const scan& t, size_t i, match& m) {
    groups g;
    if (!read_groups(t, i, " -.", g, 15)) return false;
    if (g.ngroups < 3) return false;
    int first = 0;
    if (g.lens[0] == 1 && g.digits[0] == '1') first = 1;  // NANP trunk prefix
    size_t nd = g.ndigits - static_cast<size_t>(first);
    if (nd < 10 || nd > 11 || g.ngroups - first < 3) return false;
    for (int k = first; k < g.ngroups; ++k)
        if (g.lens[k] < 2 || g.lens[k] > 4) return false;
    if (!number_ends(t, g.end)) return false;
    m = {i, g.end, pii::phone, false, false};
    m.digits_norm = true;
    return true;
}

// +CC ... with 8-15 digits; spaces, dashes, dots and a parenthesised area code allowed.
bool phone_intl_at(const scan& t, size_t i, match& m) {
    if (!is_digit(t.at(i + 1))) return false;
    size_t j = i + 1, nd = 0;
    size_t last_digit_end = j;
    while (j < t.n) {
        char c = t.s[j];
        if (is_digit(c)) {
            ++nd;
            ++j;
            last_digit_end = j;
            continue;
        }
        if ((c == ' ' || c == '-' || c == '.') && (is_digit(t.at(j + 1)) || t.at(j + 1) == '(')) {
            ++j;
            continue;
        }
        if (c == '(' && is_digit(t.at(j + 1))) {
            ++j;
            continue;
        }
        if (c == ')' && is_digit(t.before(j)) && (t.at(j + 1) == ' ' || is_digit(t.at(j + 1)))) {
            ++j;
            continue;
        }
        break;
    }
    if (nd < 8 || nd > 15) return false;
    if (!number_ends(t, last_digit_end)) return false;
    m = {i, last_digit_end, pii::phone, false, false};
    m.digits_norm = true;
    return true;
}

// (415) 555-2671, (415)555-2671, (415) 555 2671
bool phone_paren_at(const scan& t, size_t i, match& m) {
    size_t j = i + 1;
    if (digits_at(t, j, 4) != j + 3 || t.at(j + 3) != ')') return false;
    j += 4;
    if (t.at(j) == ' ') ++j;
    if (digits_at(t, j, 4) != j + 3) return false;
    j += 3;
    if (t.at(j) == '-' || t.at(j) == ' ' || t.at(j) == '.') ++j;
    if (digits_at(t, j, 5) != j + 4) return false;
    j += 4;
    if (!number_ends(t, j)) return false;
    m = {i, j, pii::phone, false, false};
    m.digits_norm = true;
    return true;
}

bool word_is(const scan& t, size_t s, size_t e, const char* const* list) {
    for (const char* const* w = list; *w; ++w) {
        size_t l = std::strlen(*w);
        if (e - s == l && std::memcmp(t.s + s, *w, l) == 0) return true;
    }
    return false;
}

const char* const k_street_suffixes[] = {
    "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln", "Drive", "Dr", "Court", "Ct",
    "Way", "Place", "Pl", "Square", "Sq", "Terrace", "Ter", "Parkway", "Pkwy", "Circle", "Cir", "Highway", "Hwy",
    "Trail", "Plaza", "Alley", "Crescent", "Close", "Row", "Expressway", "Freeway", nullptr};
const char* const k_street_abbrevs[] = {"St", "Ave", "Rd", "Blvd", "Ln", "Dr", "Ct", "Pl", "Sq", "Ter", "Pkwy",
                                        "Cir", "Hwy", nullptr};
const char* const k_directions[] = {"N", "S", "E", "W", "NE", "NW", "SE", "SW", nullptr};
const char* const k_units[] = {"Apt", "Apartment", "Suite", "Ste", "Unit", "Floor", "Fl", "Room", "Rm", "#", nullptr};

const char* const k_street_prefixes[] = {"Rue", "Via", "Calle", "Avenida", "Rua", "Chemin", "Viale", "Corso", nullptr};
const char* const k_particles[] = {"de", "du", "des", "la", "le", "del", "di", "da", "do", "dos", "las", "los", nullptr};

// The word [s, e) ends like a German or Dutch street name (Hauptstraße, Lindenweg, Marktplatz).
bool ends_with_street(const scan& t, size_t s, size_t e) {
    static const char* const ends[] = {"straße", "strasse", "str.", "gasse", "weg", "platz", "allee", "straat",
                                       "laan", "gracht", nullptr};
    for (const char* const* x = ends; *x; ++x) {
        size_t l = std::strlen(*x);
        if (e - s > l + 2 && std::memcmp(t.s + e - l, *x, l) == 0) return true;
    }
    return false;
}

// A capitalised word ([A-Z][a-z]+), an initial ("N."), or an ordinal ("5th"); returns its end or s.
size_t street_word(const scan& t, size_t s) {
    size_t j = s;
    if (is_upper(t.at(j))) {
        ++j;
        // letters, UTF-8 ones included (Hauptstraße, Chloé)
        while (j < t.n && (is_alpha(t.s[j]) || static_cast<unsigned char>(t.s[j]) >= 0x80)) ++j;
        return j;
    }
    if (is_digit(t.at(j))) {
        j = digits_at(t, j, 3);
        if (j + 2 <= t.n && is_lower(t.s[j]) && is_lower(t.s[j + 1])) {
            char a = t.s[j], b = t.s[j + 1];
            if ((a == 's' && b == 't') || (a == 'n' && b == 'd') || (a == 'r' && b == 'd') || (a == 't' && b == 'h'))
                return j + 2;
        }
    }
    return s;
}

// 221B Baker Street; 1600 Pennsylvania Avenue NW, Washington, DC 20500; 42 Main St., Apt 4B
bool address_at(const scan& t, size_t i, match& m) {
    size_t j = digits_at(t, i, 7);
    if (j - i > 6) return false;
    if (is_upper(t.at(j)) && t.at(j + 1) == ' ') ++j;  // 221B
    if (t.at(j) != ' ') return false;
    ++j;
    size_t end = 0;
    for (int w = 0; w < 6; ++w) {
        size_t we = street_word(t, j);
        if (we == j) {
            // "Rue de Rivoli", "Via del Corso": lowercase particles between capitalised words
            if (w > 0 && word_is(t, j, j + 2, k_particles) && t.at(j + 2) == ' ') {
                j += 3;
                continue;
            }
            if (w > 0 && word_is(t, j, j + 3, k_particles) && t.at(j + 3) == ' ') {
                j += 4;
                continue;
            }
            return false;
        }
        if (w == 0 && ends_with_street(t, j, we)) {  // German compounds: Hauptstraße, Lindenweg
            end = we;
            break;
        }
        if (w == 0 && word_is(t, j, we, k_street_prefixes)) {  // Rue de Rivoli: prefix, then names
            size_t p = we, last = 0;
            for (int k = 0; k < 4 && t.at(p) == ' '; ++k) {
                size_t q = p + 1, qe = street_word(t, q);
                if (qe > q) {
                    last = p = qe;
                    continue;
                }
                size_t pe = q;
                while (pe < t.n && is_lower(t.s[pe]) && pe - q < 4) ++pe;
                if (!word_is(t, q, pe, k_particles)) break;
                p = pe;
            }
            if (last) end = last;
            if (end) break;
            return false;
        }
        if (w > 0 && word_is(t, j, we, k_street_suffixes)) {
            end = we;
            if (t.at(end) == '.' && word_is(t, j, we, k_street_abbrevs)) ++end;
            break;
        }
        j = we;
        if (t.at(j) != ' ') return false;
        ++j;
    }
    if (!end) return false;
    if (is_alnum(t.at(end))) return false;
    // optional direction, unit, and "City, ST 12345"
    if (t.at(end) == ' ') {
        size_t we = end + 1;
        while (we < t.n && is_upper(t.s[we])) ++we;
        if (word_is(t, end + 1, we, k_directions) && !is_alnum(t.at(we))) end = we;
    }
    auto try_unit = [&](size_t p) -> size_t {  // ", Apt 4B" / " #12"
        if (t.at(p) == ',') ++p;
        if (t.at(p) != ' ') return 0;
        ++p;
        size_t ue = p;
        if (t.at(ue) == '#') {
            ++ue;
        } else {
            while (ue < t.n && is_alpha(t.s[ue])) ++ue;
            if (!word_is(t, p, ue, k_units)) return 0;
            if (t.at(ue) == '.') ++ue;
            if (t.at(ue) != ' ') return 0;
            ++ue;
        }
        size_t ve = ue;
        while (ve < t.n && is_alnum(t.s[ve]) && ve - ue < 6) ++ve;
        if (ve == ue || is_alnum(t.at(ve))) return 0;
        return ve;
    };
    if (size_t u = try_unit(end)) end = u;
    if (t.at(end) == ',' && t.at(end + 1) == ' ') {  // ", City Name, ST 12345(-6789)"
        size_t p = end + 2;
        int words = 0;
        while (words < 4) {
            size_t we = street_word(t, p);
            if (we == p || is_digit(t.s[p])) break;
            ++words;
            p = we;
            if (t.at(p) == ' ' && is_upper(t.at(p + 1)) && !(t.at(p + 2) == ' ')) {
                ++p;
                continue;
            }
            break;
        }
        if (words > 0 && t.at(p) == ',' && t.at(p + 1) == ' ' && is_upper(t.at(p + 2)) && is_upper(t.at(p + 3)) &&
            t.at(p + 4) == ' ') {
            size_t z = p + 5;
            size_t ze = digits_at(t, z, 6);
            if (ze - z == 5) {
                if (t.at(ze) == '-' && digits_at(t, ze + 1, 5) == ze + 5) ze += 5;
                if (!is_alnum(t.at(ze))) end = ze;
            }
        }
    }
    m = {i, end, pii::address, false, false};
    return true;
}

bool email_at(const scan& t, size_t a, match& m) {
    size_t ls = a;
    while (ls > t.floor && is_email_local(t.s[ls - 1]) && !t.escape_before(ls)) --ls;
    while (ls < a && (t.s[ls] == '.' || t.s[ls] == '-' || t.s[ls] == '+')) ++ls;
    if (ls == a || t.s[a - 1] == '.') return false;
    // domain: labels of [A-Za-z0-9-] joined by '.', TLD alphabetic and >= 2
    size_t j = a + 1, labels = 0, last_start = j;
    for (;;) {
        size_t e = j;
        while (e < t.n && (is_alnum(t.s[e]) || t.s[e] == '-')) ++e;
        if (e == j) break;
        ++labels;
        last_start = j;
        j = e;
        if (t.at(j) == '.' && is_alnum(t.at(j + 1))) {
            ++j;
            continue;
        }
        break;
    }
    if (labels < 2) return false;
    for (size_t k = last_start; k < j; ++k)
        if (!is_alpha(t.s[k])) return false;
    if (j - last_start < 2) return false;
    // scheme://user:PASSWORD@host: the password is a secret, the host stays
    if (ls > 0 && t.s[ls - 1] == ':') {
        size_t u = ls - 1;
        while (u > t.floor && is_email_local(t.s[u - 1])) --u;
        if (u >= 3 && u - 3 >= t.floor && std::memcmp(t.s + u - 3, "://", 3) == 0) {
            m = {ls, a, pii::secret, false, false};
            return true;
        }
    }
    // <local@host> after a Message-ID key is a message identifier, not a person's address
    if (ls > 0 && t.s[ls - 1] == '<') {
        size_t from = ls > t.floor + 16 ? ls - 16 : t.floor;
        std::string_view head(t.s + from, ls - from);
        for (const char* k : {"message_id", "Message-ID", "Message-Id", "messageId"})
            if (head.find(k) != std::string_view::npos) return false;
    }
    m = {ls, j, pii::email, false, false};
    m.lower_norm = true;
    return true;
}

bool ipv6_at(const scan& t, size_t c, match& m) {
    // start: the hex run just before this ':' (or the ':' itself for "::1"-style)
    size_t b = c;
    while (b > t.floor && is_hex(t.s[b - 1]) && c - b < 5) --b;
    if (b > t.floor && is_hex(t.s[b - 1])) return false;
    if (b == c && t.at(c + 1) != ':') return false;
    if (b < t.floor) return false;
    char prev = t.before(b);
    if (is_word(prev) || prev == '.' || prev == '-') return false;
    size_t j = b;
    int groups = 0;
    bool dbl = false, digit = false;
    if (t.at(j) == ':' && t.at(j + 1) == ':') {
        dbl = true;
        j += 2;
    }
    for (;;) {
        size_t e = j;
        while (e < t.n && is_hex(t.s[e]) && e - j < 5) ++e;
        size_t h = e - j;
        if (h == 0) break;
        if (t.at(e) == '.' && groups <= 6) {  // embedded IPv4 tail (::ffff:192.0.2.1)
            match v4;
            if (ipv4_at(t, j, v4)) {
                groups += 2;
                j = v4.end;
                digit = true;
                break;
            }
        }
        if (h > 4) return false;
        for (size_t k = j; k < e; ++k) digit |= is_digit(t.s[k]);
        ++groups;
        j = e;
        if (t.at(j) == ':' && t.at(j + 1) == ':') {
            if (dbl) return false;
            dbl = true;
            j += 2;
            continue;
        }
        if (t.at(j) == ':' && is_hex(t.at(j + 1))) {
            ++j;
            continue;
        }
        break;
    }
    bool ok = dbl ? (groups >= 2 && groups <= 7 && digit) : groups == 8;
    if (!ok || groups > 8) return false;
    if (is_alnum(t.at(j)) || t.at(j) == '_' || (t.at(j) == '.' && is_alnum(t.at(j + 1)))) return false;
    m = {b, j, pii::ipv6, false, false};
    m.lower_norm = true;
    return true;
}

// PEM private key blocks (RSA, EC, OPENSSH, PKCS#8, PGP): the whole block, header to footer.
bool pem_at(const scan& t, size_t i, match& m) {
    if (!t.starts(i, "-----BEGIN ")) return false;
    size_t h = i + 11, he = h;
    while (he < t.n && he - h < 64 && t.s[he] != '-' && t.s[he] != '\n') ++he;
    std::string_view header(t.s + h, he - h);
    if (header.find("PRIVATE KEY") == std::string_view::npos) return false;
    std::string_view rest(t.s + he, t.n - he);
    size_t endpos = rest.find("-----END ");
    size_t e;
    if (endpos == std::string_view::npos) {
        e = t.n;  // truncated block: everything after the header goes
    } else {
        e = he + endpos + 9;
        size_t close = std::string_view(t.s + e, t.n - e).find("-----");
        e = close == std::string_view::npos ? t.n : e + close + 5;
    }
    m = {i, e, pii::private_key, false, false};
    return true;
}

inline bool b64url_pred(char c) { return is_b64url(c); }
inline bool bearer_pred(char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=' || c == '-';
}
inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool has_digit_sv(std::string_view w) {
    for (char c : w)
        if (is_digit(c)) return true;
    return false;
}

// Uppercase at a token start: IBANs and "Bearer <token>" (vendor formats are in the rule table).
bool upper_at(const scan& t, size_t i, match& m) {
    const char* s = t.s + i;
    size_t left = t.n - i;
    if (s[0] == 'B' && t.starts(i, "Bearer ")) {
        size_t v = i + 7;
        while (t.at(v) == ' ') ++v;
        size_t e = t.run(v, bearer_pred);
        if (e - v >= 16 && t.at(v) != '<') {
            m = {v, e, credential_kind({t.s + v, e - v}), false, false};
            return true;
        }
    }
    if (left >= 15 && is_upper(s[1]) && is_digit(s[2]) && is_digit(s[3])) {
        int len = iban_length(s[0], s[1]);
        if (len) {
            char c[34];
            int k = 0;
            size_t j = i;
            while (k < len && j < t.n) {
                char ch = t.s[j];
                if (is_upper(ch) || is_digit(ch)) {
                    c[k++] = ch;
                    ++j;
                } else if (ch == ' ' && k % 4 == 0 && k > 0 && (is_upper(t.at(j + 1)) || is_digit(t.at(j + 1)))) {
                    ++j;
                } else {
                    break;
                }
            }
            if (k == len && !is_alnum(t.at(j)) && iban_mod97_ok(c, static_cast<size_t>(len))) {
                m = {i, j, pii::iban, false, false};
                return true;
            }
        }
    }
    return false;
}

// 'J' of "eyJ": a JWT header.payload.signature in base64url.
bool jwt_at(const scan& t, size_t i, match& m) {
    if (i < 2 || t.s[i - 2] != 'e' || t.s[i - 1] != 'y' || !t.token_start(i - 2)) return false;
    size_t a = i - 2;
    size_t e1 = t.run(a, b64url_pred);
    if (e1 - a < 10 || t.at(e1) != '.') return false;
    size_t e2 = t.run(e1 + 1, b64url_pred);
    if (e2 - (e1 + 1) < 10 || t.at(e2) != '.') return false;
    size_t e3 = t.run(e2 + 1, b64url_pred);
    m = {a, e3, pii::jwt, false, false};
    return true;
}

// The kind of a credential found after a key or "Bearer": its own shape when it has one.
pii credential_kind(std::string_view v) {
    scan t{v.data(), v.size(), 0};
    match vm;
    if (vendor_at(t, 0, vm) && vm.start == 0 && vm.end == v.size()) return vm.kind;
    if (v.substr(0, 3) == "eyJ" && std::count(v.begin(), v.end(), '.') == 2) return pii::jwt;
    return pii::secret;
}

const char* const k_value_stoplist[] = {"null", "none", "None", "NULL", "true", "false", "True", "False",
                                        "undefined", "nil", "required", "optional", "string", nullptr};

bool value_is_trivial(std::string_view v) {
    if (v.empty()) return true;
    if (v[0] == '<' || v[0] == '$' || v[0] == '{') return true;  // placeholder, ${VAR}, {{template}}
    bool stars = true;
    for (char c : v) stars &= (c == '*' || c == 'x' || c == 'X' || c == '.');
    if (stars) return true;
    for (const char* const* w = k_value_stoplist; *w; ++w)
        if (v == *w) return true;
    // a reference, not a value: AWS_SECRET_ACCESS_KEY (a constant), settings.api_key, os.environ[...]
    bool screaming = is_upper(v[0]), dotted = is_lower(v[0]) || v[0] == '_';
    size_t underscores = 0, dots = 0;
    for (char c : v) {
        underscores += c == '_';
        dots += c == '.';
        screaming &= is_upper(c) || is_digit(c) || c == '_';
        dotted &= is_alnum(c) || c == '_' || c == '.';
    }
    if (screaming && underscores > 0) return true;
    if (dotted && dots > 0 && v.back() != '.' && !has_digit_sv(v)) return true;
    return v.substr(0, 11) == "os.environ[" || v.substr(0, 7) == "getenv(";
}

inline bool key_char(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; }

// s[i] is a raw-JSON escape that ends a line or a string (\n, \r, \t, \"): a value boundary
inline bool escape_stop(const scan& t, size_t i) {
    if (t.s[i] != '\\') return false;
    char e = t.at(i + 1);
    return e == 'n' || e == 'r' || e == 't' || e == '"';
}

// At i (a ',' ';' or '&'): the next key=value pair of a list starts after it ("a=1;Password=x;b=2")
bool next_pair_at(const scan& t, size_t i) {
    size_t j = i + 1;
    if (!is_alpha(t.at(j)) && t.at(j) != '_') return false;
    while (j < t.n && j - i <= 40 && (key_char(t.s[j]) || t.s[j] == ' ')) ++j;
    return t.at(j) == '=';
}

// Where an unquoted value that starts at v ends. `to_eol`: a KEY=value line (env file, shell
// export, diff line): everything up to the end of the line or a blank, whatever characters it holds.
// `query`: a URL query parameter, which '&' and '#' end. Otherwise the value ends at whitespace
// or at a separator that starts the next key=value pair, less trailing punctuation.
size_t value_end(const scan& t, size_t v, bool to_eol, bool query) {
    size_t e = v;
    if (to_eol) {  // unquoted values in env files hold no spaces: "KEY=value # comment" ends at one
        while (e < t.n && !is_space(t.s[e]) && !escape_stop(t, e)) ++e;
        if (e > v && t.s[e - 1] == ')' && !std::memchr(t.s + v, '(', e - v)) --e;  // f(key=VALUE)
        return e;
    }
    while (e < t.n) {
        char c = t.s[e];
        if (is_space(c) || c == '"' || c == '\'' || c == '<' || c == '>' || c == '`' || escape_stop(t, e)) break;
        if (query && (c == '&' || c == '#')) break;
        if ((c == '&' || c == ';' || c == ',') && next_pair_at(t, e)) break;
        ++e;
    }
    if (!query)
        while (e > v && std::strchr(".,;:)]}", t.s[e - 1])) --e;
    return e;
}

// Keys that name a credential only as a URL query parameter (?key=..., &sig=...).
bool is_query_secret_key(std::string_view k) {
    static const char* const names[] = {"key", "sig", "signature", "X-Amz-Signature", "X-Goog-Signature",
                                        "X-Amz-Security-Token", nullptr};
    for (const char* const* n = names; *n; ++n)
        if (k == *n) return true;
    return false;
}

// The key [ks, ke) begins a KEY=value line: start of text or line, "export ", a diff's '+'/'-'.
bool line_key(const scan& t, size_t ks) {
    size_t p = ks;
    if (p >= 7 && std::memcmp(t.s + p - 7, "export ", 7) == 0) p -= 7;
    if (p > 0 && (t.s[p - 1] == '+' || t.s[p - 1] == '-')) --p;
    if (p == 0) return true;
    if (t.s[p - 1] == '\n') return true;
    return p >= 2 && t.s[p - 2] == '\\' && t.s[p - 1] == 'n';
}

// ':' or '=' after a secret-naming key: password=..., "api_key": "...", secret: ..., ?sig=...
bool assignment_at(const scan& t, size_t c, match& m) {
    size_t ke = c;
    int spaces = 0;
    while (ke > t.floor && t.s[ke - 1] == ' ' && spaces < 2) --ke, ++spaces;
    if (ke > t.floor && (t.s[ke - 1] == '"' || t.s[ke - 1] == '\'')) --ke;
    if (ke > t.floor && t.s[ke - 1] == '\\') --ke;  // \"key\": JSON inside a JSON string
    size_t ks = ke;
    while (ks > t.floor && key_char(t.s[ks - 1]) && ke - ks <= 64 && !t.escape_before(ks)) --ks;
    if (ke - ks < 3 || ke - ks > 64) return false;
    std::string_view key(t.s + ks, ke - ks);
    const bool query = t.s[c] == '=' && ke == c && (t.before(ks) == '?' || t.before(ks) == '&');
    if (!scrubber::is_secret_key(key) && !(query && is_query_secret_key(key))) return false;
    if (t.at(c) == ':' && t.at(c + 1) == '/' && t.at(c + 2) == '/') return false;  // URL scheme
    size_t v = c + 1;
    while (v < t.n && (t.s[v] == ' ' || t.s[v] == '\t') && v - c < 4) ++v;
    bool escaped_quote = t.at(v) == '\\' && t.at(v + 1) == '"';
    if (escaped_quote) ++v;
    char q = t.at(v);
    size_t vs, ve;
    bool quoted = q == '"' || q == '\'';
    if (escaped_quote) {  // \"value\": ends at the next \"
        vs = v + 1;
        ve = vs;
        while (ve + 1 < t.n && !(t.s[ve] == '\\' && t.s[ve + 1] == '"')) ++ve;
        if (ve + 1 >= t.n) return false;
    } else if (quoted) {
        vs = v + 1;
        ve = vs;
        while (ve < t.n && t.s[ve] != q && t.s[ve] != '\n') ++ve;
        if (t.at(ve) != q) return false;
    } else {
        vs = v;
        // "Authorization: Bearer xyz": the credential is the next word
        size_t we = vs;
        while (we < t.n && is_alpha(t.s[we])) ++we;
        std::string_view w(t.s + vs, we - vs);
        if ((w == "Bearer" || w == "bearer" || w == "Basic" || w == "Token" || w == "token") && t.at(we) == ' ')
            vs = we + 1;
        ve = value_end(t, vs, t.s[c] == '=' && !query && line_key(t, ks), query);
    }
    std::string_view val(t.s + vs, ve - vs);
    if (value_is_trivial(val) || val.size() > 512) return false;
    // "token: 12" (counts) is not a credential; unquoted prose after ':' needs a non-letter or length
    bool all_digits = true, all_alpha = true;
    for (char ch : val) {
        all_digits &= is_digit(ch);
        all_alpha &= is_alpha(ch);
    }
    std::string lk;
    for (char ch : key) lk.push_back(lower(ch));
    if (all_digits && lk.find("token") != std::string::npos) return false;
    if (!quoted && t.s[c] == ':' && all_alpha && val.size() < 12) return false;
    m = {vs, ve, credential_kind(val), false, false};
    return true;
}

// scheme://user:PASSWORD@host: the password runs to the last '@' of the authority, whatever it
// holds ('#', '?', '/', '%', '@' unencoded); known webhook URLs (Slack, Discord) lose their token.
bool url_at(const scan& t, size_t c, match& m) {
    if (t.at(c + 1) != '/' || t.at(c + 2) != '/' || !is_alpha(t.before(c))) return false;
    size_t a = c + 3;
    if (vendor_at(t, a, m)) return true;
    size_t e = a;
    while (e < t.n && !is_space(t.s[e]) && t.s[e] != '"' && t.s[e] != '\'' && t.s[e] != '<' && t.s[e] != '>' &&
           t.s[e] != '`' && !escape_stop(t, e) && e - a < 1024)
        ++e;
    size_t colon = a;
    while (colon < e && (is_alnum(t.s[colon]) || std::strchr("._~%+-!$&*,;=", t.s[colon]))) ++colon;
    if (colon >= e || t.s[colon] != ':') return false;
    size_t at = 0;
    for (size_t k = colon + 1; k < e; ++k)
        if (t.s[k] == '@' && (is_alnum(t.at(k + 1)) || t.at(k + 1) == '[')) at = k;
    if (!at || at == colon + 1) return false;
    std::string_view pw(t.s + colon + 1, at - colon - 1);
    if (value_is_trivial(pw)) return false;
    m = {colon + 1, at, pii::secret, false, false};
    return true;
}

// ---- credentials in prose ----------------------------------------------------------------------

// A word that names a credential ("password", "API key", "token", "passphrase", "bearer", ...);
// `prev` is the word before it, for two-word names.
bool credential_word(std::string_view w, std::string_view prev) {
    char buf[33];
    size_t n = 0;
    for (char ch : w) {
        if (n == 32) return false;
        buf[n++] = lower(ch);
    }
    std::string_view l(buf, n);
    if (l == "key" || l == "keys") {
        char pb[17];
        size_t pn = 0;
        for (char ch : prev) {
            if (pn == 16) break;
            pb[pn++] = lower(ch);
        }
        std::string_view p(pb, pn);
        return p == "api" || p == "access" || p == "private" || p == "secret" || p == "signing" || p == "auth" ||
               p == "license" || p == "encryption";
    }
    if (l == "tokens" || l == "secrets" || l == "passwords") return false;
    if (l == "pass") return false;  // "tests pass on fix/abc-123"
    return l == "bearer" || scrubber::is_secret_key(l);
}

// Shapes that are not credentials even after a keyword: dates and times, versions, UUIDs, ids
// like INV-2025-1234, provider ids (call_..., chatcmpl-...), hex digests.
bool benign_shape(std::string_view v) {
    size_t letters = 0, digits = 0, hexish = 0, dashes = 0;
    bool only_date = true, upper_prefix_id = true;
    size_t k = 0;
    while (k < v.size() && is_upper(v[k])) ++k;
    if (k < 2 || k == v.size() || (v[k] != '-' && v[k] != '_')) upper_prefix_id = false;
    for (size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        letters += is_alpha(c);
        digits += is_digit(c);
        hexish += is_hex(c);
        dashes += c == '-';
        if (!(is_digit(c) || std::strchr("-:.TZ+/", c))) only_date = false;
        if (i > k && !(is_digit(c) || is_upper(c) || c == '-' || c == '_')) upper_prefix_id = false;
    }
    if (only_date || upper_prefix_id) return true;
    if (v.size() == 36 && dashes == 4 && hexish == 32) return true;  // UUID
    if ((v[0] == 'v' || v[0] == 'V') && v.size() > 1 && is_digit(v[1])) return true;
    static const char* const ids[] = {"call_", "chatcmpl-", "toolu_", "msg_", "evt_", "req_", "run_", "resp_",
                                      "file-", "asst_", "thread_", "http", "INV-", "ACC-", nullptr};
    for (const char* const* p = ids; *p; ++p)
        if (v.substr(0, std::strlen(*p)) == *p) return true;
    return false;
}

// A value with the look of a credential: 8+ characters, letters with digits or symbols (or 20+
// mixed-case letters), not a shape named above.
bool credential_like(std::string_view v) {
    if (v.size() < 8 || v.size() > 256 || value_is_trivial(v)) return false;
    bool lo = false, up = false, dig = false, sym = false;
    for (size_t i = 0; i < v.size(); ++i) {
        char c = v[i];
        if (is_lower(c)) lo = true;
        else if (is_upper(c)) up = true;
        else if (is_digit(c)) dig = true;
        else if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) >= 0x7f) return false;
        // key=value and key:value are assignments, not values (padding '=' at the end is fine)
        else if ((c == '=' && i + 1 < v.size() && v[i + 1] != '=') || c == ':') return false;
        // hyphens, dots and apostrophes join words (hard-coded, e.g., don't): not a symbol class
        else if (c != '-' && c != '.' && c != '\'') sym = true;
    }
    if (!(lo || up)) return false;
    if (!(dig || sym) && !(lo && up && v.size() >= 20)) return false;
    if (v[0] == '/' || v.find("//") != std::string_view::npos || v.find("...") != std::string_view::npos) return false;
    return !benign_shape(v);
}

// The token at ts (its first trigger byte) is a credential-like value that follows a credential
// word within a few words in the same sentence: "(API key key_...)", "the password is Hunter2!x".
bool prose_at(const scan& t, size_t ts, match& m) {
    size_t vs = ts;
    while (vs > t.floor && ts - vs < 64 && !is_space(t.s[vs - 1]) && !std::strchr("(\"'[<{=:`", t.s[vs - 1]) &&
           !t.escape_before(vs))
        --vs;
    if (vs > 0 && !(is_space(t.s[vs - 1]) || std::strchr("(\"'[<{=:`", t.s[vs - 1]) || t.escape_before(vs)))
        return false;
    size_t ve = value_end(t, ts, false, false);
    if (ve - vs < 8) return false;
    std::string_view val(t.s + vs, ve - vs);
    if (!credential_like(val)) return false;
    // up to 4 words back, no sentence or line boundary in between
    size_t p = vs;
    std::string_view words[5];
    int nw = 0;
    while (nw < 5 && p > t.floor && vs - p < 80) {
        while (p > t.floor && (t.s[p - 1] == ' ' || t.s[p - 1] == '(' || t.s[p - 1] == ':' || t.s[p - 1] == '=' ||
                               t.s[p - 1] == '"' || t.s[p - 1] == '\''))
            --p;
        size_t we = p;
        while (p > t.floor && (is_alnum(t.s[p - 1]) || t.s[p - 1] == '_' || t.s[p - 1] == '-') && we - p < 32 &&
               !t.escape_before(p))
            --p;
        if (p == we) break;
        words[nw++] = std::string_view(t.s + p, we - p);
        if (p > t.floor && !(t.s[p - 1] == ' ' || t.s[p - 1] == '(' || t.s[p - 1] == '"' || t.s[p - 1] == '\'')) {
            if (t.s[p - 1] != ':' && t.s[p - 1] != '=') break;  // '.', ',', newline...: stop after this word
        }
    }
    for (int k = 0; k < nw; ++k) {
        std::string_view prev = k + 1 < nw ? words[k + 1] : std::string_view();
        if (credential_word(words[k], prev)) {
            m = {vs, ve, credential_kind(val), false, false};
            return true;
        }
        if (k < nw - 1 && has_digit_sv(words[k])) break;  // an intervening value: not this keyword's
    }
    // or the credential word follows: "Type Hunter12!x into the Password field"
    size_t q = ve;
    if (t.at(q) == '"' || t.at(q) == '\'') ++q;
    std::string_view prev;
    for (int k = 0; k < 4 && t.at(q) == ' '; ++k) {
        size_t a = q + 1;
        if (t.at(a) == '"' || t.at(a) == '\'') ++a;
        size_t b = a;
        while (b < t.n && is_alpha(t.s[b]) && b - a < 32) ++b;
        if (b == a) break;
        std::string_view w(t.s + a, b - a);
        if (t.at(b) == '"' || t.at(b) == '\'') ++b;
        if (t.at(b) == ':' || t.at(b) == '=') break;  // "Auth: ..." labels what follows it
        if (credential_word(w, prev)) {
            m = {vs, ve, credential_kind(val), false, false};
            return true;
        }
        prev = w;
        q = b;
    }
    return false;
}

}  // namespace

// ---- scrubber -------------------------------------------------------------------------------

bool scrubber::is_secret_key(std::string_view key) {
    if (key.size() < 3 || key.size() > 64) return false;
    char buf[65];
    size_t n = 0;
    bool stem = false;  // cheap pre-check: every keyword contains one of these stems
    for (char c : key) {
        char l = lower(c);
        buf[n++] = (l == '-' || l == '.') ? '_' : l;
    }
    for (size_t i = 0; i + 3 <= n && !stem; ++i) {
        const char* q = buf + i;
        switch (q[0]) {
        case 'p': stem = (q[1] == 'a' && q[2] == 's') || (q[1] == 'w' && q[2] == 'd') || (q[1] == 'r' && q[2] == 'i'); break;
        case 's': stem = (q[1] == 'e' && (q[2] == 'c' || q[2] == 's')) || (q[1] == 'i' && q[2] == 'g') || (q[1] == 'h' && q[2] == 'a'); break;
        case 'a': stem = (q[1] == 'p' && q[2] == 'i') || (q[1] == 'c' && q[2] == 'c') || (q[1] == 'u' && q[2] == 't'); break;
        case 't': stem = q[1] == 'o' && q[2] == 'k'; break;
        case 'c': stem = (q[1] == 'r' && q[2] == 'e') || (q[1] == 'o' && q[2] == 'n'); break;
        case 'b': stem = q[1] == 'e' && q[2] == 'a'; break;
        case 'x': stem = q[1] == '_' && q[2] == 'a'; break;
        default: break;
        }
    }
    if (!stem) return false;
    std::string_view k(buf, n);
    // an id names the credential, it is not one (private_key_id, access_key_id: vendor rules catch
    // the key ids that matter)
    if (k.size() > 3 && k.substr(k.size() - 3) == "_id") return false;
    static const char* const exact[] = {"pwd",     "pass",         "auth",    "token",      "authorization",
                                        "passcode", "credentials", "credential", "bearer", "x_api_key", nullptr};
    for (const char* const* e = exact; *e; ++e)
        if (k == *e) return true;
    static const char* const contains[] = {"password", "passwd", "passphrase", "secret", "api_key", "apikey",
                                           "access_key", "private_key", "privatekey", "auth_token", "access_token",
                                           "refresh_token", "session_token", "id_token", "bearer_token", "credential",
                                           "accountkey", "account_key", "sharedaccesskey", "shared_access_key",
                                           "signing_key", "connection_string", "connectionstring", nullptr};
    for (const char* const* c = contains; *c; ++c)
        if (k.find(*c) != std::string_view::npos) return true;
    if (k.size() > 5 && k.substr(k.size() - 5) == "token" && k.find("tokens") == std::string_view::npos) return true;
    if (k.size() > 5 && (k.substr(k.size() - 5) == "_pass" || k.substr(k.size() - 4) == "_pwd")) return true;
    return false;
}

scrubber::scrubber(bool enabled) : enabled_(enabled) { reset(); }

void scrubber::reset() {
    counts_.fill(0);
    next_.fill(0);
    seen_.clear();
}

uint32_t scrubber::total() const {
    uint32_t t = 0;
    for (auto c : counts_) t += c;
    return t;
}

void scrubber::counts_json(std::string& out) const {
    out.push_back('{');
    bool first = true;
    for (int k = 0; k < pii_kind_count; ++k) {
        if (!counts_[k]) continue;
        if (!first) out.push_back(',');
        first = false;
        out += '"';
        out += k_kinds[k].name;
        out += "\":";
        out += std::to_string(counts_[k]);
    }
    out.push_back('}');
}

void scrubber::placeholder(pii kind, std::string_view identity, std::string& out) {
    int k = static_cast<int>(kind);
    key_.assign(1, static_cast<char>('a' + k));
    key_.append(identity);
    auto it = seen_.find(key_);
    uint32_t idx;
    if (it == seen_.end()) {
        idx = ++next_[k];
        seen_.emplace(key_, idx);
    } else {
        idx = it->second;
    }
    ++counts_[k];
    out.push_back('<');
    out += k_kinds[k].label;
    out.push_back('_');
    out += std::to_string(idx);
    out.push_back('>');
}

namespace {

// One string's scan: every detector at every trigger byte; `emit(kind, identity, out)` writes a
// placeholder.
template <class Emit> size_t scan_text(std::string_view text, std::string& out, Emit&& emit) {
    scan t{text.data(), text.size(), 0};
    const size_t n = text.size();
    size_t i = 0, reps = 0;
    match m;
    std::string norm;
    for (;;) {
        i = next_trigger(t.s, i, n);
        if (i >= n) break;
        const char c = t.s[i];
        bool hit = false;
        if (is_digit(c)) {
            // a number starts here: not inside a word, a decimal, or a longer run of digit groups
            char p = t.before(i);
            bool grouped = (p == '-' || p == ' ' || p == '.') && i >= 2 && is_digit(t.s[i - 2]);
            if (i >= t.floor && (!(is_word(p) || p == '.' || grouped) || t.escape_before(i))) {
                hit = ipv4_at(t, i, m) || ssn_at(t, i, m) || card_at(t, i, m) || phone_national_at(t, i, m) ||
                      address_at(t, i, m);
            }
        } else if (is_upper(c)) {
            if (c == 'J') hit = jwt_at(t, i, m);
            if (!hit && t.token_start(i)) hit = upper_at(t, i, m);
        } else {
            switch (c) {
            case '@': hit = email_at(t, i, m); break;
            case ':': hit = assignment_at(t, i, m) || url_at(t, i, m) || ipv6_at(t, i, m); break;
            case '=': hit = assignment_at(t, i, m); break;
            case '-': hit = pem_at(t, i, m); break;
            case '+':
                if (!is_alnum(t.before(i))) hit = phone_intl_at(t, i, m);
                break;
            case '(': hit = phone_paren_at(t, i, m); break;
            default: break;
            }
        }
        // the first trigger byte of a token (only lowercase letters before it): vendor formats
        // and credentials in prose start at the token's first byte
        if (!hit) {
            size_t ts = i;
            while (ts > t.floor && is_lower(t.s[ts - 1]) && i - ts < 24) --ts;
            // prefixes with dots (hvs., dp.pt.): the token may start before them
            size_t td = ts;
            while (td > t.floor && (is_lower(t.s[td - 1]) || t.s[td - 1] == '.') && i - td < 24) --td;
            if (td < ts && t.token_start(td) && t.s[td] != '.' && vendor_at(t, td, m)) hit = true;
            if (!hit && t.token_start(ts) && (ts == i || !is_lower(t.before(ts)))) {
                hit = vendor_at(t, ts, m) != nullptr || prose_at(t, ts, m);
            }
        }
        if (!hit || m.start < t.floor || m.end <= m.start) {
            ++i;
            continue;
        }
        out.append(t.s + t.floor, m.start - t.floor);
        std::string_view val(t.s + m.start, m.end - m.start);
        if (m.digits_norm || m.lower_norm) {
            norm.clear();
            for (char ch : val) {
                if (m.digits_norm) {
                    if (is_digit(ch)) norm.push_back(ch);
                } else {
                    norm.push_back(lower(ch));
                }
            }
            emit(m.kind, norm, out);
        } else {
            emit(m.kind, val, out);
        }
        ++reps;
        t.floor = m.end;
        i = m.end;
    }
    out.append(t.s + t.floor, n - t.floor);
    return reps;
}

}  // namespace

size_t scrubber::scrub(std::string_view text, std::string& out) {
    if (!enabled_) {
        out.append(text);
        return 0;
    }
    auto emit = [this](pii k, std::string_view identity, std::string& o) { placeholder(k, identity, o); };
    // A credential found earlier in this call is replaced wherever it recurs, context or not
    // (a password typed into a form shows up again, bare, in the tool call's arguments).
    bool known = false;
    for (pii k : {pii::api_key, pii::aws_key, pii::github_token, pii::slack_token, pii::private_key, pii::secret})
        known |= counts_[static_cast<int>(k)] > 0;
    if (known) {
        size_t best = std::string_view::npos, best_len = 0, reps = 0;
        pii best_kind = pii::secret;
        for (const auto& [key, idx] : seen_) {
            int k = key[0] - 'a';
            if (key.size() < 9 || k < static_cast<int>(pii::api_key) || k > static_cast<int>(pii::secret) ||
                k == static_cast<int>(pii::jwt))
                continue;
            std::string_view lit(key.data() + 1, key.size() - 1);
            size_t p = text.find(lit);
            if (p != std::string_view::npos && (p < best || (p == best && lit.size() > best_len))) {
                best = p;
                best_len = lit.size();
                best_kind = static_cast<pii>(k);
            }
        }
        if (best != std::string_view::npos) {
            reps += scan_text(text.substr(0, best), out, emit);
            placeholder(best_kind, text.substr(best, best_len), out);
            return reps + 1 + scrub(text.substr(best + best_len), out);
        }
    }
    return scan_text(text, out, emit);
}

bool scrubber::scrub_secret_value(std::string_view value, std::string& out) {
    if (!enabled_ || value_is_trivial(value)) return false;
    placeholder(credential_kind(value), value, out);
    return true;
}

}  // namespace slm::collector
