// collector normalization: every input format into the `calls` columns, the task-text recipe,
// validation flags, quarantine reasons, and content ids that ignore formatting but not content.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "collector/collector.h"
#include "common/response-kind.h"
#include "../test-util.h"

using namespace slm;
using namespace slm::collector;
using nlohmann::json;

namespace {

record_result run(const std::string& line, normalize_options o = {}) {
    normalizer n(o);
    record_result r;
    n.process(line, "/logs/x.jsonl", 7, r);
    return r;
}

call_record one_call(const std::string& line, normalize_options o = {}) {
    auto r = run(line, o);
    REQUIRE_MESSAGE(r.calls.size() == 1, (r.quarantined.empty() ? "" : r.quarantined[0].reason + ": " + r.quarantined[0].detail));
    return r.calls[0];
}

std::string reason(const std::string& line, normalize_options o = {}) {
    auto r = run(line, o);
    REQUIRE(r.calls.empty());
    REQUIRE(r.quarantined.size() == 1);
    return r.quarantined[0].reason;
}

const char* k_flywheel = R"({"timestamp": "2026-11-20T10:00:00Z", "workload_id": "ops.router", "client_id": "acme",
 "request": {"model": "gpt-4o", "messages": [
   {"role": "system", "content": "You route commands to tools."},
   {"role": "user", "content": "Page the on-call for db-7 and mail ops@acme.io"}],
  "tools": [{"type": "function", "function": {"name": "page_oncall", "description": "Page someone", "parameters": {"type": "object", "properties": {"service": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "send_email", "parameters": {"type": "object"}}}]},
 "response": {"id": "chatcmpl-abc", "object": "chat.completion", "created": 1763632800, "model": "gpt-4o-2024-08-06",
  "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "page_oncall", "arguments": "{\"service\": \"db-7\", \"cc\": \"ops@acme.io\"}"}}]}}],
  "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138}},
 "latency_ms": 812.5})";

}  // namespace

TEST_CASE("flywheel record: every column") {
    auto c = one_call(k_flywheel);
    CHECK(c.format == record_format::flywheel);
    CHECK(c.source_file == "/logs/x.jsonl");
    CHECK(c.source_line == 7);
    CHECK(c.workload_id == "ops.router");
    CHECK(c.client_id == "acme");
    CHECK(c.timestamp == "2026-11-20T10:00:00Z");
    CHECK(c.model == "gpt-4o-2024-08-06");
    CHECK(c.response_id == "chatcmpl-abc");
    CHECK(c.finish_reason == "tool_calls");
    REQUIRE(c.latency_ms.has_value());
    CHECK(*c.latency_ms == doctest::Approx(812.5));
    CHECK(c.prompt_tokens.value() == 120);
    CHECK(c.completion_tokens.value() == 18);
    auto m = json::parse(c.messages);
    REQUIRE(m.size() == 2);
    CHECK(m[0] == json({{"role", "system"}, {"content", "You route commands to tools."}}));
    CHECK(m[1]["content"] == "Page the on-call for db-7 and mail <EMAIL_1>");
    auto tools = json::parse(c.tools);
    CHECK(tools.size() == 2);
    CHECK(tools[0]["function"]["name"] == "page_oncall");
    CHECK(!c.has_response_text);
    auto tc = json::parse(c.response_tool_calls);
    REQUIRE(tc.size() == 1);
    CHECK(tc[0]["name"] == "page_oncall");
    CHECK(tc[0]["arguments"] == json({{"service", "db-7"}, {"cc", "<EMAIL_1>"}}));  // same placeholder as the request
    CHECK(json::parse(c.scrubbed) == json({{"email", 2}}));
    CHECK(json::parse(c.flags) == json::array());
    CHECK(c.task_text ==
          "Page the on-call for db-7 and mail <EMAIL_1>\ntools: page_oncall, send_email\nresponse: tool_call:page_oncall");
    CHECK(c.content_id.size() == 64);
}

