// The response codecs: render an assistant answer as its chat family prints it (shared with the
// template through render_assistant_body) and read generated text back into text + tool calls.
#include "model/response-codec.h"

#include <algorithm>
#include <array>
#include <span>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "common/text.h"

namespace slm::model {

namespace {

using json = nlohmann::json;  // std::map objects: keys sorted byte-wise, the canonical order

constexpr std::string_view k_open = "<tool_call>";
constexpr std::string_view k_close = "</tool_call>";
constexpr std::string_view k_python_tag = "<|python_tag|>";

std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

bool parse_json(std::string_view text, json& out) {
    out = json::parse(text, nullptr, /*allow_exceptions=*/false);
    return !out.is_discarded();
}

// ```json\n...\n``` around a JSON text -> the inside (trimmed); anything else unchanged.
std::string_view strip_fence(std::string_view s) {
    s = trim_space(s);
    if (s.substr(0, 3) != "```") return s;
    const size_t nl = s.find('\n');
    if (nl == std::string_view::npos) return s;
    std::string_view inner = s.substr(nl + 1);
    inner = trim_space(inner);
    if (inner.size() >= 3 && inner.substr(inner.size() - 3) == "```") inner.remove_suffix(3);
    return trim_space(inner);
}

// Drops end markers (and the whitespace around them) the generation may have kept at the end.
std::string_view strip_end_markers(std::string_view s, chat_format f) {
    static const std::array<std::string_view, 1> chatml = {"<|im_end|>"};
    static const std::array<std::string_view, 2> llama3 = {"<|eot_id|>", "<|eom_id|>"};
    static const std::array<std::string_view, 1> llama2 = {"</s>"};
    std::span<const std::string_view> marks = f == chat_format::chatml   ? std::span<const std::string_view>(chatml)
                                              : f == chat_format::llama3 ? std::span<const std::string_view>(llama3)
                                                                         : std::span<const std::string_view>(llama2);
    for (bool again = true; again;) {
        again = false;
        for (auto m : marks) {
            std::string_view t = s;
            while (!t.empty() && (t.back() == ' ' || t.back() == '\n' || t.back() == '\t' || t.back() == '\r'))
                t.remove_suffix(1);
            if (t.size() >= m.size() && t.substr(t.size() - m.size()) == m) {
                s = t.substr(0, t.size() - m.size());
                again = true;
            }
        }
    }
    return s;
}

std::string_view rtrim(std::string_view s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

void fail(parsed_response& r, const char* kind) {
    if (r.ok) {
        r.ok = false;
        r.error = kind;
    }
}

// The arguments of one call: an object, or a string holding one (OpenAI's wire form).
std::string arguments_of(const json& obj, parsed_response& r) {
    const json* a = nullptr;
    if (auto it = obj.find("arguments"); it != obj.end()) a = &*it;
    else if (auto it2 = obj.find("parameters"); it2 != obj.end()) a = &*it2;
    if (!a || a->is_null()) return "{}";
    if (a->is_object()) return dump(*a);
    if (a->is_string()) {
        const std::string& s = a->get_ref<const std::string&>();
        if (trim_space(s).empty()) return "{}";
        json inner;
        if (parse_json(s, inner)) return dump(inner);
        fail(r, "arguments_not_json");
        return s;
    }
    fail(r, "bad_arguments");
    return dump(*a);
}

// One call object {"name": ..., "arguments"/"parameters": ...} from JSON text; false when malformed.
bool read_call(std::string_view body, parsed_response& r) {
    json v;
    if (!parse_json(strip_fence(body), v)) {
        fail(r, "invalid_json");
        return false;
    }
    if (!v.is_object()) {
        fail(r, "not_an_object");
        return false;
    }
    auto n = v.find("name");
    if (n == v.end() || !n->is_string() || n->get_ref<const std::string&>().empty()) {
        fail(r, "missing_name");
        return false;
    }
    tool_call tc;
    tc.name = n->get<std::string>();
    tc.arguments = arguments_of(v, r);
    r.tool_calls.push_back(std::move(tc));
    return true;
}

void append_text(std::string& text, std::string_view more) {
    if (more.empty()) return;
    if (!text.empty()) text += '\n';
    text += more;
}

parsed_response parse_chatml(std::string_view s) {
    parsed_response r;
    size_t pos = s.find(k_open);
    if (pos == std::string_view::npos) {
        r.text = std::string(s);
        return r;
    }
    r.text = std::string(rtrim(s.substr(0, pos)));
    while (pos != std::string_view::npos) {
        const size_t body = pos + k_open.size();
        const size_t close = s.find(k_close, body);
        const size_t next = s.find(k_open, body);
        const size_t end = std::min({close, next, s.size()});
        read_call(s.substr(body, end - body), r);
        const size_t after = end == close ? close + k_close.size() : end;
        pos = s.find(k_open, after);
        // text between or after the blocks belongs to the answer's text
        append_text(r.text, trim_space(s.substr(after, (pos == std::string_view::npos ? s.size() : pos) - after)));
    }
    return r;
}

bool only_call_keys(const json& v) {
    for (auto it = v.begin(); it != v.end(); ++it)
        if (it.key() != "name" && it.key() != "parameters" && it.key() != "arguments" && it.key() != "type")
            return false;
    return v.contains("name") && (v.contains("parameters") || v.contains("arguments"));
}

parsed_response parse_llama3(std::string_view s) {
    parsed_response r;
    std::string_view t = trim_space(s);
    bool tagged = false;
    if (t.substr(0, k_python_tag.size()) == k_python_tag) {
        t = trim_space(t.substr(k_python_tag.size()));
        tagged = true;
    }
    const std::string_view inner = strip_fence(t);
    if (!inner.empty() && inner.front() == '{') {
        json v;
        if (parse_json(inner, v)) {
            if (v.is_object() && (tagged || only_call_keys(v))) {
                read_call(inner, r);
                return r;
            }
        } else if (tagged || (inner.find("\"parameters\"") != std::string_view::npos &&
                              inner.find("\"name\"") != std::string_view::npos)) {
            fail(r, "invalid_json");
            return r;
        }
    } else if (tagged) {
        fail(r, "invalid_json");
        return r;
    }
    r.text = std::string(t);
    return r;
}

}  // namespace

std::string canonical_json(std::string_view json_text) {
    json v;
    if (trim_space(json_text).empty() || !parse_json(json_text, v)) return std::string(json_text);
    return dump(v);
}

response_codec::response_codec(chat_format f) : format_(f) {
    switch (f) {
        case chat_format::chatml: end_ = "<|im_end|>"; break;
        case chat_format::llama3: end_ = "<|eot_id|>"; break;
        case chat_format::llama2: end_ = " </s>"; break;
    }
}

response_codec response_codec::for_format(chat_format f) { return response_codec(f); }

std::string response_codec::render(const chat_message& assistant) const {
    return render_assistant_body(format_, assistant);
}

std::string response_codec::target(const chat_message& assistant) const {
    std::string body = render(assistant);
    return (format_ == chat_format::llama2 ? " " : "") + body + end_;
}

parsed_response response_codec::parse(std::string_view generated) const {
    const std::string_view s = strip_end_markers(generated, format_);
    switch (format_) {
        case chat_format::chatml: return parse_chatml(s);
        case chat_format::llama3: return parse_llama3(s);
        case chat_format::llama2: {
            parsed_response r;
            r.text = std::string(trim_space(s));
            return r;
        }
    }
    SLM_ASSERT(false, "unhandled chat format {}", static_cast<int>(format_));
    return {};
}

}  // namespace slm::model
