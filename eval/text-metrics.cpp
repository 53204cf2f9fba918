// Text metrics of an SLM answer against the logged LLM answer (exact match, ROUGE-L F1, chrF)
// and the parser that reads a score out of an LLM judge's reply.
#include <algorithm>
#include <cmath>
#include <regex>
#include <unordered_map>

#include "common/text.h"
#include "eval/metrics.h"

namespace slm::eval {

bool exact_match(std::string_view hyp, std::string_view ref) { return trim_space(hyp) == trim_space(ref); }

namespace {

// ---- ROUGE-L -------------------------------------------------------------------------------

std::vector<std::string> word_tokens(std::string_view s) {
    std::vector<std::string> out;
    std::string cur;
    for (char ch : s) {
        unsigned char c = static_cast<unsigned char>(ch);
        bool word = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || c >= 0x80;
        if (word) {
            cur += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : ch;
        } else if (!cur.empty()) {
            out.push_back(std::move(cur));
            cur.clear();
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

/// Length of the longest common subsequence, two rows of the DP table.
size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    std::vector<size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
    for (size_t i = 1; i <= a.size(); ++i) {
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

// ---- chrF ----------------------------------------------------------------------------------

/// Code points of `s` (invalid bytes as U+FFFD) without the characters Python's str.split()
/// splits on, which is what sacrebleu removes before taking character n-grams.
std::u32string chars_without_space(std::string_view s) {
    std::u32string out;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* end = p + s.size();
    while (p < end) {
        int len = utf8_seq_len(p, end);
        char32_t cp;
        if (len == 0) {
            cp = 0xFFFD;
            len = 1;
        } else if (len == 1) {
            cp = p[0];
        } else {
            cp = p[0] & (0xFF >> (len + 1));
            for (int i = 1; i < len; ++i) cp = (cp << 6) | (p[i] & 0x3F);
        }
        p += len;
        bool space = (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
                     cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
                     cp == 0x205F || cp == 0x3000;
        if (!space) out += cp;
    }
    return out;
}

std::unordered_map<std::u32string_view, int> ngram_counts(const std::u32string& s, size_t n) {
    std::unordered_map<std::u32string_view, int> m;
    if (s.size() < n) return m;
    std::u32string_view v(s);
    for (size_t i = 0; i + n <= s.size(); ++i) ++m[v.substr(i, n)];
    return m;
}

}  // namespace

double rouge_l(std::string_view hyp, std::string_view ref) {
    auto h = word_tokens(hyp), r = word_tokens(ref);
    if (h.empty() && r.empty()) return 1.0;
    if (h.empty() || r.empty()) return 0.0;
    double lcs = double(lcs_length(h, r));
    if (lcs == 0) return 0.0;
    double p = lcs / double(h.size()), rc = lcs / double(r.size());
    return 2 * p * rc / (p + rc);
}

double chrf(std::string_view hyp, std::string_view ref) {
    constexpr int order = 6;
    constexpr double beta2 = 4.0;  // beta = 2
    auto h = chars_without_space(hyp), r = chars_without_space(ref);
    if (h.empty() && r.empty()) return 1.0;
    double sum_p = 0, sum_r = 0;
    int effective = 0;
    for (int n = 1; n <= order; ++n) {
        if (h.size() < size_t(n) || r.size() < size_t(n)) continue;  // an order with no n-grams on one side
        auto hc = ngram_counts(h, n), rc = ngram_counts(r, n);
        int64_t match = 0;
        for (const auto& [g, c] : hc)
            if (auto it = rc.find(g); it != rc.end()) match += std::min(c, it->second);
        sum_p += double(match) / double(h.size() - n + 1);
        sum_r += double(match) / double(r.size() - n + 1);
        ++effective;
    }
    if (effective == 0) return 0.0;
    double p = sum_p / effective, rc = sum_r / effective;
    if (p + rc == 0) return 0.0;
    return (1 + beta2) * p * rc / (beta2 * p + rc);
}

// ---- judge scores ------------------------------------------------------------------------------

std::optional<judge_score> parse_judge_score(std::string_view reply_sv, double default_scale) {
    const std::string reply(reply_sv);
    static const std::string num = R"(([-+]?\d+(?:\.\d+)?))";
    static const std::string of = R"((?:\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))?)";
    // "Score: 8/10", "**Rating**: **7**", "grade = 3 out of 5", "Final score - 9"
    static const std::regex keyword(R"((?:score|rating|grade)(?:\s+(?:of|is))?\W{0,6}?)" + num + of, std::regex::icase);
    static const std::regex fraction(num + R"(\s*(?:/|out\s+of)\s*(\d+(?:\.\d+)?))", std::regex::icase);
    static const std::regex bold(R"(\*\*\s*)" + num + R"(\s*\*\*)");
    static const std::regex bare(R"(^\W*)" + num + of + R"(\W*$)", std::regex::icase);

    auto last_match = [&](const std::regex& re) -> std::optional<std::smatch> {
        std::optional<std::smatch> last;
        for (auto it = std::sregex_iterator(reply.begin(), reply.end(), re); it != std::sregex_iterator(); ++it) last = *it;
        return last;
    };
    auto make = [&](const std::smatch& m, bool has_scale_group) -> std::optional<judge_score> {
        judge_score s;
        s.raw = std::stod(m[1].str());
        s.scale = (has_scale_group && m.size() > 2 && m[2].matched) ? std::stod(m[2].str()) : default_scale;
        if (!(s.scale > 0) || s.raw < 0 || s.raw > s.scale) return std::nullopt;
        s.normalized = s.raw / s.scale;
        return s;
    };
    // a judge's "**Score:** 8" has its ** between the keyword and the number: \W{0,6} covers it
    if (auto m = last_match(keyword)) return make(*m, true);
    if (auto m = last_match(fraction)) return make(*m, true);
    if (auto m = last_match(bold)) return make(*m, false);
    std::smatch m;
    if (std::regex_search(reply, m, bare)) return make(m, true);
    return std::nullopt;
}

}  // namespace slm::eval
