// What a cluster is: c-TF-IDF label terms, workloads, response kinds, token lengths, how alike
// its responses are, and the SLM-suitability score with the reasons behind it.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <unordered_map>

#include "clustering/clustering.h"
#include "clustering/text-features.h"
#include "common/common.h"
#include "common/response-kind.h"
#include "common/text.h"

namespace slm::clustering {

using namespace detail;

namespace {

constexpr int k_response_bits = 18;

/// The shape of a JSON value: keys, nesting, value types; short strings (enum-like values such as
/// a route or a priority) kept, long strings and numbers as placeholders.
void skeleton(const nlohmann::json& j, std::string& out, int depth = 0) {
    if (depth > 6) return;
    if (j.is_object()) {
        out += "{ ";
        for (auto it = j.begin(); it != j.end(); ++it) {
            out += it.key();
            out += ": ";
            skeleton(it.value(), out, depth + 1);
        }
        out += "} ";
    } else if (j.is_array()) {
        out += "[ ";
        size_t i = 0;
        for (const auto& e : j) {
            if (i++ == 3) break;
            skeleton(e, out, depth + 1);
        }
        out += "] ";
    } else if (j.is_string()) {
        const auto& v = j.get_ref<const std::string&>();
        out += v.size() <= 16 && v.find(' ') == std::string::npos ? v + " " : "text_value ";
    } else if (j.is_number()) {
        out += "number_value ";
    } else {
        out += j.dump() + " ";
    }
}

/// The response as one document for comparing responses: for tool calls and JSON the skeleton
/// (two calls of one template share it, whatever values they copy from their inputs), for the
/// rest the text.
std::string response_doc(const call_sample& c) {
    std::string doc;
    auto tc = trim_space(c.response_tool_calls);
    if (!tc.empty() && tc != "[]" && tc != "null") {
        auto j = nlohmann::json::parse(tc, nullptr, false);
        if (j.is_array()) {
            for (const auto& call : j) {
                doc += "call ";
                doc += call.value("name", std::string("?"));
                doc += " ";
                if (call.contains("arguments")) skeleton(call["arguments"], doc);
            }
        } else {
            doc += utf8_cut(tc, 4000);
        }
        doc += "\n";
    }
    auto t = trim_space(c.response_text);
    if (!t.empty() && (t[0] == '{' || t[0] == '[')) {
        auto j = nlohmann::json::parse(t, nullptr, false);
        if (!j.is_discarded()) {
            skeleton(j, doc);
            return doc;
        }
    }
    doc += utf8_cut(t, 4000);
    return doc;
}

/// numpy's default (linear) percentile of sorted values.
double percentile(const std::vector<double>& sorted, double q) {
    if (sorted.empty()) return 0;
    double pos = q / 100.0 * static_cast<double>(sorted.size() - 1);
    size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

double clamp01(double x) { return std::clamp(x, 0.0, 1.0); }

/// 1 at or below `good`, 0 at or above `bad`, linear in log between.
double log_ramp(double v, double good, double bad) {
    if (v <= good) return 1;
    if (v >= bad) return 0;
    return 1 - std::log(v / good) / std::log(bad / good);
}

}  // namespace

const char* to_string(response_kind k) {
    switch (k) {
        case response_kind::tool_call: return "tool_call";
        case response_kind::json: return "json";
        case response_kind::code: return "code";
        case response_kind::prose: return "prose";
    }
    return "?";
}

// common/response-kind.h decides, as collect and eval do; an empty response counts as prose here
response_kind classify_response(const std::string& text, const std::string& tool_calls_json) {
    switch (slm::classify_response(text, tool_calls_json)) {
        case slm::response_kind::tool_call: return response_kind::tool_call;
        case slm::response_kind::json: return response_kind::json;
        case slm::response_kind::code: return response_kind::code;
        case slm::response_kind::prose:
        case slm::response_kind::empty: return response_kind::prose;
    }
    return response_kind::prose;
}

std::vector<float> response_idf(const std::vector<const std::vector<call_sample>*>& samples) {
    const size_t buckets = size_t{1} << k_response_bits;
    std::vector<uint32_t> df(buckets, 0);
    std::vector<uint32_t> stamp(buckets, 0);
    uint32_t docs = 0;
    feature_config cfg;
    cfg.word_ngram_max = 2;
    cfg.char_ngram_max = 0;
    for (const auto* s : samples)
        for (const auto& c : *s) {
            ++docs;
            for_each_feature(response_doc(c), cfg, [&](uint64_t h, int) {
                uint32_t b = static_cast<uint32_t>(h >> (64 - k_response_bits));
                if (stamp[b] != docs) stamp[b] = docs, ++df[b];
            });
        }
    std::vector<float> idf(buckets);
    for (size_t b = 0; b < buckets; ++b) idf[b] = static_cast<float>(std::log((docs + 1.0) / (df[b] + 1.0)) + 1.0);
    return idf;
}

cluster_stats describe(const std::vector<call_sample>& sample, const std::vector<float>& idf, int repetition_sample,
                       uint64_t seed) {
    cluster_stats s;
    s.sampled = static_cast<int>(sample.size());
    if (sample.empty()) return s;
    const double n = static_cast<double>(sample.size());

    std::unordered_map<std::string, int64_t> wl;
    std::vector<double> pt, ct;
    for (const auto& c : sample) {
        ++wl[c.workload_id.empty() ? "(none)" : c.workload_id];
        auto k = classify_response(c.response_text, c.response_tool_calls);
        s.kind_share[static_cast<int>(k)] += 1 / n;
        if (c.prompt_tokens) pt.push_back(static_cast<double>(*c.prompt_tokens));
        // without a usage block, ~4 bytes per token
        ct.push_back(c.completion_tokens ? static_cast<double>(*c.completion_tokens)
                                         : std::ceil(static_cast<double>(c.response_text.size() + c.response_tool_calls.size()) / 4.0));
        if (!c.prompt_tokens) pt.push_back(std::ceil(static_cast<double>(c.task_text.size()) / 4.0));
    }
    s.tool_call_share = s.kind_share[static_cast<int>(response_kind::tool_call)];
    std::vector<std::pair<std::string, int64_t>> w(wl.begin(), wl.end());
    std::sort(w.begin(), w.end(), [](auto& a, auto& b) { return a.second != b.second ? a.second > b.second : a.first < b.first; });
    for (size_t i = 0; i < w.size() && i < 3; ++i) s.workloads.emplace_back(w[i].first, w[i].second / n);
    std::sort(pt.begin(), pt.end());
    std::sort(ct.begin(), ct.end());
    const double qs[3] = {50, 90, 99};
    for (int i = 0; i < 3; ++i) {
        s.prompt_tokens_p[i] = percentile(pt, qs[i]);
        s.completion_tokens_p[i] = percentile(ct, qs[i]);
    }

    // repetitiveness: mean pairwise cosine of responses on a sample
    std::vector<size_t> pick(sample.size());
    std::iota(pick.begin(), pick.end(), 0);
    std::mt19937_64 rng(seed);
    size_t m = std::min(pick.size(), static_cast<size_t>(std::max(2, repetition_sample)));
    for (size_t i = 0; i < m; ++i) std::swap(pick[i], pick[i + rng() % (pick.size() - i)]);
    std::vector<sparse_vec> v;
    for (size_t i = 0; i < m; ++i) v.push_back(hashed_tfidf(response_doc(sample[pick[i]]), k_response_bits, idf));
    double sum = 0;
    int64_t pairs = 0;
    for (size_t i = 0; i < v.size(); ++i)
        for (size_t j = i + 1; j < v.size(); ++j) sum += dot(v[i], v[j]), ++pairs;
    s.repetitiveness = pairs ? sum / static_cast<double>(pairs) : 0.0;
    return s;
}

std::vector<std::vector<std::pair<std::string, double>>> c_tfidf_terms(
    const std::vector<std::vector<std::string_view>>& docs_per_cluster, int top_n) {
    // W(t,c) = tf(t,c) / words(c) * log(1 + A / f(t)), A = mean words per cluster (BERTopic's c-TF-IDF)
    const size_t k = docs_per_cluster.size();
    std::vector<std::unordered_map<std::string, double>> tf(k);
    std::unordered_map<std::string, double> f;
    std::vector<double> words(k, 0);
    for (size_t c = 0; c < k; ++c)
        for (auto doc : docs_per_cluster[c])
            for_each_word(doc, [&](size_t b, size_t e) {
                if (e - b < 3 || e - b > 32) return;
                std::string wd = normalise_word(doc, b, e);
                if (wd.find('0') != std::string::npos || is_stopword(wd)) return;
                if (wd.find_first_not_of('_') == std::string::npos) return;
                tf[c][wd] += 1;
                words[c] += 1;
            });
    for (size_t c = 0; c < k; ++c)
        for (auto& [t, x] : tf[c]) f[t] += x;
    double a = k ? std::accumulate(words.begin(), words.end(), 0.0) / static_cast<double>(k) : 0;
    std::vector<std::vector<std::pair<std::string, double>>> out(k);
    for (size_t c = 0; c < k; ++c) {
        std::vector<std::pair<std::string, double>> sc;
        for (auto& [t, x] : tf[c]) sc.emplace_back(t, x / std::max(1.0, words[c]) * std::log(1 + a / f[t]));
        std::sort(sc.begin(), sc.end(), [](auto& p, auto& q) { return p.second != q.second ? p.second > q.second : p.first < q.first; });
        if (sc.size() > static_cast<size_t>(top_n)) sc.resize(top_n);
        out[c] = std::move(sc);
    }
    return out;
}

std::vector<std::string> make_labels(const std::vector<std::vector<std::pair<std::string, double>>>& terms) {
    std::vector<std::string> labels(terms.size());
    for (size_t c = 0; c < terms.size(); ++c) {
        for (size_t want = 3;; ++want) {
            std::string l;
            for (size_t i = 0; i < terms[c].size() && i < want; ++i) l += (i ? " " : "") + terms[c][i].first;
            bool clash = false;
            for (size_t o = 0; o < c; ++o) clash |= labels[o] == l;
            if (l.empty()) l = fmt::format("cluster {}", c);
            if (!clash || want >= terms[c].size()) {
                if (clash) l += fmt::format(" #{}", c);
                labels[c] = l;
                break;
            }
        }
    }
    return labels;
}

suitability score_suitability(const cluster_stats& s) {
    const double tool = s.kind_share[0], json = s.kind_share[1], code = s.kind_share[2], prose = s.kind_share[3];
    struct factor {
        const char* name;
        double weight, score;
        std::string evidence;
    };
    std::vector<factor> f = {
        {"structured", 0.35, clamp01(tool + json + 0.5 * code),
         fmt::format("{:.0f}% tool calls, {:.0f}% JSON, {:.0f}% code, {:.0f}% prose", 100 * tool, 100 * json,
                     100 * code, 100 * prose)},
        {"repetitive", 0.30, clamp01((s.repetitiveness - 0.15) / 0.5),
         fmt::format("responses {} alike: mean pairwise similarity {:.2f}",
                     s.repetitiveness >= 0.4 ? "are much" : s.repetitiveness >= 0.25 ? "are somewhat" : "are not",
                     s.repetitiveness)},
        {"bounded_output", 0.25, log_ramp(s.completion_tokens_p[1], 128, 2048),
         fmt::format("{} outputs: p90 {:.0f} completion tokens",
                     s.completion_tokens_p[1] <= 256 ? "short" : s.completion_tokens_p[1] <= 1024 ? "medium" : "long",
                     s.completion_tokens_p[1])},
        {"bounded_context", 0.10, log_ramp(s.prompt_tokens_p[1], 2048, 16384),
         fmt::format("{} context: p90 {:.0f} prompt tokens", s.prompt_tokens_p[1] <= 2048 ? "small" : "large",
                     s.prompt_tokens_p[1])},
    };
    suitability out;
    for (auto& x : f) out.score += x.weight * x.score;
    out.score = clamp01(out.score);
    std::stable_sort(f.begin(), f.end(), [](const factor& a, const factor& b) {
        return a.weight * std::abs(a.score - 0.5) > b.weight * std::abs(b.score - 0.5);
    });
    out.reasons = nlohmann::json::array();
    for (auto& x : f)
        out.reasons.push_back({{"factor", x.name},
                               {"effect", x.score >= 0.5 ? "+" : "-"},
                               {"weight", x.weight},
                               {"score", std::round(x.score * 1000) / 1000},
                               {"evidence", x.evidence}});
    return out;
}

nlohmann::json to_json(const cluster_stats& s) {
    auto r3 = [](double x) { return std::round(x * 1000) / 1000; };
    nlohmann::json terms = nlohmann::json::array(), wl = nlohmann::json::array(), kinds = nlohmann::json::object();
    for (auto& [t, w] : s.top_terms) terms.push_back({{"term", t}, {"weight", r3(w)}});
    for (auto& [t, w] : s.workloads) wl.push_back({{"workload_id", t}, {"share", r3(w)}});
    for (int i = 0; i < 4; ++i) kinds[to_string(static_cast<response_kind>(i))] = r3(s.kind_share[i]);
    return {{"top_terms", terms},
            {"workloads", wl},
            {"tool_call_share", r3(s.tool_call_share)},
            {"response_kinds", kinds},
            {"prompt_tokens", {{"p50", s.prompt_tokens_p[0]}, {"p90", s.prompt_tokens_p[1]}, {"p99", s.prompt_tokens_p[2]}}},
            {"completion_tokens",
             {{"p50", s.completion_tokens_p[0]}, {"p90", s.completion_tokens_p[1]}, {"p99", s.completion_tokens_p[2]}}},
            {"repetitiveness", r3(s.repetitiveness)},
            {"sampled", s.sampled}};
}

}  // namespace slm::clustering
