// Tool-call accuracy in the manner of BFCL's AST checker: names, counts, schema (required,
// declared, types) and values against the logged LLM's arguments; parallel calls in any order.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "common/text.h"
#include "eval/metrics.h"

namespace slm::eval {

using nlohmann::json;

const char* failure_name(call_failure f) {
    switch (f) {
    case call_failure::none: return "none";
    case call_failure::wrong_name: return "wrong_name";
    case call_failure::wrong_count: return "wrong_count";
    case call_failure::missing_param: return "missing_param";
    case call_failure::unexpected_param: return "unexpected_param";
    case call_failure::wrong_type: return "wrong_type";
    case call_failure::wrong_value: return "wrong_value";
    case call_failure::unparseable: return "unparseable";
    }
    return "?";
}

std::string normalize_tool_string(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (char c : s) {
        switch (c) {
        case ' ': case ',': case '.': case '/': case '-': case '_': case '*': case '^': continue;
        case '\'': out += '"'; continue;
        default: out += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
        }
    }
    return out;
}

namespace {

struct failure {
    call_failure kind = call_failure::none;
    std::string detail;
    explicit operator bool() const { return kind != call_failure::none; }
};

std::string path_key(const std::string& path, const std::string& key) {
    return path.empty() ? fmt::format("'{}'", key) : fmt::format("{}.{}", path, key);
}

std::string short_dump(const json& v) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 80) s = std::string(utf8_cut(s, 77)) + "...";
    return s;
}

// ---- schema types ----------------------------------------------------------------------------

bool is_integral(const json& v) {
    if (v.is_number_integer()) return true;
    if (!v.is_number_float()) return false;
    double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
}

/// True when `v` is of the single schema type `t`; unknown type names accept anything.
bool type_matches(const json& v, const std::string& t) {
    if (t == "string") return v.is_string();
    if (t == "integer") return is_integral(v);
    if (t == "number" || t == "float") return v.is_number();
    if (t == "boolean") return v.is_boolean();
    if (t == "array" || t == "tuple") return v.is_array();
    if (t == "object" || t == "dict") return v.is_object();
    if (t == "null") return v.is_null();
    return true;  // "any" and names we do not know
}

const char* json_type_name(const json& v) {
    if (v.is_string()) return "string";
    if (v.is_number_integer()) return "integer";
    if (v.is_number()) return "number";
    if (v.is_boolean()) return "boolean";
    if (v.is_array()) return "array";
    if (v.is_object()) return "object";
    return "null";
}

/// Checks the types of `v` against `schema` (type, nested items and properties).
failure check_types(const json& v, const json& schema, const std::string& path) {
    if (!schema.is_object()) return {};
    if (auto t = schema.find("type"); t != schema.end()) {
        bool ok = true;
        std::string want;
        if (t->is_string()) {
            ok = type_matches(v, t->get<std::string>());
            want = t->get<std::string>();
        } else if (t->is_array()) {
            ok = false;
            for (const auto& e : *t) {
                if (!e.is_string()) { ok = true; break; }
                want += (want.empty() ? "" : "|") + e.get<std::string>();
                if (type_matches(v, e.get<std::string>())) { ok = true; break; }
            }
        }
        if (!ok)
            return {call_failure::wrong_type,
                    fmt::format("{}: {} is a {}, the schema wants {}", path, short_dump(v), json_type_name(v), want)};
    }
    if (v.is_array()) {
        if (auto it = schema.find("items"); it != schema.end() && it->is_object())
            for (size_t i = 0; i < v.size(); ++i)
                if (auto f = check_types(v[i], *it, fmt::format("{}[{}]", path, i))) return f;
    } else if (v.is_object()) {
        if (auto ps = schema.find("properties"); ps != schema.end() && ps->is_object())
            for (const auto& [k, sub] : v.items())
                if (auto p = ps->find(k); p != ps->end())
                    if (auto f = check_types(sub, *p, path_key(path, k))) return f;
    }
    return {};
}

// ---- values against the reference -------------------------------------------------------------

bool numbers_equal(double a, double b) {
    if (a == b) return true;
    return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b));
}