TEST_CASE("content id: formatting does not matter, content does, metadata does not") {
    auto a = one_call(k_flywheel);
    // same call, reformatted: one line, different envelope metadata, escapes
    json j = json::parse(k_flywheel);
    j["timestamp"] = "2027-01-01T00:00:00Z";
    j["latency_ms"] = 1;
    std::string compact = j.dump();  // no spaces; "\u..." escapes where nlohmann chooses
    auto b = one_call(compact);
    CHECK(a.content_id == b.content_id);
    j["request"]["messages"][1]["content"] = "Page the on-call for db-8";
    CHECK(one_call(j.dump()).content_id != a.content_id);
    // an escaped "@" is still an email, and decoded text is what is hashed
    std::string esc = R"({"request":{"messages":[{"role":"user","content":"mail ops\u0040acme.io"}]},"response":{"choices":[{"message":{"role":"assistant","content":"ok"}}]}})";
    std::string plain = R"({"request":{"messages":[{"role":"user","content":"mail ops@acme.io"}]},"response":{"choices":[{"message":{"role":"assistant","content":"ok"}}]}})";
    auto e1 = one_call(esc), e2 = one_call(plain);
    CHECK(e1.content_id == e2.content_id);
    CHECK(json::parse(e1.messages)[0]["content"] == "mail <EMAIL_1>");
}

TEST_CASE("pair (cassette) record: response shapes and validation flags") {
    SUBCASE("prose") {
        auto c = one_call(R"({"request":{"model":"m","messages":[{"role":"user","content":"hi"}]},"response":{"id":"x","choices":[{"finish_reason":"stop","message":{"role":"assistant","content":"Hello there."}}]}})");
        CHECK(c.format == record_format::pair);
        CHECK(c.response_text == "Hello there.");
        CHECK(c.task_text == "hi\nresponse: prose");
        CHECK(c.model == "m");
        CHECK(c.timestamp.empty());
    }
    SUBCASE("json and code shapes") {
        auto j = one_call(R"({"request":{"messages":[{"role":"user","content":"prd"}]},"response":{"choices":[{"message":{"content":"{\"title\": \"x\"}"}}]}})");
        CHECK(j.task_text == "prd\nresponse: json");
        auto f = one_call(R"({"request":{"messages":[{"role":"user","content":"prd"}]},"response":{"choices":[{"message":{"content":"```json\n[1, 2]\n```"}}]}})");
        CHECK(f.task_text == "prd\nresponse: json");
        auto code = one_call(R"({"request":{"messages":[{"role":"user","content":"write it"}]},"response":{"choices":[{"message":{"content":"Here:\n```python\ndef f(): pass\n```"}}]}})");
        CHECK(code.task_text == "write it\nresponse: code");
    }
    SUBCASE("tool arguments that are not JSON are kept and flagged; missing ones are {}") {
        auto c = one_call(R"({"request":{"messages":[{"role":"user","content":"go"}]},"response":{"choices":[{"message":{"tool_calls":[
            {"id":"a","function":{"name":"f","arguments":"{not json"}},
            {"id":"b","function":{"name":"g"}}]}}]}})");
        auto tc = json::parse(c.response_tool_calls);
        REQUIRE(tc.size() == 2);
        CHECK(tc[0]["arguments"] == "{not json");
        CHECK(tc[1]["arguments"] == json::object());
        auto flags = json::parse(c.flags);
        CHECK(std::find(flags.begin(), flags.end(), "tool_args_not_json") != flags.end());
        CHECK(std::find(flags.begin(), flags.end(), "tool_args_empty") != flags.end());
        CHECK(c.task_text == "go\nresponse: tool_call:f+g");
    }
    SUBCASE("empty response, refusal, several choices, truncation are flagged") {
        auto e = one_call(R"({"request":{"messages":[{"role":"user","content":"x"}]},"response":{"choices":[{"message":{"role":"assistant","content":""}}]}})");
        CHECK(e.flags == R"(["empty_response"])");
        CHECK(e.task_text == "x\nresponse: empty");
        auto r = one_call(R"({"request":{"messages":[{"role":"user","content":"x"}]},"response":{"choices":[{"message":{"content":null,"refusal":"I can't help with that."}}]}})");
        CHECK(r.response_text == "I can't help with that.");
        CHECK(r.flags == R"(["refusal"])");
        auto m = one_call(R"({"request":{"messages":[{"role":"user","content":"x"}]},"response":{"choices":[{"finish_reason":"length","message":{"content":"a"}},{"message":{"content":"b"}}]}})");
        CHECK(m.response_text == "a");
        CHECK(json::parse(m.flags) == json({"multiple_choices", "truncated"}));
    }
    SUBCASE("agent loop: the request ends with a tool result") {
        auto c = one_call(R"({"request":{"messages":[
            {"role":"system","content":"sys"},
            {"role":"user","content":"weather in Paris?"},
            {"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
            {"role":"tool","tool_call_id":"call_9","content":"sunny"}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}]},
            "response":{"choices":[{"message":{"content":"It is sunny."}}]}})");
        CHECK(c.task_text == "weather in Paris?\ntools: get_weather\nafter: tool_result get_weather\nresponse: prose");
        auto m = json::parse(c.messages);
        CHECK(m[2]["tool_calls"][0]["function"]["arguments"] == R"({"city":"Paris"})");  // canonical compact
        CHECK(m[3] == json({{"role", "tool"}, {"content", "sunny"}, {"tool_call_id", "call_9"}}));
    }
    SUBCASE("content parts: text-only parts become a string, mixed parts are kept") {
        auto c = one_call(R"({"request":{"messages":[{"role":"user","content":[{"type":"text","text":"look at"},{"type":"text","text":"this"}]},
                                                    {"role":"user","content":[{"type":"text","text":"and a@b.co"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]},
                              "response":{"choices":[{"message":{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"A cat."}]}}]}})");
        auto m = json::parse(c.messages);
        CHECK(m[0]["content"] == "look at\nthis");
        CHECK(m[1]["content"].is_array());
        CHECK(m[1]["content"][0]["text"] == "and <EMAIL_1>");
        CHECK(c.response_text == "A cat.");
        CHECK(c.task_text == "and <EMAIL_1>\nresponse: prose");
    }
    SUBCASE("Anthropic Messages response shape") {
        auto c = one_call(R"({"request":{"messages":[{"role":"user","content":"hi"}]},"response":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"tu","name":"lookup","input":{"q":"hi"}}],
            "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":7}}})");
        CHECK(c.response_text == "Let me check.");
        CHECK(json::parse(c.response_tool_calls) == json::parse(R"([{"name":"lookup","arguments":{"q":"hi"}}])"));
        CHECK(c.finish_reason == "tool_use");
        CHECK(c.prompt_tokens.value() == 5);
        CHECK(c.completion_tokens.value() == 7);
    }
}

