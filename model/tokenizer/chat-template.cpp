// Chat template rendering without a Jinja engine: the formats we train are few, so each is
// written out by hand to match its upstream template byte for byte (see the per-format notes).
#include "model/chat-template.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "common/text.h"
#include "model/tokenizer.h"

namespace slm::model {

namespace {

using ojson = nlohmann::ordered_json;  // tools keep their key order, as Python dicts do

// Python's json.dumps(x, ensure_ascii=False) (what HF's `tojson` filter calls): ", " and ": "
// separators, keys in insertion order, non-ASCII text kept as is. `indent` > 0 pretty-prints.
void py_json(const ojson& v, std::string& out, int indent = 0, int depth = 0) {
    auto newline = [&](int d) {
        if (indent <= 0) return;
        out += '\n';
        out.append(static_cast<size_t>(indent * d), ' ');
    };
    const char* item_sep = indent > 0 ? "," : ", ";
    switch (v.type()) {
        case ojson::value_t::object: {
            if (v.empty()) {
                out += "{}";
                return;
            }
            out += '{';
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!first) out += item_sep;
                first = false;
                newline(depth + 1);
                out += json_quoted(it.key());
                out += ": ";
                py_json(it.value(), out, indent, depth + 1);
            }
            newline(depth);
            out += '}';
            return;
        }
        case ojson::value_t::array: {
            if (v.empty()) {
                out += "[]";
                return;
            }
            out += '[';
            bool first = true;
            for (const auto& e : v) {
                if (!first) out += item_sep;
                first = false;
                newline(depth + 1);
                py_json(e, out, indent, depth + 1);
            }
            newline(depth);
            out += ']';
            return;
        }
        case ojson::value_t::string: {
            out += '"';
            json_escape_into(out, v.get_ref<const std::string&>());  // ensure_ascii=False
            out += '"';
            return;
        }
        case ojson::value_t::boolean: out += v.get<bool>() ? "true" : "false"; return;
        case ojson::value_t::null: out += "null"; return;
        default: out += v.dump(); return;  // numbers
    }
}

std::string py_json(const ojson& v, int indent = 0) {
    std::string s;
    py_json(v, s, indent);
    return s;
}

// A tool call's arguments as the templates print them: `arguments | tojson` where HF passes a
// dict. OpenAI sends a JSON string; text that is not JSON is printed as a JSON string.
std::string arguments_json(const std::string& args) {
    if (args.empty()) return "{}";
    try {
        return py_json(ojson::parse(args));
    } catch (const ojson::exception&) {
        return py_json(ojson(args));
    }
}

ojson parse_tools(std::string_view tools_json) {
    if (tools_json.empty()) return ojson::array();
    ojson tools;
    try {
        tools = ojson::parse(tools_json);
    } catch (const ojson::exception& e) {
        throw user_error(fmt::format("tools are not valid JSON: {}", e.what()),
                         "pass the request's \"tools\" array as OpenAI sends it");
    }
    if (tools.is_null()) return ojson::array();
    if (!tools.is_array())
        throw user_error(fmt::format("tools must be a JSON array, got {}", tools.type_name()),
                         "pass the request's \"tools\" array as OpenAI sends it");
    return tools;
}

std::string trim(std::string_view s) {
    const char* ws = " \t\n\r\f\v";
    const size_t b = s.find_first_not_of(ws);
    if (b == std::string_view::npos) return {};
    const size_t e = s.find_last_not_of(ws);
    return std::string(s.substr(b, e - b + 1));
}

// ---- ChatML, as Qwen2.5's template (SmolLM2's is the same without tools) -------------------

constexpr std::string_view k_qwen_tools_head =
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>";
constexpr std::string_view k_qwen_tools_tail =
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n";

// What follows "<|im_start|>assistant\n": Qwen2.5 prints '<|im_start|>assistant', then '\n' +
// content when there is any, then '\n<tool_call>\n...\n</tool_call>' per call.
std::string chatml_assistant_body(const chat_message& m) {
    std::string out = m.content;
    for (const auto& tc : m.tool_calls) {
        if (!out.empty()) out += '\n';
        out += "<tool_call>\n{\"name\": \"" + tc.name + "\", \"arguments\": " + arguments_json(tc.arguments) +
               "}\n</tool_call>";
    }
    return out;
}

