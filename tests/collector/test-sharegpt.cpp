// collect learns the fine-tuning dataset forms: LLaMA-Factory's ShareGPT (the real glaive tool-calling
// conversations) and Alpaca; bad records are quarantined with the turn named.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "collector/collector.h"
#include "common/common.h"
#include "store/stages.h"
#include "store/store.h"
#include "../test-util.h"
#include "helpers.h"

using namespace slm;
using nlohmann::json;

namespace {
collector::collect_summary collect_files(store::db& d, std::vector<std::string> paths, const std::string& format = "auto") {
    collector::collect_params p;
    p.paths = std::move(paths);
    p.format = format;
    return collector::collect(d, p);
}
}  // namespace

TEST_CASE("ShareGPT: every gpt / function_call turn of the real glaive conversations is one call") {
    const std::string path = test::shared_data("logs/glaive_toolcall_en_demo.json");
    REQUIRE(std::filesystem::exists(path));
    // expected counts, from the raw file
    std::ifstream f(path);
    auto raw = json::parse(f);
    int64_t turns = 0, calls_turns = 0;
    for (const auto& r : raw)
        for (const auto& t : r["conversations"]) {
            turns += t["from"] == "gpt" || t["from"] == "function_call";
            calls_turns += t["from"] == "function_call";
        }
    test::temp_dir tmp;
    auto d = store::db::open(tmp / "g.db");
    auto s = collect_files(d, {path});
    CHECK(s.status == "ok");
    CHECK(s.quarantined == 0);
    CHECK(s.calls == turns);
    CHECK(s.by_format["sharegpt"] == turns);
    CHECK(s.ingested + s.duplicate == turns);
    CHECK(test::count(d, "SELECT count(*) FROM calls WHERE response_tool_calls IS NOT NULL") >= calls_turns - s.duplicate);

    // the call of the first function_call turn of record 0: request = the conversation before it
    int64_t id = 0;
    {
        auto st = d.prepare("SELECT id FROM calls WHERE source_line = 2 AND response_tool_calls IS NOT NULL ORDER BY id LIMIT 1");
        REQUIRE(st.step());
        id = st.get_int(0);
    }
    auto c = store::get_call(d, id);
    REQUIRE(c);
    auto msgs = json::parse(c->messages);
    const auto& conv = raw[0]["conversations"];
    size_t k = 0;
    while (conv[k]["from"] != "function_call") ++k;
    REQUIRE(msgs.size() == k);  // no system prompt in this record
    CHECK(msgs[0]["role"] == "user");
    CHECK(msgs[1]["role"] == "assistant");
    CHECK(msgs[k - 1]["role"] == "user");
    auto want = json::parse(conv[k]["value"].get<std::string>());
    auto got = json::parse(c->response_tool_calls);
    REQUIRE(got.size() == 1);
    CHECK(got[0]["name"] == want["name"]);
    CHECK(got[0]["arguments"] == want["arguments"]);  // parsed JSON, not a string
    auto tools = json::parse(c->tools);
    REQUIRE(tools.is_array());
    CHECK(tools[0]["type"] == "function");
    CHECK(tools[0]["function"]["name"] == json::parse(raw[0]["tools"].get<std::string>())[0]["name"]);
    // re-collect adds nothing
    auto again = collect_files(d, {path});
    CHECK(again.ingested == 0);
    CHECK(again.duplicate == turns);
}

