// LLaMA-Factory dataset forms in depth (test-sharegpt.cpp has the first checks): the real glaive tool-calling ShareGPT file (calls counted and rebuilt
// independently from the raw JSON), Alpaca with history, quarantine reasons, --format forcing,
// auto-detection, dedupe on re-collect, and the streamed JSON-array reader under them.
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "collector/collector.h"
#include "common/common.h"
#include "store/store.h"
#include "../test-util.h"
#include "helpers.h"

using namespace slm;
using namespace slm::collector;
using nlohmann::json;

namespace {

using test::content_digest;
using test::count;
using test::write_file;

const char* k_glaive = "logs/glaive_toolcall_en_demo.json";

collect_summary run_collect(store::db& d, std::vector<std::string> paths, std::function<void(collect_params&)> tweak = {}) {
    collect_params p;
    p.paths = std::move(paths);
    if (tweak) tweak(p);
    return collect(d, p);
}

record_result run(const std::string& rec, normalize_options o = {}) {
    normalizer n(o);
    record_result r;
    n.process(rec, "/logs/x.json", 3, r);
    return r;
}

// the one quarantine row a refused record gives (and no calls)
quarantine_record refused(const std::string& rec, normalize_options o = {}) {
    auto r = run(rec, o);
    REQUIRE(r.calls.empty());
    REQUIRE(r.quarantined.size() == 1);
    return r.quarantined[0];
}

// The request/response pairs a ShareGPT record should give, built here from the LLaMA-Factory
// definition with nlohmann::json (independent of the collector's own writer). Tool-call arguments
// are kept parsed on both sides so number and key formatting do not matter.
struct expected_call {
    json messages, response_text, response_tool_calls, tools;
};

std::vector<expected_call> expected_calls(const json& rec) {
    std::vector<expected_call> out;
    json msgs = json::array();
    if (rec.contains("system") && rec["system"].is_string() && !rec["system"].get<std::string>().empty())
        msgs.push_back({{"role", "system"}, {"content", rec["system"]}});
    json tools = nullptr;
    if (rec.contains("tools")) {
        json t = rec["tools"].is_string() ? json::parse(rec["tools"].get<std::string>()) : rec["tools"];
        if (!t.empty()) {
            tools = json::array();
            for (auto& f : t) tools.push_back(f.contains("function") ? f : json{{"type", "function"}, {"function", f}});
        }
    }
    int n = 0;
    std::string last_id;
    for (const auto& turn : rec["conversations"]) {
        std::string from = turn["from"], value = turn["value"];
        json m;
        expected_call e;
        e.tools = tools;
        if (from == "human") {
            m = {{"role", "user"}, {"content", value}};
        } else if (from == "system") {
            m = {{"role", "system"}, {"content", value}};
        } else if (from == "observation") {
            m = {{"role", "tool"}, {"content", value}, {"tool_call_id", last_id}};
        } else if (from == "gpt") {
            m = {{"role", "assistant"}, {"content", value}};
            e.response_text = value;
        } else if (from == "function_call") {
            json v = json::parse(value);
            json list = v.is_array() ? v : json::array({v});
            json tcs = json::array(), resp = json::array();
            for (auto& c : list) {
                last_id = "call_" + std::to_string(++n);
                tcs.push_back({{"id", last_id}, {"type", "function"},
                               {"function", {{"name", c["name"]}, {"arguments", c["arguments"]}}}});
                resp.push_back({{"name", c["name"]}, {"arguments", c["arguments"]}});
            }
            m = {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", tcs}};
            e.response_tool_calls = resp;
        }
        if (from == "gpt" || from == "function_call") {
            e.messages = msgs;
            out.push_back(e);
        }
        msgs.push_back(m);
    }
    return out;
}

// stored messages with tool-call arguments parsed (they are stored as JSON text, OpenAI-style)
json parsed_args(json msgs) {
    for (auto& m : msgs)
        if (m.contains("tool_calls"))
            for (auto& tc : m["tool_calls"]) tc["function"]["arguments"] = json::parse(tc["function"]["arguments"].get<std::string>());
    return msgs;
}

std::string call_key(const json& messages, const json& text, const json& tool_calls, const json& tools) {
    return json::array({messages, text, tool_calls, tools}).dump();
}

}  // namespace

TEST_CASE("the real glaive ShareGPT file: one call per gpt/function_call turn, rebuilt exactly") {
    const std::string path = test::shared_data(k_glaive);
    REQUIRE(std::filesystem::exists(path));
    const json raw = json::parse(test::read_file(path));
    REQUIRE(raw.is_array());
    // what the file should give, counted from the raw JSON
    size_t turns = 0, tool_turns = 0;
    std::set<std::string> want, want_tool;
    for (const auto& rec : raw)
        for (const auto& e : expected_calls(rec)) {
            ++turns;
            tool_turns += !e.response_tool_calls.is_null();
            std::string k = call_key(e.messages, e.response_text, e.response_tool_calls, e.tools);
            want.insert(k);
            if (!e.response_tool_calls.is_null()) want_tool.insert(k);
        }
    REQUIRE(turns > raw.size());
    REQUIRE(tool_turns > 0);

    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto s = run_collect(d, {path}, [](auto& p) { p.scrub = false; });  // unscrubbed: compared with the raw text
    CHECK(s.quarantined == 0);
    CHECK(s.lines == static_cast<int64_t>(raw.size()));
    CHECK(s.calls == static_cast<int64_t>(turns));
    CHECK(s.by_format["sharegpt"] == static_cast<int64_t>(turns));
    // the demo file repeats some conversations: identical turns are stored once
    CHECK(s.ingested == static_cast<int64_t>(want.size()));
    CHECK(s.duplicate == static_cast<int64_t>(turns - want.size()));
    CHECK(count(d, "SELECT count(*) FROM calls WHERE response_tool_calls IS NOT NULL") == static_cast<int64_t>(want_tool.size()));
    CHECK(count(d, "SELECT count(*) FROM calls WHERE flags != '[]'") == 0);
    CHECK(count(d, "SELECT count(*) FROM calls WHERE ifnull(workload_id, '') != ''") == 0);

    std::set<std::string> got;
    auto q = d.prepare("SELECT messages, response_text, response_tool_calls, tools FROM calls");
    while (q.step()) {
        json text = q.is_null(1) ? json(nullptr) : json(q.get_text(1));
        json tcs = q.is_null(2) ? json(nullptr) : json::parse(q.get_text(2));
        json tools = q.is_null(3) ? json(nullptr) : json::parse(q.get_text(3));
        got.insert(call_key(parsed_args(json::parse(q.get_text(0))), text, tcs, tools));
    }
    CHECK(got == want);

    // source_line: where each array element starts (line 2 for the first, as the file is indented)
    auto first = d.prepare("SELECT messages, response_tool_calls, task_text FROM calls WHERE source_line = 2 ORDER BY id");
    auto e0 = expected_calls(raw[0]);
    size_t k = 0;
    while (first.step()) {
        REQUIRE(k < e0.size());
        CHECK(parsed_args(json::parse(first.get_text(0))) == e0[k].messages);  // the k-th call's request
        if (!e0[k].response_tool_calls.is_null()) {
            json tc = json::parse(first.get_text(1));
            CHECK(tc[0]["arguments"].is_object());  // parsed, not a string
            CHECK(tc == e0[k].response_tool_calls);
            CHECK(first.get_text(2).find("response: tool_call:") != std::string::npos);
        }
        ++k;
    }
    CHECK(k == e0.size());
    // a call after an observation says so in its task text
    CHECK(count(d, "SELECT count(*) FROM calls WHERE task_text LIKE '%after: tool_result %' AND task_text NOT LIKE '%tool_result ?%'") > 0);

    // re-collect: nothing new
    const std::string before = content_digest(d);
    auto s2 = run_collect(d, {path}, [](auto& p) { p.scrub = false; });
    CHECK(s2.ingested == 0);
    CHECK(s2.duplicate == s2.calls);
    CHECK(content_digest(d) == before);

    // scrubbed by default like every other form; threaded == serial
    auto d1 = store::db::open(t / "s1.db");
    auto d3 = store::db::open(t / "s3.db");
    auto a = run_collect(d1, {path}, [](auto& p) { p.threads = 1; });
    auto b = run_collect(d3, {path}, [](auto& p) { p.threads = 3; });
    CHECK(a.ingested == b.ingested);
    CHECK(content_digest(d1) == content_digest(d3));
    CHECK(count(d1, "SELECT count(*) FROM calls WHERE messages LIKE '%<EMAIL_1>%'") > 0);
}

TEST_CASE("ShareGPT turns into requests: system, tools in OpenAI form, parallel calls, observations") {
    // tools already parsed, one already in OpenAI form (kept) and one bare (wrapped)
    const char* rec = R"({"system": "You are a shop bot.",
      "tools": [{"type":"function","function":{"name":"stock","parameters":{}}}, {"name":"price","parameters":{"type":"object"}}],
      "conversations": [
        {"from": "human", "value": "stock and price of sku 7?"},
        {"from": "function_call", "value": "[{\"name\": \"stock\", \"arguments\": {\"sku\": 7}}, {\"name\": \"price\", \"arguments\": \"{\\\"sku\\\": 7}\"}]"},
        {"from": "observation", "value": "{\"n\": 3}"},
        {"from": "observation", "value": "{\"eur\": 9.5}"},
        {"from": "gpt", "value": "3 left at 9.50 EUR."},
        {"from": "human", "value": "thanks"}]})";
    auto r = run(rec);
    REQUIRE(r.quarantined.empty());
    REQUIRE(r.calls.size() == 2);  // the trailing human turn has no answer: no call
    const auto& c0 = r.calls[0];
    CHECK(c0.format == record_format::sharegpt);
    CHECK(c0.source_line == 3);
    CHECK(json::parse(c0.messages) == json::parse(R"([{"role":"system","content":"You are a shop bot."},
                                                      {"role":"user","content":"stock and price of sku 7?"}])"));
    CHECK(json::parse(c0.tools) == json::parse(R"([{"type":"function","function":{"name":"stock","parameters":{}}},
                                                   {"type":"function","function":{"name":"price","parameters":{"type":"object"}}}])"));
    CHECK(json::parse(c0.response_tool_calls) ==
          json::parse(R"([{"name":"stock","arguments":{"sku":7}},{"name":"price","arguments":{"sku":7}}])"));
    CHECK(!c0.has_response_text);
    CHECK(c0.task_text == "stock and price of sku 7?\ntools: stock, price\nresponse: tool_call:stock+price");
    const auto& c1 = r.calls[1];
    json m = json::parse(c1.messages);
    REQUIRE(m.size() == 5);
    CHECK(m[2]["tool_calls"][0]["id"] == "call_1");
    CHECK(m[2]["tool_calls"][1]["id"] == "call_2");
    CHECK(m[2]["tool_calls"][0]["function"]["arguments"] == R"({"sku":7})");
    CHECK(m[3] == json::parse(R"({"role":"tool","content":"{\"n\": 3}","tool_call_id":"call_1"})"));
    CHECK(m[4]["tool_call_id"] == "call_2");  // consecutive observations answer the calls in order
    CHECK(c1.response_text == "3 left at 9.50 EUR.");
    CHECK(c1.task_text == "stock and price of sku 7?\ntools: stock, price\nafter: tool_result price\nresponse: prose");
    CHECK(c0.content_id != c1.content_id);

    // a system turn instead of the system key; tools as a string holding one bare function
    auto r2 = run(R"({"tools": "{\"name\": \"f\"}", "conversations": [{"from":"system","value":"be brief"},
        {"from":"human","value":"hi"},{"from":"gpt","value":"hello"}]})");
    REQUIRE(r2.calls.size() == 1);
    CHECK(json::parse(r2.calls[0].messages)[0] == json({{"role", "system"}, {"content", "be brief"}}));
    CHECK(json::parse(r2.calls[0].tools) == json::parse(R"([{"type":"function","function":{"name":"f"}}])"));
    // empty tools string: no tools
    auto r3 = run(R"({"tools": "", "conversations": [{"from":"human","value":"hi"},{"from":"gpt","value":"hello"}]})");
    REQUIRE(r3.calls.size() == 1);
    CHECK(r3.calls[0].tools.empty());
    // PII in a turn is scrubbed like in any other form
    auto r4 = run(R"({"conversations": [{"from":"human","value":"mail bob@example.com"},{"from":"gpt","value":"sent to bob@example.com"}]})");
    REQUIRE(r4.calls.size() == 1);
    CHECK(json::parse(r4.calls[0].messages)[0]["content"] == "mail <EMAIL_1>");
    CHECK(r4.calls[0].response_text == "sent to <EMAIL_1>");
}