std::string render_chatml(const std::vector<chat_message>& msgs, bool add_gen, const ojson& tools,
                          const std::string& default_system) {
    std::string out;
    const bool first_is_system = !msgs.empty() && msgs[0].role == "system";
    if (!tools.empty()) {
        out += "<|im_start|>system\n";
        out += first_is_system ? msgs[0].content : default_system;
        out += k_qwen_tools_head;
        for (const auto& t : tools) out += "\n" + py_json(t);
        out += k_qwen_tools_tail;
    } else if (first_is_system) {
        out += "<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n";
    } else if (!msgs.empty() && !default_system.empty()) {
        out += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
    }
    for (size_t i = first_is_system ? 1 : 0; i < msgs.size(); ++i) {
        const chat_message& m = msgs[i];
        if (m.role == "tool") {
            if (i == 0 || msgs[i - 1].role != "tool") out += "<|im_start|>user";
            out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
            if (i + 1 == msgs.size() || msgs[i + 1].role != "tool") out += "<|im_end|>\n";
        } else if (m.role == "assistant") {
            out += "<|im_start|>assistant\n" + chatml_assistant_body(m) + "<|im_end|>\n";
        } else {
            out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        }
    }
    if (add_gen) out += "<|im_start|>assistant\n";
    return out;
}

// ---- Llama-3 (Meta-Llama-3-Instruct's template; tools in the system message with Llama-3.1's
// wording, tool results as the "ipython" role) ------------------------------------------------

std::string llama3_assistant_body(const chat_message& m) {
    if (m.tool_calls.empty()) return trim(m.content);
    if (m.tool_calls.size() > 1)
        throw user_error("Llama-3 chat format supports one tool call per assistant turn, got " +
                             std::to_string(m.tool_calls.size()),
                         "split the calls into separate turns or use a ChatML model");
    const auto& tc = m.tool_calls[0];
    return "{\"name\": \"" + tc.name + "\", \"parameters\": " + arguments_json(tc.arguments) + "}";
}

std::string render_llama3(const std::vector<chat_message>& msgs, bool add_gen, const ojson& tools) {
    std::string out = "<|begin_of_text|>";
    auto turn = [&](const std::string& role, const std::string& content) {
        out += "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>";
    };
    size_t start = 0;
    if (!tools.empty()) {
        std::string sys = "Environment: ipython\n";
        if (!msgs.empty() && msgs[0].role == "system") {
            sys += trim(msgs[0].content) + "\n\n";
            start = 1;
        }
        sys += "You have access to the following functions. To call a function, please respond with JSON for a "
               "function call. Respond in the format {\"name\": function name, \"parameters\": dictionary of "
               "argument name and its value}. Do not use variables.\n\n";
        for (const auto& t : tools) sys += py_json(t, 4) + "\n\n";
        turn("system", sys);
    }
    for (size_t i = start; i < msgs.size(); ++i) {
        const chat_message& m = msgs[i];
        if (m.role == "assistant") {
            turn("assistant", llama3_assistant_body(m));
        } else if (m.role == "tool") {
            turn("ipython", m.content);
        } else {
            turn(m.role, m.content);
        }
    }
    if (add_gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
}

// ---- Llama-2 chat ([INST], Meta's Llama-2-chat template) -----------------------------------

std::string render_llama2(const std::vector<chat_message>& msgs, const ojson& tools, const std::string& default_system) {
    if (!tools.empty())
        throw user_error("the Llama-2 [INST] chat format has no way to describe tools",
                         "use a model with a ChatML (Qwen2.5, SmolLM2) or Llama-3 template for tool calls");
    std::string system = default_system;
    size_t start = 0;
    if (!msgs.empty() && msgs[0].role == "system") system = msgs[0].content, start = 1;
    std::string out;
    for (size_t i = start; i < msgs.size(); ++i) {
        const chat_message& m = msgs[i];
        const bool expect_user = (i - start) % 2 == 0;
        if ((m.role == "user") != expect_user || (m.role != "user" && m.role != "assistant"))
            throw user_error(fmt::format("Llama-2 chat needs alternating user/assistant turns after an optional system "
                                         "message; message {} has role '{}'",
                                         i, m.role),
                             "merge consecutive turns, drop tool messages, or use a ChatML model");
        std::string content = m.content;
        if (i == start && !system.empty()) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
        if (m.role == "user") out += "<s>[INST] " + trim(content) + " [/INST]";
        else out += " " + trim(content) + " </s>";
    }
    return out;
}

// The default system prompt a ChatML template inserts: the text of a literal
// '<|im_start|>system\n...<|im_end|>' in the template (SmolLM2, Qwen2.5).
std::string default_system_from(std::string_view jinja) {
    const std::string_view marker = "<|im_start|>system";
    for (size_t at = jinja.find(marker); at != std::string_view::npos; at = jinja.find(marker, at + 1)) {
        size_t p = at + marker.size();
        if (jinja.compare(p, 2, "\\n") == 0) p += 2;
        else if (jinja.compare(p, 1, "\n") == 0) p += 1;
        else continue;
        std::string text;
        for (; p < jinja.size(); ++p) {
            if (jinja.compare(p, 10, "<|im_end|>") == 0) {
                if (!text.empty()) return text;
                break;
            }
            const char c = jinja[p];
            if (c == '\'' || c == '"' || c == '{' || c == '}') break;  // the literal ended: no default here
            if (c == '\\' && p + 1 < jinja.size()) {
                const char e = jinja[++p];
                text += e == 'n' ? '\n' : e;
            } else {
                text += c;
            }
        }
    }
    return {};
}

}  // namespace