TEST_CASE("fine-tuning form: the last assistant message is the response") {
    auto c = one_call(R"({"messages":[{"role":"system","content":"s"},{"role":"user","content":"q1"},{"role":"assistant","content":"a1"},
        {"role":"user","content":"q2"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"t","arguments":"{}"}}]}],
        "tools":[{"type":"function","function":{"name":"t","parameters":{}}}]})");
    CHECK(c.format == record_format::finetune);
    CHECK(json::parse(c.messages).size() == 4);
    CHECK(c.task_text == "q2\ntools: t\nresponse: tool_call:t");
    CHECK(reason(R"({"messages":[{"role":"user","content":"q"}]})") == "no_response");
}

TEST_CASE("legacy functions API becomes tools") {
    auto c = one_call(R"({"timestamp":1763632800.5,"workload_id":"w","request":{"model":"gpt-3.5-turbo-0613","messages":[
        {"role":"user","content":"weather?"},
        {"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}},
        {"role":"function","name":"get_weather","content":"{\"temp\": 3}"}],
        "functions":[{"name":"get_weather","parameters":{"type":"object"}}],"function_call":"auto"},
        "response":{"choices":[{"finish_reason":"function_call","message":{"role":"assistant","content":null,"function_call":{"name":"get_weather","arguments":"{\"city\":\"Bergen\"}"}}}]}})");
    CHECK(c.format == record_format::legacy_functions);
    CHECK(c.timestamp == "2025-11-20T10:00:00.500Z");
    auto m = json::parse(c.messages);
    CHECK(m[1]["tool_calls"][0]["function"]["name"] == "get_weather");
    CHECK(m[2]["role"] == "tool");
    CHECK(m[2]["name"] == "get_weather");
    CHECK(json::parse(c.tools) == json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}])"));
    CHECK(json::parse(c.response_tool_calls) == json::parse(R"([{"name":"get_weather","arguments":{"city":"Bergen"}}])"));
    CHECK(c.task_text == "weather?\ntools: get_weather\nafter: tool_result get_weather\nresponse: tool_call:get_weather");
}

