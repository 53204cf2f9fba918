// OTLP JSON GenAI spans into flywheel-style records that normalize.cpp then treats like any other
// OpenAI-family record. Follows the OpenTelemetry GenAI semantic conventions (several generations).
// Off the hot path, so it builds with nlohmann::json for clarity.
#include <map>

#include <nlohmann/json.hpp>

#include "collector/collector.h"
#include "collector/json-dom.h"
#include "collector/normalize-internal.h"

namespace slm::collector {

using json::kind;
using json::node;
using njson = nlohmann::json;

namespace {

// OTLP AnyValue {stringValue|boolValue|intValue|doubleValue|arrayValue|kvlistValue|bytesValue}.
njson any_value(const json::document& d, const node* v) {
    if (!v || v->k != kind::object) return nullptr;
    std::string scratch;
    if (const node* x = d.get(*v, "stringValue")) return std::string(json::str(*x, scratch));
    if (const node* x = d.get(*v, "boolValue")) return x->k == kind::boolean && x->truth;
    if (const node* x = d.get(*v, "intValue")) {  // int64 is a JSON string in OTLP/JSON
        int64_t i = 0;
        if (x->k == kind::string) {
            std::string s(json::str(*x, scratch));
            try {
                i = std::stoll(s);
            } catch (...) {
                return s;
            }
            return i;
        }
        if (json::to_int(*x, i)) return i;
        return nullptr;
    }
    if (const node* x = d.get(*v, "doubleValue")) {
        double f = 0;
        if (json::to_double(*x, f)) return f;
        if (x->k == kind::string) return std::string(json::str(*x, scratch));
        return nullptr;
    }
    if (const node* x = d.get(*v, "arrayValue")) {
        njson a = njson::array();
        if (const node* vals = x->k == kind::object ? d.get(*x, "values") : nullptr)
            d.elements(*vals, [&](const node& e) { a.push_back(any_value(d, &e)); });
        return a;
    }
    if (const node* x = d.get(*v, "kvlistValue")) {
        njson o = njson::object();
        if (const node* vals = x->k == kind::object ? d.get(*x, "values") : nullptr)
            d.elements(*vals, [&](const node& kv) {
                const node* k = kv.k == kind::object ? d.get(kv, "key") : nullptr;
                if (k && k->k == kind::string) o[std::string(json::str(*k, scratch))] = any_value(d, d.get(kv, "value"));
            });
        return o;
    }
    if (const node* x = d.get(*v, "bytesValue")) return std::string(json::str(*x, scratch));
    return nullptr;
}

using attr_map = std::map<std::string, njson>;

attr_map attributes(const json::document& d, const node* list) {
    attr_map m;
    if (!list || list->k != kind::array) return m;
    std::string scratch;
    d.elements(*list, [&](const node& kv) {
        const node* k = kv.k == kind::object ? d.get(kv, "key") : nullptr;
        if (k && k->k == kind::string) m[std::string(json::str(*k, scratch))] = any_value(d, d.get(kv, "value"));
    });
    return m;
}

std::string attr_string(const attr_map& a, const std::string& k) {
    auto it = a.find(k);
    return it != a.end() && it->second.is_string() ? it->second.get<std::string>() : std::string();
}

std::optional<int64_t> attr_int(const attr_map& a, const std::string& k) {
    auto it = a.find(k);
    if (it == a.end()) return std::nullopt;
    if (it->second.is_number()) return it->second.get<int64_t>();
    if (it->second.is_string()) {
        try {
            return std::stoll(it->second.get<std::string>());
        } catch (...) {
        }
    }
    return std::nullopt;
}

// A JSON-valued attribute: structured, or a JSON string (the usual encoding on spans).
njson attr_json(const attr_map& a, const std::string& k) {
    auto it = a.find(k);
    if (it == a.end()) return nullptr;
    if (it->second.is_string()) {
        njson parsed = njson::parse(it->second.get<std::string>(), nullptr, false);
        return parsed.is_discarded() ? it->second : parsed;
    }
    return it->second;
}

int64_t nanos(const json::document& d, const node& span, std::string_view key) {
    const node* v = d.get(span, key);
    if (!v) return 0;
    std::string scratch;
    if (v->k == kind::string) {
        try {
            return std::stoll(std::string(json::str(*v, scratch)));
        } catch (...) {
            return 0;
        }
    }
    int64_t i = 0;
    return json::to_int(*v, i) ? i : 0;
}

std::string args_string(const njson& a) {
    if (a.is_string()) return a.get<std::string>();
    if (a.is_null()) return "{}";
    return a.dump();
}

// gen_ai.input.messages item {role, parts[]} (>= 1.37) into OpenAI messages appended to `out`.
void parts_message(const njson& m, njson& out) {
    if (!m.is_object()) return;
    if (!m.contains("parts")) {  // already OpenAI-shaped
        out.push_back(m);
        return;
    }
    std::string role = m.value("role", "user");
    std::vector<std::string> texts;
    njson tool_calls = njson::array(), responses = njson::array(), others = njson::array();
    for (const auto& p : m["parts"]) {
        if (!p.is_object()) continue;
        std::string type = p.value("type", "");
        if (type == "text") {
            texts.push_back(p.contains("content") && p["content"].is_string() ? p["content"].get<std::string>() : "");
        } else if (type == "tool_call") {
            njson tc = {{"type", "function"},
                        {"function", {{"name", p.value("name", "")},
                                      {"arguments", args_string(p.contains("arguments") ? p["arguments"] : njson())}}}};
            if (p.contains("id") && p["id"].is_string()) tc["id"] = p["id"];
            tool_calls.push_back(tc);
        } else if (type == "tool_call_response") {
            njson r = {{"role", "tool"}};
            if (p.contains("id") && p["id"].is_string()) r["tool_call_id"] = p["id"];
            const njson& resp = p.contains("response") ? p["response"] : p.value("result", njson());
            r["content"] = resp.is_string() ? resp.get<std::string>() : resp.dump();
            responses.push_back(r);
        } else if (type == "reasoning") {
            // the model's reasoning is not part of the conversation
        } else {
            others.push_back(p);
        }
    }
    for (auto& r : responses) out.push_back(r);
    if (!responses.empty() && texts.empty() && tool_calls.empty() && others.empty()) return;
    njson msg = {{"role", role}};
    if (others.empty()) {
        if (texts.empty()) {
            msg["content"] = nullptr;
        } else {
            std::string joined;
            for (size_t i = 0; i < texts.size(); ++i) joined += (i ? "\n" : "") + texts[i];
            msg["content"] = joined;
        }
    } else {
        njson parts = njson::array();
        for (auto& t : texts) parts.push_back({{"type", "text"}, {"text", t}});
        for (auto& o : others) parts.push_back(o);
        msg["content"] = parts;
    }
    if (!tool_calls.empty()) msg["tool_calls"] = tool_calls;
    if (m.contains("name") && m["name"].is_string()) msg["name"] = m["name"];
    out.push_back(msg);
}

njson system_message(const njson& instr) {
    if (instr.is_string()) return {{"role", "system"}, {"content", instr}};
    std::string joined;
    if (instr.is_array())
        for (const auto& p : instr)
            if (p.is_object() && p.value("type", "") == "text" && p.contains("content") && p["content"].is_string())
                joined += (joined.empty() ? "" : "\n") + p["content"].get<std::string>();
    return {{"role", "system"}, {"content", joined}};
}

njson tool_definitions(const njson& defs) {
    njson tools = njson::array();
    if (!defs.is_array()) return tools;
    for (const auto& t : defs) {
        if (!t.is_object()) continue;
        if (t.contains("function")) {
            tools.push_back(t);
            continue;
        }
        njson fn = t;
        fn.erase("type");
        tools.push_back({{"type", t.value("type", "function")}, {"function", fn}});
    }
    return tools;
}

// OpenLLMetry: gen_ai.prompt.0.role, gen_ai.completion.0.tool_calls.1.arguments, ...
std::map<int, njson> indexed(const attr_map& a, const std::string& prefix) {
    std::map<int, njson> out;
    for (const auto& [k, v] : a) {
        if (k.compare(0, prefix.size(), prefix) != 0) continue;
        size_t dot = k.find('.', prefix.size());
        if (dot == std::string::npos) continue;
        int idx;
        try {
            idx = std::stoi(k.substr(prefix.size(), dot - prefix.size()));
        } catch (...) {
            continue;
        }
        std::string field = k.substr(dot + 1);
        njson& m = out[idx];
        if (field.compare(0, 11, "tool_calls.") == 0) {
            size_t d2 = field.find('.', 11);
            if (d2 == std::string::npos) continue;
            int j;
            try {
                j = std::stoi(field.substr(11, d2 - 11));
            } catch (...) {
                continue;
            }
            std::string sub = field.substr(d2 + 1);
            njson& tcs = m["tool_calls"];
            if (!tcs.is_array()) tcs = njson::array();
            while (static_cast<int>(tcs.size()) <= j) tcs.push_back({{"type", "function"}, {"function", njson::object()}});
            if (sub == "id")
                tcs[j]["id"] = v;
            else
                tcs[j]["function"][sub] = v;
        } else {
            m[field] = v;
        }
    }
    return out;
}

}  // namespace

span_verdict otel_span_to_record(const json::document& d, const json::node& span, const json::node* resource_attrs,
                                 std::string& record, std::string& why) {
    attr_map a = attributes(d, d.get(span, "attributes"));
    attr_map r = attributes(d, resource_attrs);
    struct event {
        std::string name;
        attr_map attrs;
    };
    std::vector<event> events;
    std::string scratch;
    if (const node* evs = d.get(span, "events"); evs && evs->k == kind::array) {
        d.elements(*evs, [&](const node& e) {
            if (e.k != kind::object) return;
            const node* nm = d.get(e, "name");
            events.push_back({nm && nm->k == kind::string ? std::string(json::str(*nm, scratch)) : std::string(),
                              attributes(d, d.get(e, "attributes"))});
        });
    }
    bool genai = false;
    for (const auto& [k, v] : a) genai |= k.compare(0, 7, "gen_ai.") == 0;
    for (const auto& e : events) genai |= e.name.compare(0, 7, "gen_ai.") == 0;
    if (!genai) return span_verdict::not_a_call;
    std::string op = attr_string(a, "gen_ai.operation.name");
    if (!op.empty() && op != "chat" && op != "text_completion" && op != "generate_content" && op != "completion")
        return span_verdict::not_a_call;

    njson messages = njson::array(), tools = njson::array(), choices = njson::array();
    auto add_output = [&](const njson& m, const njson& finish) {
        njson tmp = njson::array();
        parts_message(m, tmp);
        for (auto& msg : tmp) {
            msg["role"] = "assistant";
            njson ch = {{"index", choices.size()}, {"message", msg}};
            njson fr = m.is_object() && m.contains("finish_reason") ? m["finish_reason"] : finish;
            if (!fr.is_null()) ch["finish_reason"] = fr;
            choices.push_back(ch);
        }
    };
    njson finish0 = nullptr;
    if (auto frs = attr_json(a, "gen_ai.response.finish_reasons"); frs.is_array() && !frs.empty()) finish0 = frs[0];

    // 1. semantic conventions >= 1.37: JSON attributes on the span, or on the details event
    const attr_map* src = &a;
    if (!a.count("gen_ai.input.messages") && !a.count("gen_ai.output.messages"))
        for (const auto& e : events)
            if (e.name == "gen_ai.client.inference.operation.details") src = &e.attrs;
    if (njson sys = attr_json(*src, "gen_ai.system_instructions"); !sys.is_null()) messages.push_back(system_message(sys));
    if (njson in = attr_json(*src, "gen_ai.input.messages"); in.is_array())
        for (const auto& m : in) parts_message(m, messages);
    if (njson outm = attr_json(*src, "gen_ai.output.messages"); outm.is_array())
        for (const auto& m : outm) add_output(m, finish0);
    if (njson defs = attr_json(*src, "gen_ai.tool.definitions"); defs.is_array()) tools = tool_definitions(defs);

    // 2. older events: gen_ai.content.prompt / gen_ai.content.completion with JSON strings
    for (const auto& e : events) {
        if (e.name == "gen_ai.content.prompt" && messages.empty()) {
            njson p = attr_json(e.attrs, "gen_ai.prompt");
            if (p.is_string()) messages.push_back({{"role", "user"}, {"content", p}});
            if (p.is_array())
                for (const auto& m : p) parts_message(m, messages);
        } else if (e.name == "gen_ai.content.completion" && choices.empty()) {
            njson c = attr_json(e.attrs, "gen_ai.completion");
            if (c.is_string()) add_output({{"role", "assistant"}, {"content", c}}, finish0);
            if (c.is_array())
                for (const auto& m : c) {
                    if (m.is_object() && m.contains("message"))
                        add_output(m["message"], m.value("finish_reason", finish0));
                    else
                        add_output(m, finish0);
                }
        }
    }
    // 3. per-message events (1.28 .. 1.36): gen_ai.{system,user,assistant,tool}.message, gen_ai.choice
    if (messages.empty() || choices.empty()) {
        bool want_in = messages.empty(), want_out = choices.empty();
        for (const auto& e : events) {
            std::string role;
            if (e.name == "gen_ai.system.message") role = "system";
            else if (e.name == "gen_ai.user.message") role = "user";
            else if (e.name == "gen_ai.assistant.message") role = "assistant";
            else if (e.name == "gen_ai.tool.message") role = "tool";
            else if (e.name != "gen_ai.choice") continue;
            njson body = attr_json(e.attrs, "gen_ai.event.content");
            if (!body.is_object()) {
                body = njson::object();
                if (auto c = attr_json(e.attrs, "content"); !c.is_null()) body["content"] = c;
                if (auto m = attr_json(e.attrs, "message"); m.is_object()) body["message"] = m;
                if (auto tcs = attr_json(e.attrs, "tool_calls"); tcs.is_array()) body["tool_calls"] = tcs;
                if (auto id = attr_string(e.attrs, "id"); !id.empty()) body["id"] = id;
                if (auto fr = attr_string(e.attrs, "finish_reason"); !fr.empty()) body["finish_reason"] = fr;
            }
            if (role.empty()) {
                if (!want_out) continue;
                njson m = body.contains("message") ? body["message"] : body;
                if (m.is_object() && !m.contains("role")) m["role"] = "assistant";
                add_output(m, body.value("finish_reason", finish0));
                continue;
            }
            if (!want_in) continue;
            njson m = {{"role", role}, {"content", body.contains("content") ? body["content"] : njson()}};
            if (body.contains("tool_calls")) {
                njson tcs = body["tool_calls"];
                for (auto& tc : tcs)
                    if (tc.is_object() && tc.contains("function") && tc["function"].contains("arguments"))
                        tc["function"]["arguments"] = args_string(tc["function"]["arguments"]);
                m["tool_calls"] = tcs;
            }
            if (role == "tool" && body.contains("id")) m["tool_call_id"] = body["id"];
            messages.push_back(m);
        }
    }
    // 4. OpenLLMetry indexed attributes
    if (messages.empty())
        for (auto& [i, m] : indexed(a, "gen_ai.prompt.")) {
            if (!m.contains("role")) m["role"] = "user";
            messages.push_back(m);
        }
    if (choices.empty())
        for (auto& [i, m] : indexed(a, "gen_ai.completion.")) {
            njson fr = m.contains("finish_reason") ? m["finish_reason"] : finish0;
            m.erase("finish_reason");
            if (!m.contains("role")) m["role"] = "assistant";
            add_output(m, fr);
        }
    if (tools.empty())
        for (auto& [i, fn] : indexed(a, "llm.request.functions.")) {
            if (fn.contains("parameters") && fn["parameters"].is_string()) {
                njson p = njson::parse(fn["parameters"].get<std::string>(), nullptr, false);
                if (!p.is_discarded()) fn["parameters"] = p;
            }
            tools.push_back({{"type", "function"}, {"function", fn}});
        }

    if (messages.empty() && choices.empty()) return span_verdict::not_a_call;  // content not captured
    if (choices.empty()) {
        why = "no_response: GenAI span without output messages";
        return span_verdict::broken;
    }
    if (messages.empty()) {
        why = "no_messages: GenAI span without input messages";
        return span_verdict::broken;
    }

    njson req = {{"messages", messages}};
    if (auto m = attr_string(a, "gen_ai.request.model"); !m.empty()) req["model"] = m;
    if (!tools.empty()) req["tools"] = tools;
    njson resp = {{"choices", choices}};
    if (auto id = attr_string(a, "gen_ai.response.id"); !id.empty()) resp["id"] = id;
    if (auto m = attr_string(a, "gen_ai.response.model"); !m.empty()) resp["model"] = m;
    njson usage = njson::object();
    auto in_t = attr_int(a, "gen_ai.usage.input_tokens");
    if (!in_t) in_t = attr_int(a, "gen_ai.usage.prompt_tokens");
    auto out_t = attr_int(a, "gen_ai.usage.output_tokens");
    if (!out_t) out_t = attr_int(a, "gen_ai.usage.completion_tokens");
    if (in_t) usage["prompt_tokens"] = *in_t;
    if (out_t) usage["completion_tokens"] = *out_t;
    if (!usage.empty()) resp["usage"] = usage;

    njson rec = {{"request", req}, {"response", resp}};
    int64_t start = nanos(d, span, "startTimeUnixNano"), end = nanos(d, span, "endTimeUnixNano");
    if (start > 0) rec["timestamp"] = epoch_to_iso(static_cast<double>(start) / 1e9);
    if (start > 0 && end >= start) rec["latency_ms"] = static_cast<double>(end - start) / 1e6;
    std::string workload = attr_string(a, "gen_ai.agent.name");
    if (workload.empty()) workload = attr_string(a, "workload_id");
    if (workload.empty()) workload = attr_string(r, "gen_ai.agent.name");
    if (!workload.empty()) rec["workload_id"] = workload;
    if (auto svc = attr_string(r, "service.name"); !svc.empty()) rec["client_id"] = svc;
    record = rec.dump(-1, ' ', false, njson::error_handler_t::replace);
    return span_verdict::call;
}

}  // namespace slm::collector