std::string render_assistant_body(chat_format format, const chat_message& assistant) {
    switch (format) {
        case chat_format::chatml: return chatml_assistant_body(assistant);
        case chat_format::llama3: return llama3_assistant_body(assistant);
        case chat_format::llama2:
            if (!assistant.tool_calls.empty())
                throw user_error("the Llama-2 [INST] chat format has no way to express tool calls",
                                 "use a model with a ChatML (Qwen2.5, SmolLM2) or Llama-3 template for tool calls");
            return trim(assistant.content);
    }
    SLM_ASSERT(false, "unhandled chat format {}", static_cast<int>(format));
    return {};
}

chat_template::chat_template(chat_format format, std::string default_system)
    : format_(format), default_system_(std::move(default_system)) {
    switch (format_) {
        case chat_format::chatml: stops_ = {"<|im_end|>"}; break;
        case chat_format::llama3: stops_ = {"<|eot_id|>", "<|eom_id|>"}; break;
        case chat_format::llama2: stops_ = {"</s>"}; break;
    }
}

chat_template chat_template::from_jinja(std::string_view jinja) {
    if (jinja.find("<|im_start|>") != std::string_view::npos)
        return chat_template(chat_format::chatml, default_system_from(jinja));
    if (jinja.find("<|start_header_id|>") != std::string_view::npos) return chat_template(chat_format::llama3);
    if (jinja.find("[INST]") != std::string_view::npos) return chat_template(chat_format::llama2);
    if (jinja.empty()) log_verbose("no chat template in the model; using ChatML");
    else log_warn("chat template not recognised (no ChatML, Llama-3 or [INST] markers); using ChatML");
    return chat_template(chat_format::chatml);
}

const char* chat_template::format_name() const {
    switch (format_) {
        case chat_format::chatml: return "chatml";
        case chat_format::llama3: return "llama3";
        case chat_format::llama2: return "llama2";
    }
    return "?";
}

std::string chat_template::render(const std::vector<chat_message>& messages, bool add_generation_prompt,
                                  std::string_view tools_json) const {
    const ojson tools = parse_tools(tools_json);
    switch (format_) {
        case chat_format::chatml: return render_chatml(messages, add_generation_prompt, tools, default_system_);
        case chat_format::llama3: return render_llama3(messages, add_generation_prompt, tools);
        case chat_format::llama2: return render_llama2(messages, tools, default_system_);
    }
    SLM_ASSERT(false, "unhandled chat format {}", static_cast<int>(format_));
    return {};
}

std::vector<int32_t> chat_template::stop_ids(const tokenizer& tok) const {
    std::vector<int32_t> ids = tok.eog_ids();
    for (const auto& s : stops_)
        if (int32_t id = tok.token_id(s); id >= 0) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return ids;
}

}  // namespace slm::model
