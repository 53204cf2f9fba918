// The response classifier (see response-kind.h for the rules). JSON is checked with nlohmann's
// non-building acceptor, only for texts that start like an object or an array.
#include "common/response-kind.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "common/text.h"

namespace slm {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

bool is_json_container(std::string_view t) {
    return !t.empty() && (t.front() == '{' || t.front() == '[') && nlohmann::json::accept(t.begin(), t.end());
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
    return true;
}

// First lines that open a program or a query.
constexpr std::string_view k_code_starts[] = {"def ",      "class ",   "import ",  "from ",   "#include", "function ",
                                              "package ",  "public ",  "SELECT ",  "CREATE ", "const ",   "#!/"};

bool opens_program(std::string_view line) {
    for (auto cs : k_code_starts)
        if (starts_with(line, cs)) return true;
    return false;
}

// A line that reads as a statement of Python, C-like languages, JS or SQL.
bool statement_like(std::string_view line) {
    const char last = line.back();
    if (last == ';' || last == '{' || last == '}' || last == ')') return true;
    if (last == ':' && (starts_with(line, "if ") || starts_with(line, "for ") || starts_with(line, "elif ") ||
                        starts_with(line, "else") || starts_with(line, "while ") || starts_with(line, "try")))
        return true;
    return opens_program(line) || starts_with(line, "return ") || starts_with(line, "let ") ||
           starts_with(line, "assert ");
}

}  // namespace

const char* response_kind_name(response_kind k) {
    switch (k) {
        case response_kind::tool_call: return "tool_call";
        case response_kind::json: return "json";
        case response_kind::code: return "code";
        case response_kind::prose: return "prose";
        case response_kind::empty: return "empty";
    }
    return "?";
}

response_kind classify_response(std::string_view text, std::string_view tool_calls_json) {
    const auto tc = trim_space(tool_calls_json);
    if (!tc.empty() && tc != "[]" && tc != "null") return response_kind::tool_call;
    const auto t = trim_space(text);
    if (t.empty()) return response_kind::empty;
    if (is_json_container(t)) return response_kind::json;
    // one fenced block and nothing else: ```json {...}``` (or an untagged fence) is JSON
    if (starts_with(t, "```") && t.size() >= 6 && t.substr(t.size() - 3) == "```") {
        const auto inner = t.substr(3, t.size() - 6);
        if (inner.find("```") == std::string_view::npos) {
            const size_t nl = inner.find('\n');
            const auto lang = trim_space(inner.substr(0, nl == std::string_view::npos ? inner.size() : nl));
            const auto body = nl == std::string_view::npos ? std::string_view() : trim_space(inner.substr(nl + 1));
            if ((lang.empty() || iequals(lang, "json")) && is_json_container(body)) return response_kind::json;
        }
        return response_kind::code;
    }
    if (t.find("```") != std::string_view::npos) return response_kind::code;
    int lines = 0, statements = 0;
    for (size_t pos = 0; pos <= t.size();) {
        size_t e = t.find('\n', pos);
        if (e == std::string_view::npos) e = t.size();
        const auto line = trim_space(t.substr(pos, e - pos));
        if (!line.empty()) {
            if (lines == 0 && opens_program(line)) return response_kind::code;
            ++lines;
            statements += statement_like(line);
        }
        pos = e + 1;
    }
    if (lines >= 3 && statements * 2 >= lines) return response_kind::code;
    return response_kind::prose;
}

}  // namespace slm