/// Deep comparison of a generated value with the reference's; `schema` (may be null) only lets an
/// extra object key that equals its declared default pass.
failure compare_values(const json& gen, const json& ref, const json* schema, const std::string& path) {
    if (gen.is_number() && ref.is_number()) {
        if (numbers_equal(gen.get<double>(), ref.get<double>())) return {};
        return {call_failure::wrong_value, fmt::format("{}: {} vs {}", path, short_dump(gen), short_dump(ref))};
    }
    if (gen.type() != ref.type())
        return {call_failure::wrong_type, fmt::format("{}: {} is a {}, the reference has a {} ({})", path, short_dump(gen),
                                                      json_type_name(gen), json_type_name(ref), short_dump(ref))};
    switch (ref.type()) {
    case json::value_t::string:
        if (normalize_tool_string(gen.get_ref<const std::string&>()) == normalize_tool_string(ref.get_ref<const std::string&>()))
            return {};
        return {call_failure::wrong_value, fmt::format("{}: {} vs {}", path, short_dump(gen), short_dump(ref))};
    case json::value_t::boolean:
    case json::value_t::null:
        if (gen == ref) return {};
        return {call_failure::wrong_value, fmt::format("{}: {} vs {}", path, short_dump(gen), short_dump(ref))};
    case json::value_t::array: {
        if (gen.size() != ref.size())
            return {call_failure::wrong_value,
                    fmt::format("{}: {} items vs {} in the reference", path, gen.size(), ref.size())};
        const json* items = nullptr;
        if (schema && schema->is_object())
            if (auto it = schema->find("items"); it != schema->end()) items = &*it;
        for (size_t i = 0; i < ref.size(); ++i)
            if (auto f = compare_values(gen[i], ref[i], items, fmt::format("{}[{}]", path, i))) return f;
        return {};
    }
    case json::value_t::object: {
        const json* props = nullptr;
        if (schema && schema->is_object())
            if (auto it = schema->find("properties"); it != schema->end() && it->is_object()) props = &*it;
        auto sub_schema = [&](const std::string& k) -> const json* {
            if (!props) return nullptr;
            auto it = props->find(k);
            return it == props->end() ? nullptr : &*it;
        };
        for (const auto& [k, rv] : ref.items())
            if (!gen.contains(k))
                return {call_failure::missing_param, fmt::format("{} is missing (the reference has {})", path_key(path, k),
                                                                 short_dump(rv))};
        for (const auto& [k, gv] : gen.items()) {
            auto r = ref.find(k);
            if (r == ref.end()) {
                const json* s = sub_schema(k);
                if (s && s->is_object() && s->contains("default") && compare_values(gv, (*s)["default"], s, "").kind ==
                                                                         call_failure::none)
                    continue;  // an optional parameter set to its default is the same call
                return {call_failure::unexpected_param,
                        fmt::format("{} = {} is not in the reference", path_key(path, k), short_dump(gv))};
            }
            if (auto f = compare_values(gv, *r, sub_schema(k), path_key(path, k))) return f;
        }
        return {};
    }
    default:  // numbers handled above; binary / discarded never come out of parse
        if (gen == ref) return {};
        return {call_failure::wrong_value, fmt::format("{}: {} vs {}", path, short_dump(gen), short_dump(ref))};
    }
}

/// Arguments text -> object; "" (and whitespace) is {}. nullopt when not a JSON object.
std::optional<json> parse_args(std::string_view text) {
    if (trim_space(text).empty()) return json::object();
    json j = json::parse(text.begin(), text.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
}

/// name -> the function's parameters schema, from an OpenAI tools array (or legacy functions).
std::map<std::string, json> read_tool_schemas(std::string_view tools_json) {
    std::map<std::string, json> out;
    if (trim_space(tools_json).empty()) return out;
    json tools = json::parse(tools_json.begin(), tools_json.end(), nullptr, false);
    if (tools.is_discarded() || !tools.is_array()) return out;
    for (const auto& t : tools) {
        if (!t.is_object()) continue;
        const json* fn = &t;
        if (auto f = t.find("function"); f != t.end() && f->is_object()) fn = &*f;
        auto name = fn->find("name");
        if (name == fn->end() || !name->is_string()) continue;
        auto params = fn->find("parameters");
        // a function declared without parameters takes none
        out[name->get<std::string>()] =
            (params != fn->end() && params->is_object()) ? *params : json{{"type", "object"}, {"properties", json::object()}};
    }
    return out;
}

/// One generated call against one reference call.
failure check_one(const model::tool_call& gen, const model::tool_call& ref, const json* params) {
    if (gen.name != ref.name)
        return {call_failure::wrong_name, fmt::format("called '{}', the reference calls '{}'", gen.name, ref.name)};
    auto r = parse_args(ref.arguments);
    if (!r) {  // a broken log line: only the same text can be said to match it
        if (trim_space(gen.arguments) == trim_space(ref.arguments)) return {};
        return {call_failure::unparseable, fmt::format("the reference arguments of '{}' are not a JSON object", ref.name)};
    }
    auto g = parse_args(gen.arguments);
    if (!g)
        return {call_failure::unparseable,
                fmt::format("arguments of '{}' are not a JSON object: {}", gen.name, std::string(utf8_cut(gen.arguments, 80)))};
    if (params) {
        const json* props = nullptr;
        if (auto it = params->find("properties"); it != params->end() && it->is_object()) props = &*it;
        bool open = false;  // additionalProperties true or a schema: undeclared keys allowed
        if (auto ap = params->find("additionalProperties"); ap != params->end())
            open = ap->is_object() || (ap->is_boolean() && ap->get<bool>());
        for (const auto& [k, v] : g->items())
            if (!open && (!props || !props->contains(k)))
                return {call_failure::unexpected_param, fmt::format("{} is not a parameter of '{}'", path_key("", k), gen.name)};
        if (auto req = params->find("required"); req != params->end() && req->is_array())
            for (const auto& k : *req)
                if (k.is_string() && !g->contains(k.get<std::string>()))
                    return {call_failure::missing_param,
                            fmt::format("required {} is missing", path_key("", k.get<std::string>()))};
        if (props)
            for (const auto& [k, v] : g->items())
                if (auto p = props->find(k); p != props->end())
                    if (auto f = check_types(v, *p, path_key("", k))) return f;
    }
    return compare_values(*g, *r, params, "");
}

}  // namespace

