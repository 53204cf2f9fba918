// Structured-output checks: JSON validity of a response and a practical JSON Schema subset
// validator for the request's response_format schema (unknown keywords ignored and counted).
#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "common/common.h"
#include "common/text.h"
#include "eval/metrics.h"

namespace slm::eval {

using nlohmann::json;

namespace {

const std::set<std::string, std::less<>>& checked_keywords() {
    static const std::set<std::string, std::less<>> k = {
        "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "oneOf",
        "allOf", "not", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
        "uniqueItems", "minLength", "maxLength", "pattern", "$ref"};
    return k;
}
const std::set<std::string, std::less<>>& annotation_keywords() {
    static const std::set<std::string, std::less<>> k = {
        "title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs", "definitions",
        "deprecated", "readOnly", "writeOnly"};
    return k;
}

/// Counts keywords we neither check nor know as annotations, walking every subschema.
void count_unknown(const json& s, std::map<std::string, int>& unknown) {
    if (!s.is_object()) return;
    for (const auto& [k, v] : s.items()) {
        if (checked_keywords().count(k) == 0 && annotation_keywords().count(k) == 0) ++unknown[k];
        if ((k == "properties" || k == "$defs" || k == "definitions") && v.is_object()) {
            for (const auto& [_, sub] : v.items()) count_unknown(sub, unknown);
        } else if ((k == "anyOf" || k == "oneOf" || k == "allOf") && v.is_array()) {
            for (const auto& sub : v) count_unknown(sub, unknown);
        } else if (k == "items" || k == "additionalProperties" || k == "not") {
            count_unknown(v, unknown);
        }
    }
}

size_t code_points(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

std::string dump_short(const json& v) {
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 60) s = std::string(utf8_cut(s, 57)) + "...";
    return s;
}

bool is_integral(const json& v) {
    if (v.is_number_integer()) return true;
    if (!v.is_number_float()) return false;
    double d = v.get<double>();
    return std::isfinite(d) && d == std::floor(d);
}

bool has_type(const json& v, std::string_view t) {
    if (t == "string") return v.is_string();
    if (t == "integer") return is_integral(v);
    if (t == "number") return v.is_number();
    if (t == "boolean") return v.is_boolean();
    if (t == "array") return v.is_array();
    if (t == "object") return v.is_object();
    if (t == "null") return v.is_null();
    return true;  // unknown type names do not reject
}

/// JSON equality with numbers by value (1 == 1.0), as JSON Schema's enum/const/uniqueItems want.
bool json_equal(const json& a, const json& b) {
    if (a.is_number() && b.is_number()) return a.get<double>() == b.get<double>();
    if (a.type() != b.type()) return false;
    if (a.is_array()) {
        if (a.size() != b.size()) return false;
        for (size_t i = 0; i < a.size(); ++i)
            if (!json_equal(a[i], b[i])) return false;
        return true;
    }
    if (a.is_object()) {
        if (a.size() != b.size()) return false;
        for (const auto& [k, v] : a.items()) {
            auto it = b.find(k);
            if (it == b.end() || !json_equal(v, *it)) return false;
        }
        return true;
    }
    return a == b;
}

class validator {
public:
    explicit validator(const json& root) : root_(root) {}

