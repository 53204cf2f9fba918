// The candidate catalog: select/catalog.json (data, compiled in through CMake) parsed and checked
// field by field, so a bad edit of the file fails the tests with the field it broke.
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "common/common.h"
#include "select/select.h"

namespace slm::select {

namespace {

using json = nlohmann::json;

constexpr const char* k_schema = "slmctl-select-catalog/1";
const std::set<std::string> k_license_kinds = {"open", "community", "research-only", "non-commercial", "unknown"};

// The text of select/catalog.json, generated at configure time (CMakeLists.txt, select line).
constexpr const char k_builtin[] =
#include "select/catalog-json.inc"
    ;

struct checker {
    const std::string& origin;
    [[noreturn]] void fail(const std::string& field, const std::string& what) const {
        throw user_error(fmt::format("{}: {}: {}", origin, field, what),
                         "fix the catalog entry (schema in select/select.h, catalog_entry); select/catalog.json is the reference");
    }
    const json& get(const json& o, const std::string& path, const char* key) const {
        auto it = o.find(key);
        if (it == o.end()) fail(path + "." + key, "missing");
        return *it;
    }
    std::string str(const json& o, const std::string& path, const char* key, bool nullable = false) const {
        const auto& v = get(o, path, key);
        if (nullable && v.is_null()) return {};
        if (!v.is_string()) fail(path + "." + key, fmt::format("expected a string, got {}", v.type_name()));
        if (!nullable && v.get_ref<const std::string&>().empty()) fail(path + "." + key, "empty");
        return v.get<std::string>();
    }
    int64_t pos_int(const json& o, const std::string& path, const char* key) const {
        const auto& v = get(o, path, key);
        if (!v.is_number_integer() || v.get<int64_t>() <= 0)
            fail(path + "." + key, fmt::format("expected a positive integer, got {}", v.dump()));
        return v.get<int64_t>();
    }
    bool boolean(const json& o, const std::string& path, const char* key) const {
        const auto& v = get(o, path, key);
        if (!v.is_boolean()) fail(path + "." + key, fmt::format("expected true or false, got {}", v.dump()));
        return v.get<bool>();
    }
    double number(const json& o, const std::string& path, const char* key) const {
        const auto& v = get(o, path, key);
        if (!v.is_number()) fail(path + "." + key, fmt::format("expected a number, got {}", v.dump()));
        return v.get<double>();
    }
    std::optional<double> score(const json& o, const std::string& path, const char* key) const {
        const auto& v = get(o, path, key);
        if (v.is_null()) return std::nullopt;
        if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 100)
            fail(path + "." + key, fmt::format("expected null or a score in 0..100, got {}", v.dump()));
        return v.get<double>();
    }
    void date(const std::string& d, const std::string& field) const {
        bool ok = d.size() == 10 && d[4] == '-' && d[7] == '-';
        for (size_t i = 0; ok && i < d.size(); ++i)
            if (i != 4 && i != 7) ok = d[i] >= '0' && d[i] <= '9';
        if (!ok) fail(field, fmt::format("'{}' is not a YYYY-MM-DD date", d));
    }
};

}  // namespace

double memory_gb(int64_t params, bool q4) {
    return static_cast<double>(params) * (q4 ? 5.0 / 8.0 : 2.0) / 1e9;
}