tool_check check_tool_calls(const std::vector<model::tool_call>& generated,
                            const std::vector<model::tool_call>& reference, std::string_view tools_json,
                            std::string_view parse_error) {
    tool_check out;
    auto schemas = read_tool_schemas(tools_json);
    std::vector<bool> taken(generated.size(), false);
    bool all_pass = true;
    for (const auto& ref : reference) {
        call_check c;
        c.name = ref.name;
        auto s = schemas.find(ref.name);
        const json* params = s == schemas.end() ? nullptr : &s->second;
        c.schema_missing = params == nullptr;
        out.schema_missing |= c.schema_missing;
        failure first_fail;
        for (size_t i = 0; i < generated.size(); ++i) {
            if (taken[i] || generated[i].name != ref.name) continue;
            c.name_ok = true;
            auto f = check_one(generated[i], ref, params);
            if (!f) {
                taken[i] = true;
                c.args_ok = true;
                break;
            }
            if (!first_fail) first_fail = std::move(f);
        }
        if (!c.args_ok) {
            all_pass = false;
            if (!c.name_ok) {
                std::string names;
                for (size_t i = 0; i < generated.size(); ++i)
                    if (!taken[i]) names += (names.empty() ? "'" : ", '") + generated[i].name + "'";
                first_fail = {call_failure::wrong_name,
                              fmt::format("no call to '{}' (calls left: {})", ref.name, names.empty() ? "none" : names)};
            }
            c.failure = first_fail.kind;
            c.detail = std::move(first_fail.detail);
            if (out.failure == call_failure::none) {
                out.failure = c.failure;
                out.detail = c.detail;
            }
        }
        out.calls.push_back(std::move(c));
    }
    std::vector<std::string> gn, rn;
    for (const auto& g : generated) gn.push_back(g.name);
    for (const auto& r : reference) rn.push_back(r.name);
    std::sort(gn.begin(), gn.end());
    std::sort(rn.begin(), rn.end());
    bool same_count = generated.size() == reference.size();
    out.name_ok = same_count && gn == rn;
    out.args_ok = same_count && all_pass;
    if (!same_count) {
        out.failure = call_failure::wrong_count;
        out.detail = fmt::format("{} call(s), the reference has {}", generated.size(), reference.size());
    }
    if (!parse_error.empty()) {  // a call block the codec could not read: that is the failure
        out.args_ok = false;
        out.failure = call_failure::unparseable;
        out.detail = fmt::format("a generated tool call could not be parsed ({})", parse_error);
    }
    return out;
}

void tool_tally::add(const tool_check& c) {
    ++responses;
    name_ok += c.name_ok;
    args_ok += c.args_ok;
    if (c.failure != call_failure::none) ++failures[c.failure];
    schema_missing += c.schema_missing;
}

nlohmann::ordered_json tool_tally::to_json() const {
    nlohmann::ordered_json j;
    j["responses"] = responses;
    j["name_accuracy"] = responses ? double(name_ok) / double(responses) : 0.0;
    j["args_accuracy"] = responses ? double(args_ok) / double(responses) : 0.0;
    auto& f = j["failures"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : failures) f[failure_name(k)] = v;
    j["schema_missing"] = schema_missing;
    return j;
}

}  // namespace slm::eval