TEST_CASE("OTLP GenAI spans (fixture covering several convention generations)") {
    std::ifstream in(test::source_dir("tests/collector/data/otel-genai-spans.jsonl"));
    REQUIRE(in.good());
    normalizer n({});
    record_result all;
    std::string line;
    int no = 0;
    while (std::getline(in, line)) {
        record_result r;
        n.process(line, "otel.jsonl", ++no, r);
        for (auto& c : r.calls) all.calls.push_back(c);
        for (auto& q : r.quarantined) all.quarantined.push_back(q);
        all.skipped_spans += r.skipped_spans;
    }
    REQUIRE(all.calls.size() == 6);
    CHECK(all.skipped_spans == 4);  // invoke_agent, execute_tool, content-less chat, HTTP
    REQUIRE(all.quarantined.size() == 1);
    CHECK(all.quarantined[0].reason == "no_response");
    CHECK(all.quarantined[0].source_line == 7);
    for (auto& c : all.calls) CHECK(c.format == record_format::otel);

    auto& c0 = all.calls[0];  // semconv 1.37 on span attributes
    CHECK(c0.source_line == 1);
    CHECK(c0.workload_id == "planner");
    CHECK(c0.client_id == "travel-agent");
    CHECK(c0.model == "gpt-4o-2024-08-06");
    CHECK(c0.response_id == "chatcmpl-9J3uIL87gldCFtiIbyaOvTeYBRA3l");
    CHECK(c0.timestamp == "2025-11-25T12:00:00.000Z");
    CHECK(c0.latency_ms.value() == doctest::Approx(812));
    CHECK(c0.prompt_tokens.value() == 52);
    CHECK(json::parse(c0.messages)[0]["role"] == "system");
    CHECK(json::parse(c0.response_tool_calls) == json::parse(R"([{"name":"get_weather","arguments":{"location":"Paris"}}])"));
    CHECK(c0.task_text == "Weather in Paris? Mail the answer to <EMAIL_1>\ntools: get_weather\nresponse: tool_call:get_weather");
    auto& c1 = all.calls[1];
    CHECK(c1.task_text.find("after: tool_result get_weather") != std::string::npos);
    CHECK(c1.response_text == "The weather in Paris is currently rainy with a temperature of 57°F.");
    auto& c2 = all.calls[2];  // structured values on the details event
    CHECK(c2.response_text == "The checkout service returns 502s after the 14:00 deploy.");
    CHECK(c2.finish_reason == "end_turn");
    auto& c3 = all.calls[3];  // gen_ai.content.prompt/completion events
    CHECK(c3.response_text == "billing/duplicate_charge");
    CHECK(json::parse(c3.messages)[1]["content"] == "My card <CARD_1> was charged twice, call me at <PHONE_1>");
    CHECK(c3.prompt_tokens.value() == 40);
    auto& c4 = all.calls[4];  // per-message events
    CHECK(json::parse(c4.response_tool_calls)[0]["name"] == "click");
    CHECK(c4.finish_reason == "tool_calls");
    auto& c5 = all.calls[5];  // OpenLLMetry indexed attributes
    CHECK(json::parse(c5.response_tool_calls) == json::parse(R"([{"name":"create_ticket","arguments":{"title":"db-7 disk full","priority":"P1"}}])"));
    CHECK(json::parse(c5.tools)[0]["function"]["name"] == "create_ticket");
    CHECK(json::parse(c5.messages)[1]["content"] == "Open a P1 ticket: db-7 disk full (host <IPV4_1>)");
}