TEST_CASE("bad ShareGPT records are quarantined whole, the detail naming the turn") {
    auto q = refused(R"({"conversations": [{"from":"human","value":"a"},{"from":"gpt","value":"b"},{"from":"assistant","value":"c"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[2]: unknown role tag 'assistant' (turn 3;") != std::string::npos);
    CHECK(q.source_line == 3);

    q = refused(R"j({"conversations": [{"from":"human","value":"a"},{"from":"function_call","value":"search(a)"}]})j");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[1]: a function_call value must be JSON {name, arguments}, this is not JSON") != std::string::npos);

    q = refused(R"({"conversations": [{"from":"human","value":"a"},{"from":"function_call","value":"{\"arguments\":{}}"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[1]: function_call 0 has no name (turn 2)") != std::string::npos);

    q = refused(R"({"tools": "[{\"name\": \"f\",", "conversations": [{"from":"human","value":"a"},{"from":"gpt","value":"b"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("tools is a string that is not JSON") != std::string::npos);

    q = refused(R"({"tools": [42], "conversations": [{"from":"human","value":"a"},{"from":"gpt","value":"b"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("tools[0]") != std::string::npos);

    q = refused(R"({"conversations": [{"from":"gpt","value":"hello"},{"from":"human","value":"a"},{"from":"gpt","value":"b"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[0]: an assistant turn before any user turn (turn 1, 'gpt')") != std::string::npos);

    q = refused(R"({"conversations": [{"from":"human","value":"a"},{"from":"observation","value":"{}"},{"from":"gpt","value":"b"}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[1]: an observation that follows no function_call (turn 2)") != std::string::npos);

    q = refused(R"({"conversations": [{"from":"human","value":"a"},{"from":"gpt","value":7}]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail.find("conversations[1]: 'value' is number, not a string (turn 2, 'gpt')") != std::string::npos);

    CHECK(refused(R"({"conversations": [{"from":"human","value":"a"}]})").reason == "no_response");
    CHECK(refused(R"({"conversations": []})").reason == "no_messages");
    CHECK(refused(R"({"conversations": null})").reason == "no_messages");
    CHECK(refused(R"({"conversations": "human: hi"})").reason == "bad_field");
    CHECK(refused(R"({"system": 1, "conversations": [{"from":"human","value":"a"},{"from":"gpt","value":"b"}]})").reason == "bad_field");
    // a record without conversations, forced: format_mismatch; not forced: unknown_format
    normalize_options o;
    o.format = "sharegpt";
    q = refused(R"({"tools": "[]", "system": "s"})", o);
    CHECK(q.reason == "format_mismatch");
    CHECK(refused(R"({"tools": "[]", "system": "s"})").reason == "unknown_format");
}

TEST_CASE("Alpaca: system, history pairs, instruction + input, output") {
    auto r = run(R"({"instruction": "Translate to French", "input": "good morning", "output": "bonjour",
        "system": "You translate.", "history": [["Translate to German: thanks", "danke"], ["and Spanish?", "gracias"]]})");
    REQUIRE(r.calls.size() == 1);
    const auto& c = r.calls[0];
    CHECK(c.format == record_format::alpaca);
    CHECK(json::parse(c.messages) == json::parse(R"([{"role":"system","content":"You translate."},
        {"role":"user","content":"Translate to German: thanks"},{"role":"assistant","content":"danke"},
        {"role":"user","content":"and Spanish?"},{"role":"assistant","content":"gracias"},
        {"role":"user","content":"Translate to French\ngood morning"}])"));
    CHECK(c.response_text == "bonjour");
    CHECK(c.task_text == "Translate to French\ngood morning\nresponse: prose");
    CHECK(c.tools.empty());
    // empty input: the instruction alone
    auto r2 = run(R"({"instruction": "Say hi", "input": "", "output": "hi"})");
    REQUIRE(r2.calls.size() == 1);
    CHECK(json::parse(r2.calls[0].messages) == json::parse(R"([{"role":"user","content":"Say hi"}])"));

    CHECK(refused(R"({"instruction": "x", "input": ""})").reason == "no_response");
    CHECK(refused(R"({"instruction": "x", "output": ["a", "b"]})").reason == "bad_field");
    CHECK(refused(R"({"instruction": "", "input": "", "output": "y"})").reason == "no_messages");
    auto q = refused(R"({"instruction": "x", "output": "y", "history": [["q"]]})");
    CHECK(q.reason == "bad_field");
    CHECK(q.detail == "history[0] is not a [query, answer] pair of strings");
    CHECK(refused(R"({"instruction": 5, "output": "y"})").reason == "bad_field");
}

TEST_CASE("--format sharegpt / alpaca force the form; auto detects each record") {
    const std::string sg = R"({"conversations":[{"from":"human","value":"q1"},{"from":"gpt","value":"a1"}]})";
    const std::string al = R"({"instruction":"q2","output":"a2"})";
    const std::string ft = R"({"messages":[{"role":"user","content":"q3"},{"role":"assistant","content":"a3"}]})";
    test::temp_dir t;
    write_file(t / "mixed.jsonl", sg + "\n" + al + "\n" + ft + "\n");
    {
        auto d = store::db::open(t / "auto.db");
        auto s = run_collect(d, {t / "mixed.jsonl"});
        CHECK(s.by_format["sharegpt"] == 1);
        CHECK(s.by_format["alpaca"] == 1);
        CHECK(s.by_format["finetune"] == 1);
        CHECK(s.quarantined == 0);
        CHECK(count(d, "SELECT count(*) FROM calls WHERE format = 'alpaca' AND source_line = 2") == 1);
    }
    {
        auto d = store::db::open(t / "sg.db");
        auto s = run_collect(d, {t / "mixed.jsonl"}, [](auto& p) { p.format = "sharegpt"; });
        CHECK(s.ingested == 1);
        CHECK(s.quarantined_by_reason["format_mismatch"] == 2);
        CHECK(count(d, "SELECT count(*) FROM quarantine WHERE detail = '--format sharegpt but the record looks like alpaca'") == 1);
    }
    {
        auto d = store::db::open(t / "al.db");
        auto s = run_collect(d, {t / "mixed.jsonl"}, [](auto& p) { p.format = "alpaca"; });
        CHECK(s.ingested == 1);
        CHECK(s.by_format["alpaca"] == 1);
        CHECK(s.quarantined_by_reason["format_mismatch"] == 2);
    }
    {  // --format finetune does not take a ShareGPT record
        auto d = store::db::open(t / "ft.db");
        auto s = run_collect(d, {t / "mixed.jsonl"}, [](auto& p) { p.format = "finetune"; });
        CHECK(s.by_format["finetune"] == 1);
        CHECK(s.quarantined_by_reason["format_mismatch"] == 2);
    }
    // --workload applies to these forms too
    auto d = store::db::open(t / "w.db");
    run_collect(d, {t / "mixed.jsonl"}, [](auto& p) { p.workload = "translator"; });
    CHECK(count(d, "SELECT count(*) FROM calls WHERE workload_id = 'translator'") == 3);
    // the CLI takes the new --format values
    auto cli = test::run_slmctl("collect --json --format sharegpt --db '" + (t / "cli.db") + "' '" + (t / "mixed.jsonl") + "'");
    CHECK(cli.exit_code == 0);
    auto js = json::parse(cli.out);
    CHECK(js["ingested"] == 1);
    CHECK(js["by_format"]["sharegpt"] == 1);
}

TEST_CASE("JSON array files are streamed: one line of any length, records longer than the cap, broken arrays") {
    test::temp_dir t;
    // a one-line (minified) array far longer than --max-line-bytes: every element is a record
    json arr = json::array();
    for (int i = 0; i < 400; ++i)
        arr.push_back({{"instruction", "question " + std::to_string(i) + " " + std::string(200, 'x')}, {"output", "answer"}});
    const std::string one_line = arr.dump();
    REQUIRE(one_line.size() > 80000);
    write_file(t / "min.json", "\xEF\xBB\xBF" + one_line);  // with a BOM, no final newline
    auto d = store::db::open(t / "a.db");
    auto s = run_collect(d, {t / "min.json"}, [](auto& p) { p.max_line_bytes = 4096; });
    CHECK(s.quarantined == 0);
    CHECK(s.ingested == 400);
    CHECK(s.lines == 400);
    CHECK(count(d, "SELECT count(DISTINCT source_line) FROM calls WHERE source_file LIKE '%min.json'") == 1);

    // one element over the cap: line_too_long, the others stored; strings with brackets and escapes
    json arr2 = json::array();
    arr2.push_back({{"instruction", "a ] } [ { \" \\ , tricky"}, {"output", "ok"}});
    arr2.push_back({{"instruction", std::string(10000, 'y')}, {"output", "too big"}});
    arr2.push_back({{"instruction", "last"}, {"output", "ok"}});
    write_file(t / "big.json", arr2.dump(2) + "\n");
    auto s2 = run_collect(d, {t / "big.json"}, [](auto& p) { p.max_line_bytes = 4096; });
    CHECK(s2.ingested == 2);
    CHECK(s2.quarantined_by_reason["line_too_long"] == 1);
    CHECK(count(d, "SELECT count(*) FROM quarantine WHERE reason = 'line_too_long' AND detail LIKE 'record 2 of the array%'") == 1);
    CHECK(count(d, "SELECT count(*) FROM calls WHERE messages LIKE '%tricky%'") == 1);

    // a truncated array: the elements before the cut are stored, the cut one is invalid_json
    std::string cut = arr2.dump(2);
    cut = cut.substr(0, cut.find("last") + 2);
    write_file(t / "cut.json", cut);
    auto s3 = run_collect(d, {t / "cut.json"}, [](auto& p) { p.max_line_bytes = 100000; });
    CHECK(s3.calls == 2);
    CHECK(s3.quarantined_by_reason["invalid_json"] == 1);

    // a missing comma stops the split there, said so
    write_file(t / "comma.json", R"([{"instruction":"a","output":"b"} {"instruction":"c","output":"d"}])");
    auto s4 = run_collect(d, {t / "comma.json"});
    CHECK(s4.calls == 1);
    CHECK(count(d, "SELECT count(*) FROM quarantine WHERE source_file LIKE '%comma.json' AND reason = 'invalid_json' "
                   "AND detail LIKE 'expected '','' or '']'' after record 1 of the array%'") == 1);

    // an array that is never closed
    write_file(t / "open.json", "[\n" R"({"instruction":"open","output":"b"})" ",\n");
    auto s5 = run_collect(d, {t / "open.json"});
    CHECK(s5.calls == 1);
    CHECK(count(d, "SELECT count(*) FROM quarantine WHERE source_file LIKE '%open.json' AND detail LIKE "
                   "'the file ends inside the top-level array, after record 1%'") == 1);

    // a non-object element is a record like any other: not_an_object
    write_file(t / "mixed.json", R"([1, "two", {"instruction":"three","output":"x"}, null])");
    auto s6 = run_collect(d, {t / "mixed.json"});
    CHECK(s6.calls == 1);
    CHECK(s6.quarantined_by_reason["not_an_object"] == 3);
}
