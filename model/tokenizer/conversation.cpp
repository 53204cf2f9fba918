// Stored calls -> conversations (the OpenAI message forms the collector keeps), and conversations
// -> token ids with the loss mask boundary, dropping the oldest history exchanges to fit.
#include "model/conversation.h"

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "common/text.h"
#include "model/response-codec.h"
#include "model/tokenizer.h"

namespace slm::model {

namespace {

using json = nlohmann::json;

constexpr const char* k_hint = "the call's stored JSON is not in the form slmctl collect writes; re-collect it";

json parse_field(std::string_view text, const char* field) {
    json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (v.is_discarded())
        throw user_error(fmt::format("{} is not valid JSON", field), k_hint);
    return v;
}

std::string dump(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

// Arguments as text: a JSON string is OpenAI's wire form (canonicalised when it holds JSON, else
// kept); an object (or other JSON) is dumped canonically; missing/null -> "{}".
std::string arguments_text(const json* a) {
    if (!a || a->is_null()) return "{}";
    if (a->is_string()) {
        const std::string& s = a->get_ref<const std::string&>();
        return trim_space(s).empty() ? "{}" : canonical_json(s);
    }
    return dump(*a);
}

const std::string* string_member(const json& o, const char* key, const std::string& where, bool required) {
    auto it = o.find(key);
    if (it == o.end() || it->is_null()) {
        if (required) throw user_error(fmt::format("{}.{} is missing", where, key), k_hint);
        return nullptr;
    }
    if (!it->is_string())
        throw user_error(fmt::format("{}.{} is a {}, not a string", where, key, it->type_name()), k_hint);
    return &it->get_ref<const std::string&>();
}

bool is_text_part(const std::string& type) { return type == "text" || type == "input_text" || type == "output_text"; }

std::string content_text(const json& m, const std::string& where) {
    auto it = m.find("content");
    if (it == m.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (!it->is_array())
        throw user_error(fmt::format("{}.content is a {}, not a string or a list of parts", where, it->type_name()),
                         k_hint);
    std::string out;
    bool first = true;
    for (size_t j = 0; j < it->size(); ++j) {
        const json& part = (*it)[j];
        const std::string* text = nullptr;
        if (part.is_string()) {
            text = &part.get_ref<const std::string&>();
        } else if (part.is_object()) {
            auto t = part.find("type");
            const std::string type = t != part.end() && t->is_string() ? t->get<std::string>() : std::string();
            auto tx = part.find("text");
            if (is_text_part(type) && tx != part.end() && tx->is_string()) text = &tx->get_ref<const std::string&>();
            else
                throw user_error(fmt::format("{}.content[{}] is a '{}' part: a text model cannot be given it", where, j,
                                             type.empty() ? part.type_name() : type),
                                 "train only on text calls (exclude the cluster's calls with images or files)");
        } else {
            throw user_error(fmt::format("{}.content[{}] is a {}, not a part", where, j, part.type_name()), k_hint);
        }
        if (!first) out += '\n';
        first = false;
        out += *text;
    }
    return out;
}

tool_call read_tool_call(const json& tc, const std::string& where) {
    if (!tc.is_object()) throw user_error(fmt::format("{} is a {}, not an object", where, tc.type_name()), k_hint);
    tool_call out;
    if (const std::string* id = string_member(tc, "id", where, false)) out.id = *id;
    const json* holder = &tc;
    std::string at = where;
    if (auto fn = tc.find("function"); fn != tc.end() && fn->is_object()) {
        holder = &*fn;
        at = where + ".function";
    }
    out.name = *string_member(*holder, "name", at, true);
    if (out.name.empty()) throw user_error(fmt::format("{}.name is empty", at), k_hint);
    auto a = holder->find("arguments");
    out.arguments = arguments_text(a == holder->end() ? nullptr : &*a);
    return out;
}

chat_message read_message(const json& m, size_t i) {
    const std::string where = fmt::format("messages[{}]", i);
    if (!m.is_object()) throw user_error(fmt::format("{} is a {}, not an object", where, m.type_name()), k_hint);
    chat_message out;
    out.role = *string_member(m, "role", where, true);
    if (out.role == "developer") out.role = "system";  // OpenAI's newer name for the same turn
    if (out.role == "function") out.role = "tool";     // legacy function results
    out.content = content_text(m, where);
    if (auto tcs = m.find("tool_calls"); tcs != m.end() && !tcs->is_null()) {
        if (!tcs->is_array())
            throw user_error(fmt::format("{}.tool_calls is a {}, not an array", where, tcs->type_name()), k_hint);
        for (size_t j = 0; j < tcs->size(); ++j)
            out.tool_calls.push_back(read_tool_call((*tcs)[j], fmt::format("{}.tool_calls[{}]", where, j)));
    } else if (auto fc = m.find("function_call"); fc != m.end() && fc->is_object()) {
        out.tool_calls.push_back(read_tool_call(*fc, where + ".function_call"));
    }
    if (const std::string* id = string_member(m, "tool_call_id", where, false)) out.tool_call_id = *id;
    if (const std::string* n = string_member(m, "name", where, false)) out.name = *n;
    return out;
}

}  // namespace

conversation conversation_from_call(const logged_call& c) {
    conversation out;
    const json msgs = parse_field(c.messages_json, "messages");
    if (!msgs.is_array())
        throw user_error(fmt::format("messages is a {}, not an array", msgs.type_name()), k_hint);
    out.messages.reserve(msgs.size());
    for (size_t i = 0; i < msgs.size(); ++i) out.messages.push_back(read_message(msgs[i], i));

    if (!trim_space(c.tools_json).empty()) {
        const json tools = parse_field(c.tools_json, "tools");
        if (!tools.is_null() && !tools.is_array())
            throw user_error(fmt::format("tools is a {}, not an array", tools.type_name()), k_hint);
        if (tools.is_array() && !tools.empty()) out.tools_json = std::string(c.tools_json);
    }

    out.response.role = "assistant";
    if (c.response_text) out.response.content = std::string(*c.response_text);
    if (!trim_space(c.response_tool_calls_json).empty()) {
        const json tcs = parse_field(c.response_tool_calls_json, "response_tool_calls");
        if (!tcs.is_null() && !tcs.is_array())
            throw user_error(fmt::format("response_tool_calls is a {}, not an array", tcs.type_name()), k_hint);
        if (tcs.is_array())
            for (size_t j = 0; j < tcs.size(); ++j)
                out.response.tool_calls.push_back(read_tool_call(tcs[j], fmt::format("response_tool_calls[{}]", j)));
    }
    return out;
}

encoded_example encode_conversation(const tokenizer& tok, const chat_template& tmpl, const conversation& c,
                                    const encode_options& o) {
    const auto& msgs = c.messages;
    const response_codec codec = response_codec::for_format(tmpl.format());
    const std::string target_text = o.with_target ? codec.target(c.response) : std::string();
    auto encode = [&](const std::string& text) { return tok.encode(text, /*add_special=*/false, /*parse_special=*/true); };
    // Llama-2's target starts with a space: SentencePiece encodes it with the prompt as "▁answer",
    // but alone as "▁▁answer" (its prefix space), so take the joint text's ids after the prompt.
    const bool joint_target = o.with_target && tmpl.format() == chat_format::llama2;
    const std::vector<int32_t> separate_target = o.with_target && !joint_target ? encode(target_text) : std::vector<int32_t>();

    // [0, head): system; [head, tail): history, dropped in exchanges; [tail, end): the last user
    // message and what follows it.
    const size_t head = !msgs.empty() && msgs[0].role == "system" ? 1 : 0;
    size_t tail = msgs.size();
    while (tail > head && msgs[tail - 1].role != "user") --tail;
    if (tail > head) --tail;  // the last user message itself
    else tail = head;         // no user message: nothing is history
    std::vector<size_t> starts;  // start of each history exchange: a user message, or the history's first message
    for (size_t i = head; i < tail; ++i)
        if (i == head || msgs[i].role == "user") starts.push_back(i);

    encoded_example ex;
    for (size_t dropped = 0;; ++dropped) {
        const size_t from = dropped < starts.size() ? starts[dropped] : tail;
        std::vector<chat_message> kept(msgs.begin(), msgs.begin() + static_cast<long>(head));
        kept.insert(kept.end(), msgs.begin() + static_cast<long>(from), msgs.end());
        const std::string prompt_text = tmpl.render(kept, /*add_generation_prompt=*/true, c.tools_json);
        ex.ids = encode(prompt_text);
        ex.prompt_len = static_cast<int64_t>(ex.ids.size());
        if (joint_target) {
            std::vector<int32_t> all = encode(prompt_text + target_text);
            if (all.size() >= ex.ids.size() && std::equal(ex.ids.begin(), ex.ids.end(), all.begin())) {
                ex.ids = std::move(all);
            } else {
                const auto t = encode(target_text);
                ex.ids.insert(ex.ids.end(), t.begin(), t.end());
            }
        } else {
            ex.ids.insert(ex.ids.end(), separate_target.begin(), separate_target.end());
        }
        ex.cut_turns = static_cast<int>(from - head);
        if (static_cast<int64_t>(ex.ids.size()) <= o.max_tokens) {
            ex.fits = true;
            return ex;
        }
        if (from == tail) {
            ex.fits = false;
            return ex;
        }
    }
}

}  // namespace slm::model