TEST_CASE("ShareGPT tool results answer the call before them; Alpaca with history; forced formats") {
    test::temp_dir t;
    const std::string sg = t / "sg.jsonl";
    test::write_file(sg,
                     R"({"system":"You are a travel agent.","tools":"[{\"name\":\"book\",\"parameters\":{\"type\":\"object\"}}]","conversations":[)"
                     R"({"from":"human","value":"book me a flight to Oslo"},)"
                     R"({"from":"function_call","value":"{\"name\":\"book\",\"arguments\":{\"to\":\"OSL\"}}"},)"
                     R"({"from":"observation","value":"{\"ok\":true}"},)"
                     R"({"from":"gpt","value":"Booked."}]})"
                     "\n");
    const std::string al = t / "al.jsonl";
    test::write_file(al, R"({"instruction":"Translate","input":"Hallo","output":"Hello","history":[["Hi","Hi there"]]})" "\n");
    auto d = store::db::open(t / "a.db");
    auto s = collect_files(d, {sg, al});
    CHECK(s.quarantined == 0);
    CHECK(s.by_format["sharegpt"] == 2);
    CHECK(s.by_format["alpaca"] == 1);
    auto st = d.prepare("SELECT messages, ifnull(response_text, ''), format FROM calls ORDER BY id");
    std::vector<std::tuple<json, std::string, std::string>> rows;
    while (st.step()) rows.emplace_back(json::parse(st.get_text(0)), st.get_text(1), st.get_text(2));
    REQUIRE(rows.size() == 3);
    const auto& [m2, text2, f2] = rows[1];  // the final answer after the tool result
    CHECK(text2 == "Booked.");
    REQUIRE(m2.size() == 4);
    CHECK(m2[0]["role"] == "system");
    CHECK(m2[2]["role"] == "assistant");
    CHECK(m2[3]["role"] == "tool");
    CHECK(m2[3]["tool_call_id"] == m2[2]["tool_calls"][0]["id"]);
    const auto& [m3, text3, f3] = rows[2];
    CHECK(f3 == "alpaca");
    CHECK(text3 == "Hello");
    REQUIRE(m3.size() == 3);
    CHECK(m3[0]["content"] == "Hi");
    CHECK(m3[1]["content"] == "Hi there");
    CHECK(m3[2]["content"] == "Translate\nHallo");

    // --format sharegpt refuses an Alpaca record (and the other way round)
    auto d2 = store::db::open(t / "b.db");
    auto f = collect_files(d2, {al}, "sharegpt");
    CHECK(f.quarantined == 1);
    CHECK(test::count(d2, "SELECT count(*) FROM quarantine WHERE reason = 'format_mismatch'") == 1);
}

TEST_CASE("ShareGPT: bad records are quarantined whole, naming the turn") {
    test::temp_dir t;
    const std::string p = t / "bad.json";
    test::write_file(p, R"([
 {"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "beep"}]},
 {"conversations": [{"from": "human", "value": "x"}, {"from": "function_call", "value": "not json"}]},
 {"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}], "tools": "[oops"},
 {"conversations": [{"from": "gpt", "value": "hello first"}]},
 {"conversations": [{"from": "human", "value": "only a question"}]},
 {"conversations": [{"from": "human", "value": "fine"}, {"from": "gpt", "value": "ok"}]}
])");
    auto d = store::db::open(t / "a.db");
    auto s = collect_files(d, {p});
    CHECK(s.calls == 1);
    CHECK(s.quarantined == 5);
    auto q = d.prepare("SELECT source_line, reason, detail FROM quarantine ORDER BY source_line");
    std::vector<std::string> details;
    std::vector<int64_t> lines;
    while (q.step()) {
        lines.push_back(q.get_int(0));
        details.push_back(q.get_text(1) + ": " + q.get_text(2));
    }
    REQUIRE(details.size() == 5);
    CHECK(lines[0] == 2);  // the element's line in the file
    CHECK(details[0].find("conversations[1]: unknown role tag 'robot'") != std::string::npos);
    CHECK(details[1].find("conversations[1]: a function_call value must be JSON") != std::string::npos);
    CHECK(details[2].find("tools is a string that is not JSON") != std::string::npos);
    CHECK(details[3].find("assistant turn before any user turn") != std::string::npos);
    CHECK(details[4].find("no gpt or function_call turn") != std::string::npos);
}
