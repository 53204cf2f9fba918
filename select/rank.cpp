// Constraint parsing, a cluster's needs from its stats, hard filters and the scoring formula
// documented in select/select.h. Pure functions: the unit tests pin them.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

#include "common/common.h"
#include "select/select.h"

namespace slm::select {

namespace {

using json = nlohmann::json;

double clamp01(double x) { return std::isfinite(x) ? std::clamp(x, 0.0, 1.0) : 0.0; }
double r3(double x) { return std::round(x * 1000) / 1000; }

std::string trim_lower(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    std::string out(s.substr(b, e - b));
    for (auto& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
}

// "1.5b" -> (1.5, "b"); nullopt when the number part does not parse or is not finite.
std::optional<std::pair<double, std::string>> split_number(std::string_view text) {
    std::string t = trim_lower(text);
    if (t.empty()) return std::nullopt;
    const char* begin = t.c_str();
    char* end = nullptr;
    double v = std::strtod(begin, &end);
    if (end == begin || !std::isfinite(v)) return std::nullopt;
    std::string unit = trim_lower(std::string_view(end));
    return std::pair{v, unit};
}

std::string human_params(double p) {
    if (p >= 1e9) return fmt::format("{:.{}f}B", p / 1e9, p >= 1e10 ? 0 : 1);
    return fmt::format("{:.0f}M", p / 1e6);
}
std::string human_tokens(double t) {
    if (t >= 1000) return fmt::format("{:.1f}k", t / 1000);
    return fmt::format("{:.0f}", t);
}
std::string human_gb(double bytes) {
    const double gb = bytes / 1e9;
    return gb >= 10 ? fmt::format("{:.0f} GB", gb) : gb >= 1 ? fmt::format("{:.1f} GB", gb) : fmt::format("{:.0f} MB", gb * 1000);
}

double licence_score(const std::string& kind) {
    if (kind == "open") return 1.0;
    if (kind == "community") return 0.6;
    if (kind == "unknown") return 0.3;
    return 0.2;  // research-only, non-commercial
}

// p90 -> p99 linear: the stats keep p50/p90/p99 only.
double p95_of(const json& j) {
    if (!j.is_object()) return 0;
    const double p90 = j.value("p90", 0.0), p99 = j.value("p99", p90);
    return p90 + (p99 - p90) * 5.0 / 9.0;
}

// Memory a model needs at run time: 4-bit weights plus 20% for the KV cache and activations.
double runtime_bytes(int64_t params) { return memory_gb(params, true) * 1e9 * 1.2; }

}  // namespace

int64_t parse_param_count(std::string_view text, std::string_view flag) {
    const std::string hint = fmt::format("give {} as a count with an optional unit: 3B, 1.5B, 500M, 135M", flag);
    auto p = split_number(text);
    if (!p) throw user_error(fmt::format("{} '{}' is not a parameter count", flag, text), hint);
    double mult = 0;
    if (p->second.empty()) mult = 1;
    else if (p->second == "k") mult = 1e3;
    else if (p->second == "m") mult = 1e6;
    else if (p->second == "b" || p->second == "g") mult = 1e9;
    else if (p->second == "t") mult = 1e12;
    if (mult == 0)
        throw user_error(fmt::format("{} '{}': unknown unit '{}'", flag, text, p->second), hint);
    const double v = p->first * mult;
    if (v < 1 || v > 1e15) throw user_error(fmt::format("{} '{}' is not a positive parameter count", flag, text), hint);
    return static_cast<int64_t>(std::llround(v));
}

double parse_memory_bytes(std::string_view text, std::string_view flag) {
    const std::string hint = fmt::format("give {} as a positive size: 8GB, 8GiB, 512MB, 4G (GB = 1e9 bytes, GiB = 2^30)", flag);
    auto p = split_number(text);
    if (!p) throw user_error(fmt::format("{} '{}' is not a size", flag, text), hint);
    struct unit {
        const char* name;
        double mult;
    };
    static const unit units[] = {{"", 1},           {"b", 1},          {"k", 1e3},       {"kb", 1e3},
                                 {"kib", 1024.0},   {"m", 1e6},        {"mb", 1e6},      {"mib", 1048576.0},
                                 {"g", 1e9},        {"gb", 1e9},       {"gib", 1073741824.0},
                                 {"t", 1e12},       {"tb", 1e12},      {"tib", 1099511627776.0}};
    for (const auto& u : units)
        if (p->second == u.name) {
            const double v = p->first * u.mult;
            if (!(v > 0)) throw user_error(fmt::format("{} '{}' is not a positive size", flag, text), hint);
            return v;
        }
    throw user_error(fmt::format("{} '{}': unknown unit '{}'", flag, text, p->second), hint);
}

std::vector<std::string> parse_license_list(std::string_view text, std::string_view flag) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string_view::npos) comma = text.size();
        std::string item = trim_lower(text.substr(start, comma - start));
        if (item.empty())
            throw user_error(fmt::format("{} '{}' has an empty licence id", flag, text),
                             "give licence ids separated by commas: apache-2.0,mit,llama3.2");
        if (std::find(out.begin(), out.end(), item) == out.end()) out.push_back(item);
        start = comma + 1;
    }
    return out;
}