    /// Empty string when `v` is valid against `s`, else the first violation.
    std::string check(const json& v, const json& s, const std::string& path, int depth = 0) {
        if (depth > 64) return fmt::format("{}: schema nests deeper than 64 levels ($ref cycle?)", path);
        if (s.is_boolean()) return s.get<bool>() ? "" : fmt::format("{}: the schema is false", path);
        if (!s.is_object()) return "";
        if (auto r = s.find("$ref"); r != s.end() && r->is_string()) {
            const json* target = resolve(r->get<std::string>());
            if (!target) return fmt::format("{}: cannot resolve $ref {}", path, r->get<std::string>());
            if (auto e = check(v, *target, path, depth + 1); !e.empty()) return e;
        }
        if (auto t = s.find("type"); t != s.end()) {
            bool ok = true;
            std::string want;
            if (t->is_string()) {
                want = t->get<std::string>();
                ok = has_type(v, want);
            } else if (t->is_array()) {
                ok = false;
                for (const auto& e : *t)
                    if (e.is_string()) {
                        want += (want.empty() ? "" : "|") + e.get<std::string>();
                        ok |= has_type(v, e.get<std::string>());
                    }
            }
            if (!ok) return fmt::format("{}: {} is not of type {}", path, dump_short(v), want);
        }
        if (auto e = s.find("enum"); e != s.end() && e->is_array()) {
            bool found = std::any_of(e->begin(), e->end(), [&](const json& x) { return json_equal(v, x); });
            if (!found) return fmt::format("{}: {} is not one of {}", path, dump_short(v), dump_short(*e));
        }
        if (auto c = s.find("const"); c != s.end() && !json_equal(v, *c))
            return fmt::format("{}: {} is not the constant {}", path, dump_short(v), dump_short(*c));
        if (v.is_number()) {
            double x = v.get<double>();
            auto num = [&](const char* k) -> std::optional<double> {
                auto it = s.find(k);
                if (it == s.end() || !it->is_number()) return std::nullopt;
                return it->get<double>();
            };
            if (auto m = num("minimum"); m && x < *m) return fmt::format("{}: {} < minimum {}", path, dump_short(v), *m);
            if (auto m = num("maximum"); m && x > *m) return fmt::format("{}: {} > maximum {}", path, dump_short(v), *m);
            if (auto m = num("exclusiveMinimum"); m && x <= *m)
                return fmt::format("{}: {} <= exclusiveMinimum {}", path, dump_short(v), *m);
            if (auto m = num("exclusiveMaximum"); m && x >= *m)
                return fmt::format("{}: {} >= exclusiveMaximum {}", path, dump_short(v), *m);
        }
        if (v.is_string()) {
            const auto& str = v.get_ref<const std::string&>();
            size_t n = code_points(str);
            if (auto m = s.find("minLength"); m != s.end() && m->is_number() && double(n) < m->get<double>())
                return fmt::format("{}: {} characters < minLength {}", path, n, dump_short(*m));
            if (auto m = s.find("maxLength"); m != s.end() && m->is_number() && double(n) > m->get<double>())
                return fmt::format("{}: {} characters > maxLength {}", path, n, dump_short(*m));
            if (auto p = s.find("pattern"); p != s.end() && p->is_string()) {
                try {
                    std::regex re(p->get<std::string>(), std::regex::ECMAScript);
                    if (!std::regex_search(str, re))
                        return fmt::format("{}: {} does not match pattern {}", path, dump_short(v), dump_short(*p));
                } catch (const std::regex_error&) {
                    ++bad_patterns_;  // a pattern std::regex cannot read is not held against the answer
                }
            }
        }
        if (v.is_array()) {
            if (auto m = s.find("minItems"); m != s.end() && m->is_number() && double(v.size()) < m->get<double>())
                return fmt::format("{}: {} items < minItems {}", path, v.size(), dump_short(*m));
            if (auto m = s.find("maxItems"); m != s.end() && m->is_number() && double(v.size()) > m->get<double>())
                return fmt::format("{}: {} items > maxItems {}", path, v.size(), dump_short(*m));
            if (auto u = s.find("uniqueItems"); u != s.end() && u->is_boolean() && u->get<bool>())
                for (size_t i = 0; i < v.size(); ++i)
                    for (size_t j = i + 1; j < v.size(); ++j)
                        if (json_equal(v[i], v[j])) return fmt::format("{}: items {} and {} are equal", path, i, j);
            if (auto it = s.find("items"); it != s.end() && (it->is_object() || it->is_boolean()))
                for (size_t i = 0; i < v.size(); ++i)
                    if (auto e = check(v[i], *it, fmt::format("{}[{}]", path, i), depth + 1); !e.empty()) return e;
        }
        if (v.is_object()) {
            if (auto req = s.find("required"); req != s.end() && req->is_array())
                for (const auto& k : *req)
                    if (k.is_string() && !v.contains(k.get<std::string>()))
                        return fmt::format("{}: required property '{}' is missing", path, k.get<std::string>());
            const json* props = nullptr;
            if (auto p = s.find("properties"); p != s.end() && p->is_object()) props = &*p;
            const json* extra = nullptr;
            if (auto a = s.find("additionalProperties"); a != s.end()) extra = &*a;
            for (const auto& [k, sub] : v.items()) {
                std::string sub_path = fmt::format("{}.{}", path, k);
                if (props)
                    if (auto p = props->find(k); p != props->end()) {
                        if (auto e = check(sub, *p, sub_path, depth + 1); !e.empty()) return e;
                        continue;
                    }
                if (extra) {
                    if (extra->is_boolean() && !extra->get<bool>())
                        return fmt::format("{}: property '{}' is not allowed (additionalProperties false)", path, k);
                    if (auto e = check(sub, *extra, sub_path, depth + 1); !e.empty()) return e;
                }
            }
        }
        if (auto a = s.find("allOf"); a != s.end() && a->is_array())
            for (const auto& sub : *a)
                if (auto e = check(v, sub, path, depth + 1); !e.empty()) return e;
        if (auto a = s.find("anyOf"); a != s.end() && a->is_array() && !a->empty()) {
            std::string first;
            bool any = false;
            for (const auto& sub : *a) {
                auto e = check(v, sub, path, depth + 1);
                if (e.empty()) { any = true; break; }
                if (first.empty()) first = e;
            }
            if (!any) return fmt::format("{}: matches none of anyOf (first: {})", path, first);
        }
        if (auto a = s.find("oneOf"); a != s.end() && a->is_array() && !a->empty()) {
            int matched = 0;
            for (const auto& sub : *a) matched += check(v, sub, path, depth + 1).empty();
            if (matched != 1) return fmt::format("{}: matches {} of oneOf's {} schemas, not exactly one", path, matched, a->size());
        }
        if (auto n = s.find("not"); n != s.end() && check(v, *n, path, depth + 1).empty())
            return fmt::format("{}: matches the schema under not", path);
        return "";
    }

