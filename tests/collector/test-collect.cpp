// collect runs through the API: real recorded pairs, the OTLP fixture, pretty-printed documents,
// gzip and directories, dedupe on re-ingest, quarantine rows and the runs row, threaded == serial.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "collector/collector.h"
#include "common/common.h"
#include "store/store.h"
#include "../test-util.h"
#include "helpers.h"

using namespace slm;
using nlohmann::json;

namespace {

using test::content_digest;
using test::count;
using test::write_file;
using test::write_gz;

collector::collect_summary run_collect(store::db& d, std::vector<std::string> paths,
                                       std::function<void(collector::collect_params&)> tweak = {}) {
    collector::collect_params p;
    p.paths = std::move(paths);
    if (tweak) tweak(p);
    return collector::collect(d, p);
}

}  // namespace

TEST_CASE("the shared real {request, response} pairs all ingest, with 0 quarantines") {
    std::string path = test::shared_data("logs/pydantic-ai-chat-completions.jsonl");
    REQUIRE(std::filesystem::exists(path));
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto s = run_collect(d, {path});
    CHECK(s.status == "ok");
    CHECK(s.lines == 368);
    CHECK(s.quarantined == 0);
    CHECK(s.calls == 368);
    CHECK(s.ingested + s.duplicate == 368);
    CHECK(count(d, "SELECT count(*) FROM calls") == s.ingested);
    // Python's json counts 245 distinct (model, messages, tools, response) raw; normalization folds
    // two more pairs: an answer that differs only by a dropped thinking part (lines 84-86), and a
    // system prompt sent as one text part with a cache_control hint vs as a string (344, 353)
    CHECK(s.ingested == 243);
    CHECK(s.duplicate == 125);
    CHECK(count(d, "SELECT count(*) FROM calls WHERE response_tool_calls IS NOT NULL") == 76);
    CHECK(count(d, "SELECT count(*) FROM calls WHERE task_text = ''") == 0);
    CHECK(count(d, "SELECT count(*) FROM calls WHERE format <> 'pair'") == 0);
    // each stored JSON column parses
    auto st = d.prepare("SELECT messages, ifnull(tools,'[]'), ifnull(response_tool_calls,'[]'), scrubbed, flags FROM calls");
    int rows = 0;
    while (st.step()) {
        ++rows;
        for (int c = 0; c < 5; ++c) CHECK_NOTHROW(json::parse(st.get_text(c)));
    }
    CHECK(rows == s.ingested);
    // the one tool call recorded without arguments is kept and flagged
    CHECK(s.flags["tool_args_empty"] >= 1);
    // the runs row
    auto r = d.prepare("SELECT command, status, params, summary FROM runs WHERE id = ?");
    r.bind(1, s.run_id);
    REQUIRE(r.step());
    CHECK(r.get_text(0) == "collect");
    CHECK(r.get_text(1) == "ok");
    CHECK(json::parse(r.get_text(2))["scrub"] == "on");
    CHECK(json::parse(r.get_text(3))["ingested"] == s.ingested);
}

TEST_CASE("re-ingesting adds nothing: calls are duplicates, quarantine rows are not repeated") {
    test::temp_dir t;
    std::string good = R"({"request":{"messages":[{"role":"user","content":"q LINE"}]},"response":{"choices":[{"message":{"content":"a LINE"}}]}})";
    std::string text;
    for (int i = 0; i < 50; ++i) {
        std::string l = good;
        for (size_t p; (p = l.find("LINE")) != std::string::npos;) l.replace(p, 4, std::to_string(i));
        text += l + "\n";
        if (i % 10 == 3) text += "{broken json\n";
    }
    text += good + "\n";  // an exact duplicate of... itself once
    text += good + "\n";
    write_file(t / "in.jsonl", text);
    auto d = store::db::open(t / "a.db");
    auto s1 = run_collect(d, {t / "in.jsonl"}, [](auto& p) { p.batch = 7; });
    CHECK(s1.ingested == 51);
    CHECK(s1.duplicate == 1);
    CHECK(s1.quarantined == 5);
    CHECK(s1.quarantine_new == 5);
    CHECK(s1.quarantined_by_reason["invalid_json"] == 5);
    std::string before = content_digest(d);
    auto s2 = run_collect(d, {t / "in.jsonl"});
    CHECK(s2.ingested == 0);
    CHECK(s2.duplicate == 52);
    CHECK(s2.quarantined == 5);
    CHECK(s2.quarantine_new == 0);
    CHECK(content_digest(d) == before);
    CHECK(count(d, "SELECT count(*) FROM calls") == 51);
    CHECK(count(d, "SELECT count(*) FROM quarantine") == 5);
    // line numbers of the quarantined lines: 5, 16, 27, 38, 49 (1-based)
    auto q = d.prepare("SELECT source_line FROM quarantine ORDER BY source_line");
    std::vector<int64_t> lines;
    while (q.step()) lines.push_back(q.get_int(0));
    CHECK(lines == std::vector<int64_t>{5, 16, 27, 38, 49});
}