catalog parse_catalog(std::string_view json_text, const std::string& origin) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::parse_error& e) {
        throw user_error(fmt::format("{}: not JSON: {}", origin, e.what()), "check the file with: python3 -m json.tool FILE");
    }
    checker ck{origin};
    if (!j.is_object()) ck.fail("(top level)", "expected an object");
    if (auto s = ck.str(j, "", "schema"); s != k_schema) ck.fail("schema", fmt::format("'{}', expected '{}'", s, k_schema));
    catalog c;
    c.gathered = ck.str(j, "", "gathered");
    ck.date(c.gathered, "gathered");
    c.memory_formula = ck.str(j, "", "memory_formula");
    const auto& models = ck.get(j, "", "models");
    if (!models.is_array() || models.empty()) ck.fail("models", "expected a non-empty array");
    std::set<std::string> ids;
    for (size_t i = 0; i < models.size(); ++i) {
        const std::string p = fmt::format("models[{}]", i);
        const auto& m = models[i];
        if (!m.is_object()) ck.fail(p, "expected an object");
        catalog_entry e;
        e.id = ck.str(m, p, "id");
        if (!ids.insert(e.id).second) ck.fail(p + ".id", fmt::format("'{}' appears twice", e.id));
        e.name = ck.str(m, p, "name");
        e.source = ck.str(m, p, "source");
        if (e.source.rfind("https://", 0) != 0) ck.fail(p + ".source", fmt::format("'{}' is not an https URL", e.source));
        e.gathered = ck.str(m, p, "gathered");
        ck.date(e.gathered, p + ".gathered");
        e.params = ck.pos_int(m, p, "params");
        e.architecture = ck.str(m, p, "architecture");
        e.loadable = ck.boolean(m, p, "loadable");
        e.loadable_note = ck.str(m, p, "loadable_note");
        e.context_length = ck.pos_int(m, p, "context_length");
        e.license = ck.str(m, p, "license");
        e.license_kind = ck.str(m, p, "license_kind");
        if (!k_license_kinds.count(e.license_kind))
            ck.fail(p + ".license_kind", fmt::format("'{}' is not one of open, community, research-only, non-commercial, unknown",
                                                     e.license_kind));
        if (e.license_kind != "open" && !m.contains("license_note"))
            ck.fail(p + ".license_note", fmt::format("missing: a '{}' licence says what it allows", e.license_kind));
        if (m.contains("license_note")) e.license_note = ck.str(m, p, "license_note");
        e.tool_calling = ck.boolean(m, p, "tool_calling");
        e.tool_format = ck.str(m, p, "tool_format", true);
        if (e.tool_calling && e.tool_format.empty())
            ck.fail(p + ".tool_format", "null while tool_calling is true: say which format the model writes");
        const auto& mem = ck.get(m, p, "memory_gb");
        if (!mem.is_object()) ck.fail(p + ".memory_gb", "expected an object {bf16, q4}");
        e.memory_bf16_gb = ck.number(mem, p + ".memory_gb", "bf16");
        e.memory_q4_gb = ck.number(mem, p + ".memory_gb", "q4");
        for (auto [v, q4, key] : {std::tuple{e.memory_bf16_gb, false, "bf16"}, std::tuple{e.memory_q4_gb, true, "q4"}})
            if (std::abs(v - memory_gb(e.params, q4)) > 0.0051)
                ck.fail(fmt::format("{}.memory_gb.{}", p, key),
                        fmt::format("{} GB, but {} params give {:.2f} GB ({})", v, e.params, memory_gb(e.params, q4),
                                    c.memory_formula));
        const auto& sc = ck.get(m, p, "scores");
        if (!sc.is_object()) ck.fail(p + ".scores", "expected an object {bfcl, ifeval, source}");
        e.bfcl = ck.score(sc, p + ".scores", "bfcl");
        e.ifeval = ck.score(sc, p + ".scores", "ifeval");
        e.score_source = ck.str(sc, p + ".scores", "source", true);
        if ((e.bfcl || e.ifeval) && e.score_source.empty())
            ck.fail(p + ".scores.source", "null while a score is set: name where the number was published");
        c.models.push_back(std::move(e));
    }
    return c;
}

const catalog& builtin_catalog() {
    static const catalog c = parse_catalog(k_builtin, "select/catalog.json (built in)");
    return c;
}

catalog load_catalog(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot read catalog {}", path), "check the path given to --catalog");
    std::stringstream ss;
    ss << f.rdbuf();
    return parse_catalog(ss.str(), path);
}

}  // namespace slm::select