    int bad_patterns() const { return bad_patterns_; }

private:
    /// Local references only: "#" and JSON pointers "#/...".
    const json* resolve(const std::string& ref) const {
        if (ref == "#") return &root_;
        if (ref.rfind("#/", 0) != 0) return nullptr;
        try {
            const json& target = root_.at(json::json_pointer(ref.substr(1)));
            return &target;
        } catch (const json::exception&) {
            return nullptr;
        }
    }

    const json& root_;
    int bad_patterns_ = 0;
};

/// The JSON text of a response: trimmed, or the body of one fenced block that is the whole text.
std::string_view unfence(std::string_view text, bool& fenced) {
    std::string_view t = trim_space(text);
    fenced = false;
    if (t.size() >= 6 && t.substr(0, 3) == "```" && t.substr(t.size() - 3) == "```") {
        size_t nl = t.find('\n');
        if (nl == std::string_view::npos || nl >= t.size() - 3) return t;
        std::string_view lang = trim_space(t.substr(3, nl - 3));
        if (!lang.empty() && lang != "json" && lang != "JSON") return t;
        std::string_view body = t.substr(nl + 1, t.size() - 3 - (nl + 1));
        if (body.find("```") != std::string_view::npos) return t;  // several blocks
        fenced = true;
        return trim_space(body);
    }
    return t;
}

}  // namespace

schema_check validate_json_schema(const json& instance, const json& schema) {
    schema_check out;
    std::map<std::string, int> unknown;
    count_unknown(schema, unknown);
    for (const auto& [k, n] : unknown) {
        out.unknown_keywords += n;
        out.unknown_names.push_back(k);
    }
    validator v(schema);
    out.error = v.check(instance, schema, "$");
    out.ok = out.error.empty();
    if (v.bad_patterns()) {
        out.unknown_keywords += v.bad_patterns();
        out.unknown_names.push_back("pattern (one std::regex cannot read)");
        std::sort(out.unknown_names.begin(), out.unknown_names.end());
    }
    return out;
}

structured_check check_structured(std::string_view text, std::string_view response_format_json) {
    structured_check out;
    std::optional<json> schema;
    std::string_view rf = trim_space(response_format_json);
    if (!rf.empty() && rf != "null") {
        json f = json::parse(rf.begin(), rf.end(), nullptr, false);
        if (f.is_discarded() || !f.is_object())
            throw user_error("response_format is not a JSON object",
                             "it should be the request's response_format, e.g. {\"type\":\"json_schema\",...}");
        std::string type = f.contains("type") && f["type"].is_string() ? f["type"].get<std::string>() : "";
        if (type == "json_schema") {
            auto js = f.find("json_schema");
            if (js == f.end() || !js->is_object() || !js->contains("schema"))
                throw user_error("response_format.json_schema.schema is missing",
                                 "OpenAI's form is {\"type\":\"json_schema\",\"json_schema\":{\"name\":...,\"schema\":{...}}}");
            schema = (*js)["schema"];
        } else if (type != "json_object" && type != "text") {
            schema = f;  // a bare JSON schema
        }
    }
    std::string_view body = unfence(text, out.fenced);
    json doc;
    try {
        doc = json::parse(body.begin(), body.end());
        out.json_ok = true;
    } catch (const json::parse_error& e) {
        out.detail = e.what();
    }
    if (schema) {
        out.schema_checked = true;
        auto sc = validate_json_schema(out.json_ok ? doc : json(), *schema);
        out.unknown_keywords = sc.unknown_keywords;
        if (out.json_ok) {
            out.schema_ok = sc.ok;
            out.detail = sc.error;
        }
    }
    return out;
}

}  // namespace slm::eval
