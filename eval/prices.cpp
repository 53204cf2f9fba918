// LLM and SLM prices per 1M tokens (the defaults, as eval/prices.json, kept equal by a test), the
// price file loader with field-naming errors, and the cost saving of moving calls to the SLM.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/metrics.h"

namespace slm::eval {

using ojson = nlohmann::ordered_json;

namespace {

// The text of eval/prices.json (tests/eval checks that the two are the same table).
constexpr std::string_view default_prices_json = R"PRICES({
  "version": 1,
  "currency": "USD",
  "unit": "per 1M tokens",
  "slm": "slm-self-hosted",
  "models": {
    "gpt-4o": {"input": 2.50, "output": 10.00, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "gpt-4o-mini": {"input": 0.15, "output": 0.60, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "gpt-4.1": {"input": 2.00, "output": 8.00, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "o3": {"input": 2.00, "output": 8.00, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "o4-mini": {"input": 1.10, "output": 4.40, "source": "https://openai.com/api/pricing/", "as_of": "2025-07-01"},
    "claude-opus-4": {"input": 15.00, "output": 75.00, "source": "https://www.anthropic.com/pricing#api", "as_of": "2025-07-01"},
    "claude-sonnet-4": {"input": 3.00, "output": 15.00, "source": "https://www.anthropic.com/pricing#api", "as_of": "2025-07-01"},
    "claude-3-7-sonnet": {"input": 3.00, "output": 15.00, "source": "https://www.anthropic.com/pricing#api", "as_of": "2025-07-01"},
    "claude-3-5-sonnet": {"input": 3.00, "output": 15.00, "source": "https://www.anthropic.com/pricing#api", "as_of": "2025-07-01"},
    "claude-3-5-haiku": {"input": 0.80, "output": 4.00, "source": "https://www.anthropic.com/pricing#api", "as_of": "2025-07-01"},
    "gemini-2.5-pro": {"input": 1.25, "output": 10.00, "source": "https://ai.google.dev/gemini-api/docs/pricing (prompts up to 200k tokens)", "as_of": "2025-07-01"},
    "gemini-2.5-flash": {"input": 0.30, "output": 2.50, "source": "https://ai.google.dev/gemini-api/docs/pricing", "as_of": "2025-07-01"},
    "gemini-2.0-flash": {"input": 0.10, "output": 0.40, "source": "https://ai.google.dev/gemini-api/docs/pricing", "as_of": "2025-07-01"},
    "slm-self-hosted": {"input": 0.02, "output": 0.07, "assumption": true, "source": "assumption, not a published price: one rented H100 at USD 2.50/h serving a 1-3B model with vLLM, batched, at about 40k prompt and 10k output tokens/s (2.50 / (3600 * 40000) * 1e6 = 0.017; 2.50 / (3600 * 10000) * 1e6 = 0.069); override it with your own figures", "as_of": "2025-07-01"}
  }
}
)PRICES";

constexpr const char* format_hint =
    "a price file looks like eval/prices.json: {\"slm\": \"name\", \"models\": {\"name\": {\"input\": USD per 1M, "
    "\"output\": USD per 1M, \"source\": \"...\", \"as_of\": \"YYYY-MM-DD\"}}}";

double price_field(const ojson& e, const char* key, const std::string& where) {
    auto it = e.find(key);
    if (it == e.end()) throw user_error(fmt::format("{}.{} is missing", where, key), format_hint);
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0)
        throw user_error(fmt::format("{}.{}: expected a number >= 0 (USD per 1M tokens), got {}", where, key, it->dump()),
                         format_hint);
    return it->get<double>();
}

std::string string_field(const ojson& e, const char* key, const std::string& where, std::string fallback) {
    auto it = e.find(key);
    if (it == e.end()) return fallback;
    if (!it->is_string()) throw user_error(fmt::format("{}.{}: expected a string, got {}", where, key, it->dump()), format_hint);
    return it->get<std::string>();
}

}  // namespace

const model_price* price_table::find(std::string_view model) const {
    if (auto slash = model.rfind('/'); slash != std::string_view::npos) model = model.substr(slash + 1);
    const model_price* best = nullptr;
    for (const auto& m : models) {
        if (m.model == model) return &m;
        if (model.size() > m.model.size() && model.substr(0, m.model.size()) == m.model) {
            char next = model[m.model.size()];
            if ((next == '-' || next == '@' || next == ':') && (!best || m.model.size() > best->model.size())) best = &m;
        }
    }
    return best;
}

ojson price_table::to_json() const {
    ojson j;
    j["version"] = 1;
    j["currency"] = "USD";
    j["unit"] = "per 1M tokens";
    j["slm"] = slm;
    auto& ms = j["models"] = ojson::object();
    for (const auto& m : models) {
        ojson e;
        e["input"] = m.input_per_m;
        e["output"] = m.output_per_m;
        if (m.assumption) e["assumption"] = true;
        e["source"] = m.source;
        e["as_of"] = m.as_of;
        ms[m.model] = std::move(e);
    }
    return j;
}

price_table parse_prices(std::string_view text, const std::string& origin) {
    ojson j;
    try {
        j = ojson::parse(text.begin(), text.end());
    } catch (const ojson::parse_error& e) {
        throw user_error(fmt::format("{}: not valid JSON ({})", origin, e.what()), format_hint);
    }
    if (!j.is_object()) throw user_error(fmt::format("{}: expected a JSON object at the top", origin), format_hint);
    price_table t;
    t.slm.clear();
    for (const auto& [k, v] : j.items()) {
        if (k == "version") {
            if (v != 1) throw user_error(fmt::format("{}: version: expected 1, got {}", origin, v.dump()), format_hint);
        } else if (k == "currency") {
            if (v != "USD")
                throw user_error(fmt::format("{}: currency: only \"USD\" is supported, got {}", origin, v.dump()),
                                 "convert the prices to USD");
        } else if (k == "unit") {
            if (v != "per 1M tokens")
                throw user_error(fmt::format("{}: unit: expected \"per 1M tokens\", got {}", origin, v.dump()), format_hint);
        } else if (k == "slm") {
            if (!v.is_string() || v.get<std::string>().empty())
                throw user_error(fmt::format("{}: slm: expected the name of a models entry, got {}", origin, v.dump()),
                                 format_hint);
            t.slm = v.get<std::string>();
        } else if (k == "models") {
            if (!v.is_object())
                throw user_error(fmt::format("{}: models: expected an object keyed by model name", origin), format_hint);
            for (const auto& [name, e] : v.items()) {
                std::string where = fmt::format("{}: models.{}", origin, name);
                if (!e.is_object()) throw user_error(fmt::format("{}: expected an object", where), format_hint);
                for (const auto& [f, _] : e.items())
                    if (f != "input" && f != "output" && f != "source" && f != "as_of" && f != "assumption")
                        throw user_error(fmt::format("{}.{}: unknown field", where, f),
                                         "the fields are input, output, source, as_of, assumption");
                model_price p;
                p.model = name;
                p.input_per_m = price_field(e, "input", where);
                p.output_per_m = price_field(e, "output", where);
                p.source = string_field(e, "source", where, origin);
                p.as_of = string_field(e, "as_of", where, "");
                if (auto a = e.find("assumption"); a != e.end()) {
                    if (!a->is_boolean())
                        throw user_error(fmt::format("{}.assumption: expected true or false, got {}", where, a->dump()),
                                         format_hint);
                    p.assumption = a->get<bool>();
                }
                t.models.push_back(std::move(p));
            }
        } else {
            throw user_error(fmt::format("{}: {}: unknown field", origin, k),
                             "the fields are version, currency, unit, slm, models");
        }
    }
    return t;
}

price_table default_prices() {
    static const price_table t = [] {
        auto p = parse_prices(default_prices_json, "built-in prices");
        SLM_ASSERT(!p.slm.empty() && p.find(p.slm), "built-in prices have no SLM entry '{}'", p.slm);
        return p;
    }();
    return t;
}

price_table load_prices(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot read price file '{}'", path), "check the path given to --prices");
    std::stringstream ss;
    ss << f.rdbuf();
    price_table user = parse_prices(ss.str(), path);
    price_table t = default_prices();
    for (auto& m : user.models) {
        auto it = std::find_if(t.models.begin(), t.models.end(), [&](const model_price& x) { return x.model == m.model; });
        if (it != t.models.end()) *it = std::move(m);
        else t.models.push_back(std::move(m));
    }
    if (!user.slm.empty()) t.slm = user.slm;
    bool found = std::any_of(t.models.begin(), t.models.end(), [&](const model_price& x) { return x.model == t.slm; });
    if (!found)
        throw user_error(fmt::format("{}: slm: '{}' is not a models entry (of the file or the defaults)", path, t.slm),
                         "add it under models with its input and output prices");
    return t;
}

cost_estimate cost_saving(const model_price& llm, const model_price& slm, int64_t input_tokens, int64_t output_tokens) {
    SLM_ASSERT(input_tokens >= 0 && output_tokens >= 0, "tokens {} / {}", input_tokens, output_tokens);
    cost_estimate c;
    c.llm_usd = (double(input_tokens) * llm.input_per_m + double(output_tokens) * llm.output_per_m) / 1e6;
    c.slm_usd = (double(input_tokens) * slm.input_per_m + double(output_tokens) * slm.output_per_m) / 1e6;
    c.saving_usd = c.llm_usd - c.slm_usd;
    c.saving_share = c.llm_usd > 0 ? c.saving_usd / c.llm_usd : 0.0;
    return c;
}

}  // namespace slm::eval