json constraints::to_json() const {
    json j = json::object();
    j["max_params"] = max_params ? json(*max_params) : json(nullptr);
    j["max_memory_bytes"] = max_memory_bytes ? json(*max_memory_bytes) : json(nullptr);
    j["licenses"] = licenses;
    return j;
}

json cluster_needs::to_json() const {
    return {{"size", size},
            {"share", r3(share)},
            {"p95_prompt_tokens", std::round(p95_prompt)},
            {"p95_completion_tokens", std::round(p95_completion)},
            {"needed_context", std::round(needed_context)},
            {"tool_share", r3(tool_share)},
            {"json_share", r3(json_share)},
            {"code_share", r3(code_share)},
            {"prose_share", r3(prose_share)}};
}

cluster_needs needs_from_stats(std::string_view stats_json, int64_t size, double share) {
    json j;
    try {
        j = json::parse(stats_json);
    } catch (const json::parse_error& e) {
        throw user_error(fmt::format("clusters.stats is not JSON: {}", e.what()), "re-run slmctl cluster");
    }
    cluster_needs n;
    n.size = size;
    n.share = share;
    if (!j.is_object()) return n;
    n.p95_prompt = p95_of(j.value("prompt_tokens", json::object()));
    n.p95_completion = p95_of(j.value("completion_tokens", json::object()));
    n.needed_context = n.p95_prompt + n.p95_completion;
    const auto kinds = j.value("response_kinds", json::object());
    n.tool_share = j.value("tool_call_share", kinds.value("tool_call", 0.0));
    n.json_share = kinds.value("json", 0.0);
    n.code_share = kinds.value("code", 0.0);
    n.prose_share = kinds.value("prose", 0.0);
    return n;
}

json probe_result::to_json() const {
    json j = {{"calls", calls},       {"skipped", skipped},          {"parsed", parsed},
              {"quality", r3(quality)}, {"tokens_per_s", std::round(tokens_per_s * 10) / 10},
              {"seconds", std::round(seconds * 100) / 100}, {"metric", metric}, {"calls_from", calls_from}};
    if (!error.empty()) j["error"] = error;
    return j;
}

candidate from_catalog(const catalog_entry& e) {
    candidate c;
    c.name = e.name;
    c.catalog_id = e.id;
    c.params = e.params;
    c.architecture = e.architecture;
    c.loadable = e.loadable;
    c.context_length = e.context_length;
    c.license = e.license;
    c.license_kind = e.license_kind;
    c.tool_calling = e.tool_calling;
    c.bfcl = e.bfcl;
    c.ifeval = e.ifeval;
    return c;
}

json ranked::to_json() const {
    json j = {{"name", c.name},
              {"catalog_id", c.catalog_id},
              {"path", c.path},
              {"local", !c.path.empty()},
              {"params", c.params},
              {"architecture", c.architecture},
              {"loadable", c.loadable},
              {"context_length", c.context_length},
              {"license", c.license},
              {"license_kind", c.license_kind},
              {"tool_calling", c.tool_calling},
              {"memory_q4_gb", std::round(memory_gb(c.params, true) * 100) / 100},
              {"memory_bf16_gb", std::round(memory_gb(c.params, false) * 100) / 100},
              {"rank", rank},
              {"score", r3(score)},
              {"filtered", filtered},
              {"why", why},
              {"factors", factors}};
    j["probe"] = c.probe ? c.probe->to_json() : json(nullptr);
    return j;
}

std::optional<std::string> violation(const candidate& c, const cluster_needs& n, const constraints& k) {
    if (k.max_params && c.params > *k.max_params)
        return fmt::format("{} parameters > --max-params {}", human_params(static_cast<double>(c.params)),
                           human_params(static_cast<double>(*k.max_params)));
    if (k.max_memory_bytes && runtime_bytes(c.params) > *k.max_memory_bytes)
        return fmt::format("needs {} in 4-bit (weights + 20%) > --max-memory {}", human_gb(runtime_bytes(c.params)),
                           human_gb(*k.max_memory_bytes));
    if (!k.licenses.empty() && std::find(k.licenses.begin(), k.licenses.end(), trim_lower(c.license)) == k.licenses.end())
        return fmt::format("licence {} not in --license {}", c.license, fmt::join(k.licenses, ","));
    if (c.context_length > 0 && c.context_length < n.needed_context)
        return fmt::format("context {} tokens < needed {} (p95 prompt + completion)", c.context_length,
                           human_tokens(n.needed_context));
    if (c.probe && !c.probe->error.empty()) return fmt::format("probe failed: {}", c.probe->error);
    return std::nullopt;
}

