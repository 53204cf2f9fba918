// LLaMA-Factory's dataset forms (ShareGPT conversations with tool calls, Alpaca instruction
// records) rewritten as fine-tuning-form records; normalize.cpp scrubs, hashes and stores them.
#include <string>

#include "collector/json-dom.h"
#include "collector/normalize-internal.h"
#include "common/common.h"
#include "common/text.h"

namespace slm::collector {

using json::kind;
using json::node;

namespace {

void lit(std::string& out, std::string_view s) {
    out.push_back('"');
    json_escape_into(out, s);
    out.push_back('"');
}

const char* kind_name(const node& n) {
    switch (n.k) {
    case kind::null_value: return "null";
    case kind::boolean: return "boolean";
    case kind::number: return "number";
    case kind::string: return "string";
    case kind::array: return "array";
    case kind::object: return "object";
    }
    return "?";
}

bool refuse(llamafactory_calls& out, const char* reason, std::string detail) {
    out.records.clear();
    out.turns.clear();
    out.reason = reason;
    out.detail = std::move(detail);
    return false;
}

// {"role":R,"content":TEXT}
std::string text_message(std::string_view role, std::string_view text) {
    std::string m = "{\"role\":";
    lit(m, role);
    m += ",\"content\":";
    lit(m, text);
    m.push_back('}');
    return m;
}

// The tools of a ShareGPT record in OpenAI form; "" when none. False (with `why`) when unusable.
bool sharegpt_tools(const json::document& d, const node* tools, std::string& out, std::string& why) {
    out.clear();
    if (!tools || tools->k == kind::null_value) return true;
    json::document own;
    const json::document* td = &d;
    const node* list = tools;
    if (tools->k == kind::string) {
        std::string scratch;
        std::string text(trim_space(json::str(*tools, scratch)));
        if (text.empty()) return true;
        if (!own.parse_owned(std::move(text))) {
            why = fmt::format("tools is a string that is not JSON: {} at byte {}", own.error().what, own.error().offset);
            return false;
        }
        td = &own;
        list = &own.root();
    }
    if (list->k == kind::object) {  // one tool given bare
        out = "[";
    } else if (list->k != kind::array) {
        why = fmt::format("tools is a {}, not a JSON list of tools", kind_name(*list));
        return false;
    } else if (list->count == 0) {
        return true;
    }
    std::string tmp;
    size_t i = 0;
    auto one = [&](const node& t) {
        if (!why.empty()) return;
        const node* fn = td->get(t, "function");
        const node* name = td->get(t, "name");
        if (out.size() > 1) out.push_back(',');
        if (fn && fn->k == kind::object) {  // already {"type":"function","function":{...}}
            json::write_compact(*td, t, out);
        } else if (name && name->k == kind::string && name->n > 0) {
            out += "{\"type\":\"function\",\"function\":";
            json::write_compact(*td, t, out);
            out.push_back('}');
        } else {
            why = fmt::format("tools[{}] is not a function definition (an object with a name)", i);
        }
        ++i;
    };
    if (list->k == kind::object) {
        one(*list);
    } else {
        out = "[";
        td->elements(*list, one);
    }
    out.push_back(']');
    if (!why.empty()) return false;
    return true;
}

}  // namespace

bool sharegpt_to_records(const json::document& d, const node& root, llamafactory_calls& out) {
    out = {};
    const node* conv = d.get(root, "conversations");
    if (!conv || conv->k == kind::null_value) return refuse(out, "no_messages", "no conversations");
    if (conv->k != kind::array)
        return refuse(out, "bad_field", fmt::format("conversations is a {}, not a list of turns", kind_name(*conv)));
    if (conv->count == 0) return refuse(out, "no_messages", "conversations is empty");
    std::string scratch;
    const node* system = d.get(root, "system");
    if (system && system->k != kind::string && system->k != kind::null_value)
        return refuse(out, "bad_field", fmt::format("system is a {}, not a string", kind_name(*system)));
    std::string tools, why;
    if (!sharegpt_tools(d, d.get(root, "tools"), tools, why)) return refuse(out, "bad_field", why);

    std::vector<std::string> msgs;  // the conversation so far, as OpenAI messages
    size_t history_bytes = 0;
    if (system && system->k == kind::string && system->n > 0) {
        msgs.push_back(text_message("system", json::str(*system, scratch)));
        history_bytes += msgs.back().size();
    }
    std::vector<std::string> pending;  // tool call ids of the last function_call turn
    size_t answered = 0;
    int calls = 0;
    bool started = false;  // a human turn came (system turns may precede it)
    json::document fc;
    std::string args_text;
    size_t i = 0;
    for (uint32_t at = d.first_child(*conv); at < conv->end; at = d.at(at).end, ++i) {
        const node& t = d.at(at);
        // details start "conversations[i]: " and name the turn (1-based) and its tag
        const std::string where = fmt::format("conversations[{}]", i);
        if (t.k != kind::object) return refuse(out, "bad_field", fmt::format("{}: turn {} is not an object", where, i + 1));
        const node* from = d.get(t, "from");
        const node* value = d.get(t, "value");
        if (!from || from->k != kind::string)
            return refuse(out, "bad_field", fmt::format("{}: 'from' is missing or not a string (turn {})", where, i + 1));
        const std::string tag(json::str(*from, scratch));
        if (!value || value->k != kind::string)
            return refuse(out, "bad_field",
                          fmt::format("{}: 'value' is {}, not a string (turn {}, '{}')", where,
                                      value ? kind_name(*value) : "missing", i + 1, tag));
        const std::string_view text = json::str(*value, scratch);
        const bool answer = tag == "gpt" || tag == "function_call";
        if (!(answer || tag == "human" || tag == "observation" || tag == "system"))
            return refuse(out, "bad_field",
                          fmt::format("{}: unknown role tag '{}' (turn {}; expected human, gpt, function_call, observation or "
                                      "system: tags renamed in a dataset_info.json are not read)", where, tag, i + 1));
        if (!started && tag != "system" && tag != "human")
            return refuse(out, "bad_field",
                          fmt::format("{}: an assistant turn before any user turn (turn {}, '{}'): a conversation starts "
                                      "with human, after any system turns", where, i + 1, tag));
        started |= tag == "human";
        std::string m;
        if (tag == "system") {
            m = text_message("system", text);
        } else if (tag == "human") {
            m = text_message("user", text);
        } else if (tag == "gpt") {
            m = text_message("assistant", text);
        } else if (tag == "observation") {
            if (pending.empty())
                return refuse(out, "bad_field",
                              fmt::format("{}: an observation that follows no function_call (turn {})", where, i + 1));
            const std::string& id = pending[std::min(answered, pending.size() - 1)];
            ++answered;
            m = "{\"role\":\"tool\",\"tool_call_id\":";
            lit(m, id);
            m += ",\"content\":";
            lit(m, text);
            m.push_back('}');
        } else {  // function_call: {"name", "arguments"} or a list of them, as JSON text
            if (!fc.parse_owned(std::string(text)))
                return refuse(out, "bad_field",
                              fmt::format("{}: a function_call value must be JSON {{name, arguments}}, this is not JSON "
                                          "({} at byte {}; turn {})", where, fc.error().what, fc.error().offset, i + 1));
            const node& r = fc.root();
            if (r.k != kind::object && r.k != kind::array)
                return refuse(out, "bad_field",
                              fmt::format("{}: a function_call value must be JSON {{name, arguments}}, not a {} (turn {})",
                                          where, kind_name(r), i + 1));
            pending.clear();
            answered = 0;
            m = "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[";
            std::string bad;
            size_t k = 0;
            auto one = [&](const node& c) {
                if (!bad.empty()) return;
                const node* name = fc.get(c, "name");
                if (c.k != kind::object || !name || name->k != kind::string || name->n == 0) {
                    bad = fmt::format("{}: function_call {} has no name (turn {})", where, k, i + 1);
                    return;
                }
                const node* args = fc.get(c, "arguments");
                std::string id = fmt::format("call_{}", ++calls);
                if (k++) m.push_back(',');
                m += "{\"id\":";
                lit(m, id);
                m += ",\"type\":\"function\",\"function\":{\"name\":";
                json::write_compact(fc, *name, m);
                if (args && args->k != kind::null_value) {  // OpenAI form: arguments as JSON text
                    m += ",\"arguments\":";
                    if (args->k == kind::string) {
                        json::write_compact(fc, *args, m);
                    } else {
                        args_text.clear();
                        json::write_compact(fc, *args, args_text);
                        lit(m, args_text);
                    }
                }
                m += "}}";
                pending.push_back(std::move(id));
            };
            if (r.k == kind::object)
                one(r);
            else
                fc.elements(r, one);
            if (!bad.empty()) return refuse(out, "bad_field", bad);
            if (k == 0)
                return refuse(out, "bad_field", fmt::format("{}: function_call with an empty list of calls (turn {})", where, i + 1));
            m += "]}";
        }
        if (answer) {
            std::string rec;
            rec.reserve(history_bytes + m.size() + tools.size() + 32);
            rec = "{\"messages\":[";
            for (const auto& h : msgs) {
                rec += h;
                rec.push_back(',');
            }
            rec += m;
            rec.push_back(']');
            if (!tools.empty()) {
                rec += ",\"tools\":";
                rec += tools;
            }
            rec.push_back('}');
            out.records.push_back(std::move(rec));
            out.turns.push_back(i);
        }
        history_bytes += m.size() + 1;
        msgs.push_back(std::move(m));
    }
    if (out.records.empty()) return refuse(out, "no_response", "no gpt or function_call turn to learn from");
    return true;
}

bool alpaca_to_record(const json::document& d, const node& root, llamafactory_calls& out) {
    out = {};
    std::string scratch;
    auto text_field = [&](const char* key, bool required, const char* missing_reason, std::string& v) {
        const node* n = d.get(root, key);
        if (!n || n->k == kind::null_value) {
            if (required) return refuse(out, missing_reason, fmt::format("no {}", key));
            return true;
        }
        if (n->k != kind::string) return refuse(out, "bad_field", fmt::format("{} is a {}, not a string", key, kind_name(*n)));
        v.assign(json::str(*n, scratch));
        return true;
    };
    std::string instruction, input, output, system;
    if (!text_field("instruction", true, "no_messages", instruction) || !text_field("input", false, "", input) ||
        !text_field("output", true, "no_response", output) || !text_field("system", false, "", system))
        return false;
    std::string user = instruction;
    if (!input.empty()) {
        if (!user.empty()) user.push_back('\n');
        user += input;
    }
    if (trim_space(user).empty()) return refuse(out, "no_messages", "instruction and input are empty");
    std::string rec = "{\"messages\":[";
    if (!system.empty()) {
        rec += text_message("system", system);
        rec.push_back(',');
    }
    const node* history = d.get(root, "history");
    if (history && history->k != kind::null_value) {
        if (history->k != kind::array)
            return refuse(out, "bad_field", fmt::format("history is a {}, not a list of [query, answer] pairs", kind_name(*history)));
        size_t i = 0;
        std::string bad;
        d.elements(*history, [&](const node& pair) {
            if (!bad.empty()) return;
            const node* q = nullptr;
            const node* a = nullptr;
            if (pair.k == kind::array && pair.count == 2) {
                q = &d.at(d.first_child(pair));
                a = &d.at(q->end);
            }
            if (!q || q->k != kind::string || a->k != kind::string) {
                bad = fmt::format("history[{}] is not a [query, answer] pair of strings", i);
                return;
            }
            rec += text_message("user", json::str(*q, scratch));
            rec.push_back(',');
            rec += text_message("assistant", json::str(*a, scratch));
            rec.push_back(',');
            ++i;
        });
        if (!bad.empty()) return refuse(out, "bad_field", bad);
    }
    rec += text_message("user", user);
    rec.push_back(',');
    rec += text_message("assistant", output);
    rec += "]}";
    out.records.push_back(std::move(rec));
    out.turns.push_back(0);
    return true;
}

}  // namespace slm::collector