TEST_CASE("OTLP fixture, pretty-printed JSON documents, gzip and directories") {
    test::temp_dir t;
    std::filesystem::create_directories(t.path / "logs" / "b");
    std::filesystem::create_directories(t.path / "logs" / ".hidden");
    std::filesystem::copy_file(test::source_dir("tests/collector/data/otel-genai-spans.jsonl"), t.path / "logs" / "a-otel.jsonl");
    // a pretty-printed array of fine-tuning records
    json arr = json::array();
    for (int i = 0; i < 3; ++i)
        arr.push_back({{"messages", {{{"role", "user"}, {"content", "pretty " + std::to_string(i)}},
                                     {{"role", "assistant"}, {"content", "ok " + std::to_string(i)}}}}});
    write_file((t.path / "logs" / "b" / "pretty.json").string(), arr.dump(2) + "\n");
    write_gz((t.path / "logs" / "b" / "z.jsonl.gz").string(),
             R"({"messages":[{"role":"user","content":"gz 1"},{"role":"assistant","content":"x"}]})"
             "\n\n"
             R"({"messages":[{"role":"user","content":"gz 2"},{"role":"assistant","content":"y"}]})"
             "\n");
    // a pretty-printed OTLP export (one document): a changed copy of the fixture's line 2
    {
        std::string l2 = test::read_file(test::source_dir("tests/collector/data/otel-genai-spans.jsonl"));
        l2 = l2.substr(l2.find('\n') + 1);
        l2 = l2.substr(0, l2.find('\n'));
        for (size_t p; (p = l2.find("OPS-4411")) != std::string::npos;) l2.replace(p, 8, "OPS-9000");
        write_file((t.path / "logs" / "b" / "otel-pretty.json").string(), json::parse(l2).dump(2) + "\n");
    }
    write_file((t.path / "logs" / ".hidden" / "skip.jsonl").string(), "garbage\n");
    write_file((t.path / "logs" / "README.md").string(), "# not a log\n");
    auto d = store::db::open(t / "a.db");
    auto s = run_collect(d, {(t.path / "logs").string()});
    CHECK(s.files == 4);
    CHECK(s.by_format["otel"] == 7);
    CHECK(s.by_format["finetune"] == 5);
    CHECK(s.skipped_spans == 4);
    CHECK(s.quarantined == 1);
    CHECK(s.blank == 1);
    CHECK(s.ingested == 12);
    // pretty.json: the elements start on lines 2, 14, 26 of the document
    auto q = d.prepare("SELECT source_line FROM calls WHERE source_file LIKE '%/pretty.json' ORDER BY source_line");
    std::vector<int64_t> lines;
    while (q.step()) lines.push_back(q.get_int(0));
    CHECK(lines == std::vector<int64_t>{2, 14, 26});
    auto g = d.prepare("SELECT source_line FROM calls WHERE source_file LIKE '%z.jsonl.gz' ORDER BY source_line");
    lines.clear();
    while (g.step()) lines.push_back(g.get_int(0));
    CHECK(lines == std::vector<int64_t>{1, 3});
    CHECK(count(d, "SELECT count(*) FROM quarantine WHERE source_file LIKE '%.hidden%' OR source_file LIKE '%README%'") == 0);
}

TEST_CASE("threaded collect stores exactly what the serial one does") {
    test::temp_dir t;
    std::string path = test::shared_data("logs/pydantic-ai-chat-completions.jsonl");
    auto d1 = store::db::open(t / "serial.db");
    auto d2 = store::db::open(t / "threaded.db");
    auto s1 = run_collect(d1, {path, test::source_dir("tests/collector/data/otel-genai-spans.jsonl")},
                          [](auto& p) { p.threads = 1; });
    auto s2 = run_collect(d2, {path, test::source_dir("tests/collector/data/otel-genai-spans.jsonl")},
                          [](auto& p) { p.threads = 3; });
    CHECK(s1.ingested == s2.ingested);
    CHECK(s1.quarantined == s2.quarantined);
    CHECK(content_digest(d1) == content_digest(d2));
}

TEST_CASE("bad inputs are user errors; a failed run is recorded") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    CHECK_THROWS_AS(run_collect(d, {t / "missing.jsonl"}), user_error);
    CHECK_THROWS_AS(run_collect(d, {}), user_error);
    write_file(t / "x.jsonl", "{}\n");
    CHECK_THROWS_AS(run_collect(d, {t / "x.jsonl"}, [](auto& p) { p.format = "yaml"; }), user_error);
    // a corrupt gzip member fails the run after what was read is committed
    std::string gz = t / "bad.jsonl.gz";
    write_gz(gz, std::string(R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]})") + "\n");
    std::string bytes = test::read_file(gz);
    bytes.resize(bytes.size() - 8);
    bytes += "garbage!garbage!";
    write_file(gz, bytes);
    CHECK_THROWS_AS(run_collect(d, {gz}), user_error);
    CHECK(count(d, "SELECT count(*) FROM runs WHERE status = 'failed'") == 1);
}

TEST_CASE("overlong lines are quarantined without loading them") {
    test::temp_dir t;
    std::string big = R"({"messages":[{"role":"user","content":")" + std::string(300000, 'x') + R"("},{"role":"assistant","content":"a"}]})";
    std::string small = R"({"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]})";
    write_file(t / "in.jsonl", small + "\n" + big + "\n" + small + "2\n");
    auto d = store::db::open(t / "a.db");
    auto s = run_collect(d, {t / "in.jsonl"}, [](auto& p) { p.max_line_bytes = 100000; });
    CHECK(s.quarantined_by_reason["line_too_long"] == 1);
    CHECK(s.quarantined_by_reason["invalid_json"] == 1);  // "small2": trailing characters
    CHECK(s.ingested == 1);
    auto q = d.prepare("SELECT source_line, length(raw) FROM quarantine WHERE reason = 'line_too_long'");
    REQUIRE(q.step());
    CHECK(q.get_int(0) == 2);
    CHECK(q.get_int(1) == 100000);
}