std::vector<ranked> rank_candidates(const std::vector<candidate>& cs, const cluster_needs& n, const constraints& k) {
    const double v = clamp01(std::log10(std::max<double>(1, static_cast<double>(n.size))) / 4);
    const double w_q = 0.40 - 0.15 * v, w_e = 0.10 + 0.15 * v, w_t = 0.15, w_l = 0.20, w_c = 0.05, w_o = 0.10;
    const double t = clamp01(n.tool_share);
    std::vector<ranked> ok, filtered;
    for (const auto& c : cs) {
        ranked r;
        r.c = c;
        if (auto why = violation(c, n, k)) {
            r.filtered = true;
            r.why = *why;
            filtered.push_back(std::move(r));
            continue;
        }
        const double lp = std::log10(std::max<double>(1, static_cast<double>(c.params)));
        std::vector<std::string> why;
        // task: what the cluster's answers are
        if (t >= 0.05)
            why.push_back(fmt::format("needs tools ({:.0f}% tool calls){}", 100 * t,
                                      c.tool_calling ? "; native tool calling" : "; no native tool calling"));
        else if (n.json_share >= 0.5)
            why.push_back(fmt::format("structured output ({:.0f}% JSON)", 100 * n.json_share));
        else if (n.code_share >= 0.5)
            why.push_back(fmt::format("code answers ({:.0f}%)", 100 * n.code_share));
        else
            why.push_back(fmt::format("open-ended text ({:.0f}% prose)", 100 * n.prose_share));
        why.push_back(fmt::format("p95 prompt {} tokens", human_tokens(n.p95_prompt)));
        // quality
        double quality;
        std::string qsrc;
        if (c.probe) {
            quality = clamp01(c.probe->quality);
            qsrc = "measured";
            why.push_back(fmt::format("probe {:.2f} on {} calls ({}), {:.0f} tok/s here", c.probe->quality, c.probe->calls,
                                      c.probe->metric, c.probe->tokens_per_s));
        } else if (c.bfcl || c.ifeval) {
            const double b = (c.bfcl ? *c.bfcl : *c.ifeval) / 100, i = (c.ifeval ? *c.ifeval : *c.bfcl) / 100;
            quality = clamp01(t * b + (1 - t) * i);
            qsrc = "published";
            std::string pub;
            if (c.bfcl) pub += fmt::format("BFCL {:.1f}", *c.bfcl);
            if (c.ifeval) pub += fmt::format("{}IFEval {:.1f}", pub.empty() ? "" : ", ", *c.ifeval);
            why.push_back("published " + pub);
        } else {
            quality = 0.7 * clamp01((lp - 8) / 2);
            qsrc = "size prior";
        }
        // efficiency
        double eff;
        std::string esrc;
        if (c.probe && c.probe->tokens_per_s > 0) {
            eff = clamp01(std::log10(c.probe->tokens_per_s) / std::log10(200.0));
            esrc = "measured";
        } else {
            eff = 1 - clamp01((lp - 8) / 2);
            esrc = "size";
        }
        const double tool_fit = 1 - t * (c.tool_calling ? 0.0 : 1.0);
        const double loadable = c.loadable ? 1.0 : 0.0;
        const double context = c.context_length > 0 && n.needed_context > 0
                                   ? clamp01(std::log2(static_cast<double>(c.context_length) / n.needed_context) / 3)
                                   : (c.context_length > 0 ? 1.0 : 0.0);
        const double licence = licence_score(c.license_kind);
        r.score = w_q * quality + w_e * eff + w_t * tool_fit + w_l * loadable + w_c * context + w_o * licence;
        why.push_back(fmt::format("fits {} in 4-bit", human_gb(runtime_bytes(c.params))));
        why.push_back(c.loadable ? (c.path.empty() ? "loadable by slmctl (not on disk)" : "loadable, on disk")
                                 : "not loadable by slmctl's model/ (" + c.architecture + ")");
        if (c.license_kind != "open") why.push_back(fmt::format("licence {} ({})", c.license, c.license_kind));
        r.why = fmt::format("{}", fmt::join(why, "; "));
        r.factors = {{"quality", r3(quality)},   {"quality_from", qsrc}, {"efficiency", r3(eff)},
                     {"efficiency_from", esrc},  {"tool_fit", r3(tool_fit)}, {"loadable", loadable},
                     {"context", r3(context)},   {"licence", licence},
                     {"weights", {{"quality", r3(w_q)}, {"efficiency", r3(w_e)}, {"tool_fit", w_t}, {"loadable", w_l},
                                  {"context", w_c}, {"licence", w_o}}}};
        ok.push_back(std::move(r));
    }
    std::stable_sort(ok.begin(), ok.end(), [](const ranked& a, const ranked& b) {
        if (a.score != b.score) return a.score > b.score;
        if (a.c.path.empty() != b.c.path.empty()) return !a.c.path.empty();  // a local copy first
        return a.c.name < b.c.name;
    });
    for (size_t i = 0; i < ok.size(); ++i) ok[i].rank = static_cast<int>(i + 1);
    std::stable_sort(filtered.begin(), filtered.end(), [](const ranked& a, const ranked& b) { return a.c.name < b.c.name; });
    ok.insert(ok.end(), std::make_move_iterator(filtered.begin()), std::make_move_iterator(filtered.end()));
    return ok;
}

}  // namespace slm::select