TEST_CASE("quarantine reasons") {
    CHECK(reason(R"({"request": {"messages": [{"role": "user", "content": "hi"}]}, "response": {"choi)") == "invalid_json");
    CHECK(reason("{\"request\": \"caf\xC3\x28\"}") == "invalid_utf8");
    CHECK(reason("42") == "not_an_object");
    CHECK(reason(R"({"hello": "world"})") == "unknown_format");
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}, "response": null})") == "no_response");
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}})") == "no_response");
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}, "response": {"choices": []}})") == "no_response");
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}, "response": {"error": {"message": "rate limited"}}})") == "error_response");
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}, "response": {"choices": [{"message": {"content": "x"}}]}, "status": 500})") == "error_response");
    CHECK(reason(R"({"request": {"messages": "hi"}, "response": {"choices": [{"message": {"content": "x"}}]}})") == "bad_field");
    CHECK(reason(R"({"request": {"messages": [{"content": "x"}]}, "response": {"choices": [{"message": {"content": "x"}}]}})") == "bad_field");
    CHECK(reason(R"({"request": {"messages": []}, "response": {"choices": [{"message": {"content": "x"}}]}})") == "no_messages");
    CHECK(reason(R"({"request": {"model": "m"}, "response": {"choices": [{"message": {"content": "x"}}]}})") == "no_messages");
    normalize_options otel_only;
    otel_only.format = "otel";
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":"x"}]}, "response": {"choices": [{"message": {"content": "x"}}]}})", otel_only) == "format_mismatch");
}

TEST_CASE("--format forces the label, and refuses records of another family") {
    const std::string pair = R"({"request":{"messages":[{"role":"user","content":"x"}]},"response":{"choices":[{"message":{"content":"y"}}]}})";
    const std::string ft = R"({"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}]})";
    normalize_options o;
    o.format = "flywheel";
    CHECK(one_call(pair, o).format == record_format::flywheel);
    CHECK(reason(ft, o) == "format_mismatch");
    o.format = "legacy";
    CHECK(one_call(pair, o).format == record_format::legacy_functions);
    CHECK(one_call(ft, o).format == record_format::legacy_functions);
    o.format = "finetune";
    CHECK(one_call(ft, o).format == record_format::finetune);
    CHECK(reason(pair, o) == "format_mismatch");
    o.format = "pair";
    CHECK(one_call(pair, o).format == record_format::pair);
    // the same call read as pair and as flywheel has the same content id
    normalize_options a;
    CHECK(one_call(pair, a).content_id == one_call(pair, o).content_id);
}

TEST_CASE("quarantined raw text is scrubbed, invalid UTF-8 escaped, and hashed") {
    auto r = run("{\"note\": \"mail jane@corp.example key=sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2bC7dE \xff\xfe\"");
    REQUIRE(r.quarantined.size() == 1);
    auto& q = r.quarantined[0];
    CHECK(q.reason == "invalid_utf8");
    CHECK(q.raw == "{\"note\": \"mail <EMAIL_1> key=<API_KEY_1> \\xFF\\xFE\"");
    CHECK(q.raw_hash == blake2b_hex(q.raw));
    CHECK(q.source_line == 7);
    CHECK(escape_invalid_utf8(std::string("a\0b", 3)) == "a\\x00b");
}

TEST_CASE("one-line arrays are not records; --workload and --client override") {
    CHECK(reason(R"([{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}])") == "not_an_object");
    normalize_options o;
    o.workload = "forced-node";
    o.client = "forced-client";
    auto c = one_call(R"({"workload_id":"w","client_id":"c","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]})", o);
    CHECK(c.workload_id == "forced-node");
    CHECK(c.client_id == "forced-client");
}

TEST_CASE("metadata oddities are flagged, wrong-typed content is quarantined") {
    auto c = one_call(R"({"timestamp": 1742032306, "latency_ms": "812ms", "request": {"messages": [{"role":"user","content":"x"}]},
        "response": {"choices": [{"message": {"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}}]}})");
    CHECK(c.timestamp == "2025-03-15T09:51:46.000Z");
    CHECK(!c.latency_ms);
    CHECK(json::parse(c.flags) == json({"latency_not_number", "tool_args_not_string"}));  // epoch seconds are fine
    CHECK(json::parse(c.response_tool_calls)[0]["arguments"] == json({{"a", 1}}));
    CHECK(reason(R"({"request": {"messages": [{"role":"user","content":42}]}, "response": {"choices": [{"message": {"content": "x"}}]}})") == "bad_field");
    CHECK(reason(R"({"response": {"choices": [{"message": {"content": "x"}}]}})") == "no_request");
}

TEST_CASE("--scrub off keeps values and counts nothing") {
    normalize_options o;
    o.scrub = false;
    auto c = one_call(k_flywheel, o);
    CHECK(json::parse(c.messages)[1]["content"] == "Page the on-call for db-7 and mail ops@acme.io");
    CHECK(c.scrubbed == "{}");
}

namespace {

// a flywheel record with the given JSON value as its timestamp
call_record with_timestamp(const std::string& ts) {
    return one_call(R"({"timestamp": )" + ts + R"(, "workload_id": "w", "request": {"messages": [{"role":"user","content":"x"}]},
        "response": {"choices": [{"message": {"content": "ok"}}]}})");
}

bool flagged(const call_record& c, const char* flag) {
    auto f = json::parse(c.flags);
    return std::find(f.begin(), f.end(), flag) != f.end();
}

}  // namespace

TEST_CASE("flywheel timestamps: epoch numbers (s, ms, us, ns; integer or float) stored as ISO-8601 UTC, unflagged") {
    const std::pair<const char*, const char*> cases[] = {
        {"1742032306", "2025-03-15T09:51:46.000Z"},           // integer seconds
        {"1742032306.25", "2025-03-15T09:51:46.250Z"},        // float seconds
        {"1.742032306e9", "2025-03-15T09:51:46.000Z"},        // exponent form
        {"1742032306123", "2025-03-15T09:51:46.123Z"},        // milliseconds, by magnitude
        {"1742032306123.0", "2025-03-15T09:51:46.123Z"},
        {"1742032306123456", "2025-03-15T09:51:46.123Z"},     // microseconds
        {"1742032306123456789", "2025-03-15T09:51:46.123Z"},  // nanoseconds
        {"\"1742032306\"", "2025-03-15T09:51:46.000Z"},       // the number as text
        {"\"1742032306.5\"", "2025-03-15T09:51:46.500Z"},
        {"0", "1970-01-01T00:00:00.000Z"},
    };
    for (const auto& [in, want] : cases) {
        auto c = with_timestamp(in);
        CHECK_MESSAGE(c.timestamp == want, in);
        CHECK_MESSAGE(!flagged(c, "timestamp_not_iso"), in);
        CHECK_MESSAGE(c.flags == "[]", in, " ", c.flags);
    }
}

TEST_CASE("flywheel timestamps: ISO-8601 text kept as given; other values flagged timestamp_not_iso") {
    for (const char* iso : {"\"2026-11-20T10:00:00Z\"", "\"2026-11-20T10:00:00.123Z\"", "\"2026-11-20T10:00:00+02:00\"",
                            "\"2026-11-20 10:00:00\"", "\"2026-11-20\"", "\"2026-11-20T10:00:00,5-0130\""}) {
        auto c = with_timestamp(iso);
        CHECK_MESSAGE(c.timestamp == json::parse(iso).get<std::string>(), iso);
        CHECK_MESSAGE(!flagged(c, "timestamp_not_iso"), iso);
    }
    for (const char* bad : {"\"yesterday\"", "\"20/11/2026\"", "\"2026-11-20T10\"", "\"NaN\""}) {
        auto c = with_timestamp(bad);
        CHECK_MESSAGE(c.timestamp == json::parse(bad).get<std::string>(), bad);  // kept, for a human to read
        CHECK_MESSAGE(flagged(c, "timestamp_not_iso"), bad);
    }
    for (const char* bad : {"-5", "1e30", "true", "{\"s\": 1}"}) {
        auto c = with_timestamp(bad);
        CHECK_MESSAGE(c.timestamp.empty(), bad);
        CHECK_MESSAGE(flagged(c, "timestamp_not_iso"), bad);
    }
    auto none = with_timestamp("null");
    CHECK(none.timestamp.empty());
    CHECK(none.flags == "[]");
}

TEST_CASE("the task text's response line is common/response-kind.h's decision") {
    const char* texts[] = {"", "{\"a\": 1}", "[1, 2]", "```json\n{\"a\": 1}\n```", "```\n[1]\n```",
                           "```json\n{\"a\": 1}\n```\nHope this helps!", "Sure: {\"a\": 1}", "42",
                           "SELECT a FROM t", "x = 1;\ny = 2;\nz = 3;", "Plain words."};
    for (const char* t : texts) {
        auto c = one_call(R"({"request":{"messages":[{"role":"user","content":"q"}]},"response":{"choices":[{"message":{"content":)" +
                          json(t).dump() + "}}]}}");
        CHECK_MESSAGE(c.task_text == std::string("q\nresponse: ") + response_kind_name(classify_response(c.response_text, "")),
                      json(t).dump());
    }
    // tool calls with content: a tool call, named
    auto tc = one_call(R"({"request":{"messages":[{"role":"user","content":"q"}]},"response":{"choices":[{"message":{"content":"Looking it up.",
        "tool_calls":[{"id":"a","function":{"name":"search","arguments":"{}"}}]}}]}})");
    CHECK(classify_response(tc.response_text, tc.response_tool_calls) == response_kind::tool_call);
    CHECK(tc.task_text == "q\nresponse: tool_call:search");
}


TEST_CASE("response_format: kept (keys sorted, strings scrubbed), not for text, not in the content id") {
    const std::string req =
        R"({"model": "gpt-4o", "messages": [{"role": "user", "content": "Where is the Eiffel Tower?"}], )";
    const std::string resp =
        R"("response": {"choices": [{"message": {"role": "assistant", "content": "{\"city\": \"Paris\", \"country\": \"France\"}"}}]}})";
    const std::string schema =
        R"("response_format": {"type": "json_schema", "json_schema": {"strict": true, "name": "City", "schema": )"
        R"({"type": "object", "required": ["city", "country"], "properties": {"city": {"type": "string", "description": "mail ops@acme.io"}, "country": {"type": "string"}}, "additionalProperties": false}}}})";
    auto c = one_call(R"({"request": )" + req + schema + ", " + resp);
    const auto rf = json::parse(c.response_format);
    CHECK(rf["type"] == "json_schema");
    CHECK(rf["json_schema"]["schema"]["required"] == json::array({"city", "country"}));
    CHECK(rf["json_schema"]["schema"]["additionalProperties"] == false);
    CHECK(c.response_format.find("\"json_schema\":{\"name\":\"City\",\"schema\"") != std::string::npos);  // sorted keys
    CHECK(c.response_format.find("ops@acme.io") == std::string::npos);  // scrubbed like the tools
    CHECK(c.response_format.find("<EMAIL_1>") != std::string::npos);

    auto plain = one_call(R"({"request": )" + req + R"("response_format": {"type": "text"}}, )" + resp);
    CHECK(plain.response_format.empty());
    auto none = one_call(R"({"request": )" + req.substr(0, req.size() - 2) + "}, " + resp);
    CHECK(none.response_format.empty());
    auto mode = one_call(R"({"request": )" + req + R"("response_format": {"type": "json_object"}}, )" + resp);
    CHECK(json::parse(mode.response_format) == json{{"type", "json_object"}});
    // the id is that of the call without it: stored calls keep their ids across versions
    CHECK(c.content_id == none.content_id);
    CHECK(mode.content_id == none.content_id);
}
