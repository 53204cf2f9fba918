// eval's driver: scoring a generated answer against the logged one per response kind, the icl
// prompt, the report renderers (the HTML page parsed back: charts and numbers), --fail-under and
// --threshold parsing, and `slmctl eval` end to end with SmolLM2 on a sample_logs tool-call cluster
// (base, icl and a freshly fine-tuned adapter; customized must beat base); JSON answers against
// their requests' response_format schemas and prose scored by a canned LLM judge, end to end.
#include <doctest/doctest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/eval.h"
#include "model/model.h"
#include "model/response-codec.h"
#include "tests/eval/canned-server.h"
#include "tests/test-util.h"

using namespace slm;
using namespace slm::eval;
using json = nlohmann::json;
using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

const char* email_tools =
    R"([{"type":"function","function":{"name":"send_email","parameters":{"type":"object","properties":)"
    R"({"to":{"type":"string"},"subject":{"type":"string"}},"required":["to","subject"]}}}])";

store::call_row tool_call_row() {
    store::call_row c;
    c.id = 7;
    c.messages = R"([{"role":"user","content":"Email ann@x.org about Lunch"}])";
    c.tools = email_tools;
    c.response_tool_calls = R"([{"name":"send_email","arguments":{"to":"ann@x.org","subject":"Lunch"}}])";
    return c;
}

store::call_row text_row(const std::string& answer) {
    store::call_row c;
    c.id = 8;
    c.messages = R"([{"role":"user","content":"Summarise"}])";
    c.response_text = answer;
    return c;
}

const auto chatml = model::response_codec::for_format(model::chat_format::chatml);

}  // namespace

TEST_CASE("score_answer: tool calls pass on name and arguments, fail with the kind of failure") {
    auto c = tool_call_row();
    auto ok = score_answer(c, chatml,
                           "<tool_call>\n{\"name\": \"send_email\", \"arguments\": {\"subject\": \"lunch\", \"to\": "
                           "\"ann@x.org\"}}\n</tool_call><|im_end|>");
    CHECK(ok.kind == response_kind::tool_call);
    CHECK(ok.score == 1);
    CHECK(ok.passed);
    CHECK(ok.details["name_ok"] == true);

    auto wrong = score_answer(c, chatml,
                              "<tool_call>\n{\"name\": \"send_email\", \"arguments\": {\"to\": \"bob@x.org\", "
                              "\"subject\": \"Lunch\"}}\n</tool_call>");
    CHECK(wrong.score == 0);
    CHECK(wrong.details["name_ok"] == true);
    CHECK(wrong.details["failure"] == "wrong_value");

    auto name = score_answer(c, chatml, "<tool_call>\n{\"name\": \"send_sms\", \"arguments\": {}}\n</tool_call>");
    CHECK(name.details["name_ok"] == false);
    CHECK(name.details["failure"] == "wrong_name");

    auto text = score_answer(c, chatml, "Sure, I will email Ann.");
    CHECK(text.score == 0);
    CHECK(text.details["failure"] == "wrong_count");

    auto broken = score_answer(c, chatml, "<tool_call>\n{\"name\": \"send_email\", \"arguments\": {\"to\": \n</tool_call>");
    CHECK_FALSE(broken.parsed);
    CHECK(broken.score == 0);
    CHECK(broken.details["failure"] == "unparseable");
}

TEST_CASE("score_answer: prose by chrF with the pass threshold, JSON by validity, empty by exact match") {
    auto c = text_row("The meeting moved to Tuesday at noon.");
    auto same = score_answer(c, chatml, "The meeting moved to Tuesday at noon.");
    CHECK(same.kind == response_kind::prose);
    CHECK(same.score == doctest::Approx(1.0));
    CHECK(same.passed);
    CHECK(same.details["exact"] == true);
    auto other = score_answer(c, chatml, "Completely unrelated words here.");
    CHECK(other.score < 0.3);
    CHECK_FALSE(other.passed);
    verdict_params lax;
    lax.prose = 0.0;
    CHECK(score_answer(c, chatml, "Completely unrelated words here.", lax).passed);

    auto j = text_row(R"({"status": "ok", "items": [1, 2]})");
    CHECK(score_answer(j, chatml, "{\"status\": \"done\"}").kind == response_kind::json);
    CHECK(score_answer(j, chatml, "```json\n{\"status\": \"done\"}\n```").score == 1);
    CHECK(score_answer(j, chatml, "{\"status\": ").score == 0);

    store::call_row e = text_row("");
    e.response_text.reset();
    CHECK(score_answer(e, chatml, "").kind == response_kind::empty);
    CHECK(score_answer(e, chatml, "").score == 1);
    CHECK(score_answer(e, chatml, "hello").score == 0);
}

TEST_CASE("score_answer: a JSON answer is held to the request's response_format schema when it had one") {
    auto c = text_row(R"({"city": "Paris", "country": "France"})");
    c.response_format = R"({"json_schema":{"name":"City","schema":{"additionalProperties":false,"properties":)"
                        R"({"city":{"type":"string"},"country":{"type":"string"}},"required":["city","country"],)"
                        R"("type":"object"},"strict":true},"type":"json_schema"})";
    auto ok = score_answer(c, chatml, R"({"city": "Lyon", "country": "France"})");
    CHECK(ok.kind == response_kind::json);
    CHECK(ok.score == 1);
    CHECK(ok.details["schema_checked"] == true);
    CHECK(ok.details["schema_ok"] == true);
    CHECK(ok.details["reference_schema_ok"] == true);
    auto missing = score_answer(c, chatml, R"({"city": "Paris"})");  // valid JSON, not the schema's
    CHECK(missing.score == 0);
    CHECK_FALSE(missing.passed);
    CHECK(missing.details["json_ok"] == true);
    CHECK(missing.details["schema_ok"] == false);
    CHECK(missing.details["detail"].get<std::string>().find("required property 'country'") != std::string::npos);
    auto extra = score_answer(c, chatml, "```json\n{\"city\": \"Paris\", \"country\": \"France\", \"pop\": 2}\n```");
    CHECK(extra.score == 0);
    CHECK(extra.details["detail"].get<std::string>().find("additionalProperties") != std::string::npos);
    auto broken = score_answer(c, chatml, R"({"city": )");
    CHECK(broken.score == 0);
    CHECK(broken.details["json_ok"] == false);
    CHECK(broken.details["schema_ok"] == false);
    // JSON mode without a schema: validity decides; a response_format we cannot read is said, not fatal
    c.response_format = R"({"type":"json_object"})";
    auto mode = score_answer(c, chatml, R"({"city": "Paris"})");
    CHECK(mode.score == 1);
    CHECK(mode.details["schema_checked"] == false);
    CHECK_FALSE(mode.details.contains("schema_ok"));
    c.response_format = R"({"type":"json_schema"})";
    auto unreadable = score_answer(c, chatml, R"({"city": "Paris"})");
    CHECK(unreadable.score == 1);
    CHECK(unreadable.details["response_format_error"].get<std::string>().find("json_schema.schema is missing") !=
          std::string::npos);
    CHECK(json_metric(0, 5) == "JSON validity");
    CHECK(json_metric(5, 5) == "schema validity");
    CHECK(json_metric(2, 5).rfind("schema validity (", 0) == 0);
}

TEST_CASE("icl_system_prompt: the original system prompt, then each example's request and answer") {
    auto ex = tool_call_row();
    auto s = icl_system_prompt("You are Operator.", {&ex}, chatml);
    CHECK(s.rfind("You are Operator.\n\n", 0) == 0);
    CHECK(s.find("Request: Email ann@x.org about Lunch") != std::string::npos);
    CHECK(s.find("<tool_call>") != std::string::npos);
    CHECK(s.find("\"send_email\"") != std::string::npos);
    CHECK(icl_system_prompt("sys", {}, chatml) == "sys");
}

TEST_CASE("set_threshold and check_fail_under read their specs and refuse bad ones") {
    verdict_params p;
    set_threshold(p, "tool_call=0.8");
    CHECK(p.tool_call == doctest::Approx(0.8));
    set_threshold(p, "min_calls=5");
    CHECK(p.min_calls == 5);
    CHECK_THROWS_AS(set_threshold(p, "tool_call"), user_error);
    CHECK_THROWS_AS(set_threshold(p, "tool_call=1.5"), user_error);
    CHECK_THROWS_AS(set_threshold(p, "poetry=0.5"), user_error);
    CHECK_THROWS_AS(set_threshold(p, "min_calls=0"), user_error);

    ojson r = {{"clusters",
                {{{"idx", 0}, {"label", "a"}, {"variants", {{{"variant", "base"}, {"n", 10}, {"value", 0.2}, {"metric", "m"}},
                                                         {{"variant", "customized"}, {"n", 10}, {"value", 0.9}, {"metric", "m"}}}}}}},
               {"shares",
                {{{"agent", "operator"}, {"share", {{"value", 0.5}}}}, {{"agent", "total"}, {"share", {{"value", 0.3}}}}}}};
    CHECK(check_fail_under(r, "0.25").empty());
    CHECK(check_fail_under(r, "share=0.4").size() == 1);
    CHECK(check_fail_under(r, "operator=0.5").empty());
    CHECK(check_fail_under(r, "operator=0.6").size() == 1);
    CHECK(check_fail_under(r, "customized=0.8").empty());
    CHECK(check_fail_under(r, "base=0.8").size() == 1);
    CHECK(check_fail_under(r, "icl=0.1").size() == 1);  // no cluster ran icl: that fails, it does not pass
    CHECK_THROWS_AS(check_fail_under(r, "share=abc"), user_error);
    CHECK_THROWS_AS(check_fail_under(r, "nobody=0.5"), user_error);
    CHECK_THROWS_AS(check_fail_under(r, "2"), user_error);
}

TEST_CASE("render_html: one page with the share and cluster charts carrying the report's numbers") {
    ojson r = {{"run_id", 3},
               {"cluster_run", 1},
               {"base", "m.gguf"},
               {"clusters",
                {{{"idx", 0},
                  {"label", "send_email <to>"},
                  {"kind", "tool_call"},
                  {"volume", 40},
                  {"evaluated", 10},
                  {"replaceable", true},
                  {"chosen", "customized"},
                  {"reason", "ok"},
                  {"loss_curve", {{{"step", 0}, {"train_loss", 0}, {"val_loss", 1.2}}, {{"step", 1}, {"train_loss", 1.0}},
                                  {{"step", 2}, {"train_loss", 0.5}, {"val_loss", 0.4}}}},
                  {"variants",
                   {{{"variant", "base"}, {"n", 10}, {"value", 0.1}, {"lo", 0.02}, {"hi", 0.4}, {"metric", "name+args accuracy"}},
                    {{"variant", "customized"}, {"n", 10}, {"value", 0.9}, {"lo", 0.6}, {"hi", 0.98}, {"metric", "name+args accuracy"}}}}}}},
               {"shares",
                {{{"agent", "operator"}, {"calls", 40}, {"replaceable_calls", 40},
                  {"share", {{"value", 0.75}, {"lo", 0.5}, {"hi", 1.0}}}, {"cost", {{"llm_usd", 1.0}, {"saving_usd", 0.9}}}},
                 {{"agent", "total"}, {"calls", 40}, {"replaceable_calls", 40},
                  {"share", {{"value", 0.75}, {"lo", 0.5}, {"hi", 1.0}}}, {"cost", {{"llm_usd", 1.0}, {"saving_usd", 0.9}}}}}}};
    auto h = render_html(r);
    CHECK(h.rfind("<!DOCTYPE html>", 0) == 0);
    CHECK(h.find("<script") == std::string::npos);  // self-contained, static
    CHECK(h.find("id=\"share-chart\"") != std::string::npos);
    CHECK(h.find("id=\"cluster-chart\"") != std::string::npos);
    CHECK(h.find("class=\"loss-curve\"") != std::string::npos);
    std::regex bar(R"re(class="metric" data-cluster="(\d+)" data-variant="(\w+)" data-value="([0-9.]+)")re");
    std::map<std::string, double> seen;
    for (auto it = std::sregex_iterator(h.begin(), h.end(), bar); it != std::sregex_iterator(); ++it)
        seen[(*it)[2]] = std::stod((*it)[3]);
    CHECK(seen.size() == 2);
    CHECK(seen["base"] == doctest::Approx(0.1));
    CHECK(seen["customized"] == doctest::Approx(0.9));
    std::regex share(R"re(class="share" data-agent="(\w+)" data-value="([0-9.]+)")re");
    int shares = 0;
    for (auto it = std::sregex_iterator(h.begin(), h.end(), share); it != std::sregex_iterator(); ++it) {
        ++shares;
        CHECK(std::stod((*it)[2]) == doctest::Approx(0.75));
    }
    CHECK(shares == 2);
    CHECK(h.find("75.0% [50.0%, 100.0%]") != std::string::npos);
    auto md = render_markdown(r);
    CHECK(md.find("| operator | 40 | 40 | 75.0% [50.0%, 100.0%]") != std::string::npos);
    auto t = render_table(r);
    CHECK(t.find("REPLACEABLE (customized)") != std::string::npos);
}

TEST_CASE("reports: schema validity and judge scores per variant in the table, markdown and HTML") {
    ojson r = {{"run_id", 4},
               {"cluster_run", 1},
               {"base", "m.gguf"},
               {"clusters",
                {{{"idx", 2},
                  {"label", "extract city"},
                  {"kind", "json"},
                  {"volume", 30},
                  {"evaluated", 8},
                  {"replaceable", false},
                  {"chosen", "base"},
                  {"reason", "low"},
                  {"variants",
                   {{{"variant", "base"}, {"n", 8}, {"value", 0.25}, {"lo", 0.07}, {"hi", 0.59}, {"metric", "schema validity"},
                     {"json_valid", {{"value", 0.875}, {"lo", 0.53}, {"hi", 0.98}}},
                     {"schema_valid", {{"value", 0.25}, {"lo", 0.07}, {"hi", 0.59}, {"n", 8}}}}}}},
                 {{"idx", 3},
                  {"label", "summaries"},
                  {"kind", "prose"},
                  {"volume", 20},
                  {"evaluated", 5},
                  {"replaceable", false},
                  {"chosen", "base"},
                  {"reason", "low"},
                  {"variants",
                   {{{"variant", "base"}, {"n", 5}, {"value", 0.6}, {"lo", 0.4}, {"hi", 0.8}, {"metric", "judge score"},
                     {"judged", true}, {"judge", {{"value", 0.6}, {"lo", 0.4}, {"hi", 0.8}, {"n", 5}}}}}}}}},
               {"shares", {{{"agent", "total"}, {"calls", 50}, {"replaceable_calls", 0},
                            {"share", {{"value", 0.0}, {"lo", 0.0}, {"hi", 0.0}}}, {"cost", {{"llm_usd", 1.0}, {"saving_usd", 0.0}}}}}}};
    auto t = render_table(r);
    CHECK(t.find("  schema validity") != std::string::npos);
    CHECK(t.find("0.25 [0.07,0.59]") != std::string::npos);
    CHECK(t.find("  JSON validity") != std::string::npos);
    CHECK(t.find("0.88 [0.53,0.98]") != std::string::npos);
    CHECK(t.find("  judge score") != std::string::npos);
    auto md = render_markdown(r);
    CHECK(md.find("| 2 extract city | schema validity | 8 | 0.25 [0.07,0.59] | - | - |") != std::string::npos);
    CHECK(md.find("| 3 summaries | judge score | 5 | 0.60 [0.40,0.80] | - | - |") != std::string::npos);
    auto h = render_html(r);
    CHECK(h.find(R"(data-cluster="2" data-metric="schema_valid" data-variant="base" data-value="0.2500")") != std::string::npos);
    CHECK(h.find(R"(data-cluster="2" data-metric="json_valid" data-variant="base" data-value="0.8750")") != std::string::npos);
    CHECK(h.find(R"(data-cluster="3" data-metric="judge" data-variant="base" data-value="0.6000")") != std::string::npos);
}

namespace {
bool have_smollm2() { return fs::exists(model::default_smollm2_path()); }
}  // namespace

TEST_CASE("slmctl eval end to end: base, icl and customized on a templated tool-call cluster" *
          doctest::skip(!have_smollm2())) {
    test::temp_dir t;
    const std::string db = t / "calls.db";
    auto c = test::run_slmctl("collect '" + test::source_dir("sample_logs/workflow_operator.jsonl") + "' --db '" + db + "' -q");
    REQUIRE(c.exit_code == 0);
    auto k = test::run_slmctl("cluster --db '" + db + "' --json");
    REQUIRE_MESSAGE(k.exit_code == 0, k.err);
    int cluster = -1;
    const auto kj = json::parse(k.out);
    for (const auto& cl : kj.at("clusters"))
        if (cl.value("label", "").rfind("send_email", 0) == 0) cluster = cl.at("id").get<int>();
    REQUIRE(cluster >= 0);

    // bad input first: clear errors, nothing run
    auto bad = test::run_slmctl(fmt::format("eval --db '{}' --cluster 999", db));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("has no cluster 999") != std::string::npos);
    bad = test::run_slmctl(fmt::format("eval --db '{}' --variants base,oracle", db));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("'oracle' is not one of") != std::string::npos);
    bad = test::run_slmctl(fmt::format("eval --db '{}' --report", db));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("no finished eval run") != std::string::npos);

    auto ft = test::run_slmctl(fmt::format("finetune --db '{}' --cluster {} --max-tokens 384 --batch-size 4 --max-steps 16 "
                                           "--eval-every 0 --val-max 4 --lr 2e-3 --seed 1 --format gguf -q --out '{}'",
                                           db, cluster, t / "adapter"));
    REQUIRE_MESSAGE(ft.exit_code == 0, ft.err);

    const std::string html = t / "report.html", md = t / "report.md";
    auto r = test::run_slmctl(fmt::format("eval --db '{}' --cluster {} --max-calls 10 --json --html '{}' --md '{}'", db,
                                          cluster, html, md));
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    auto j = json::parse(r.out);
    REQUIRE(j.at("clusters").size() == 1);
    const auto& cl = j["clusters"][0];
    CHECK(cl.at("kind") == "tool_call");
    CHECK(cl.at("evaluated") == 10);
    std::map<std::string, json> v;
    for (const auto& x : cl.at("variants")) v[x.at("variant")] = x;
    REQUIRE(v.size() == 3);
    for (const auto& [name, x] : v) {
        CAPTURE(name);
        CHECK(x.at("n") == 10);
        CHECK(x.at("lo").get<double>() <= x.at("value").get<double>());
        CHECK(x.at("value").get<double>() <= x.at("hi").get<double>());
        CHECK(x.at("tokens_per_s").get<double>() > 0);
        CHECK(x.contains("name_accuracy"));
    }
    // 16 steps on the cluster's own calls: the adapter writes the template's tool call with the right
    // name; the base model (0 of 10 on a dev run) mostly writes prose or code instead
    CHECK(v["customized"]["value"].get<double>() >= v["base"]["value"].get<double>() + 0.2);
    CHECK(v["customized"]["name_accuracy"]["value"].get<double>() >= 0.6);
    CHECK(v["customized"].contains("adapter_id"));
    CHECK(cl.at("loss_curve").size() == 17);
    // shares: one row for the agent, one total, with an interval
    REQUIRE(j.at("shares").size() == 2);
    CHECK(j["shares"][0]["agent"] == "operator");
    CHECK(j["shares"][1]["agent"] == "total");
    CHECK(j["shares"][1]["calls"] == cl["volume"]);
    // eval_results: one row per call and variant, keyed to the cluster
    {
        auto d = store::db::open(db);
        auto rows = store::eval_results_of_run(d, j.at("run_id").get<int64_t>());
        CHECK(rows.size() == 30);
        int with_adapter = 0;
        for (const auto& row : rows) {
            CHECK(row.cluster_id == cl.at("cluster_id").get<int64_t>());
            with_adapter += row.adapter_id.has_value();
            CHECK(row.score.has_value());
        }
        CHECK(with_adapter == 10);
    }
    auto page = test::read_file(html);
    CHECK(page.find("id=\"cluster-chart\"") != std::string::npos);
    CHECK(page.find(fmt::format("data-variant=\"customized\" data-value=\"{:.4f}\"", v["customized"]["value"].get<double>())) !=
          std::string::npos);
    CHECK(test::read_file(md).find("| operator |") != std::string::npos);

    // the stored run renders again; --fail-under gates on it
    auto again = test::run_slmctl(fmt::format("eval --db '{}' --report --json", db));
    REQUIRE_MESSAGE(again.exit_code == 0, again.err);
    CHECK(json::parse(again.out).at("run_id") == j.at("run_id"));
    auto gate = test::run_slmctl(fmt::format("eval --db '{}' --report 0 --fail-under base=0.99", db));
    CHECK(gate.exit_code == 1);
    CHECK(gate.err.find("fail-under: cluster") != std::string::npos);
    auto pass = test::run_slmctl(fmt::format("eval --db '{}' --report 0 --fail-under share=0", db));
    CHECK(pass.exit_code == 0);
}

namespace {

// Writes `n` calls that ask for a city as JSON under a response_format schema, and `n` that ask for
// a one-line summary in prose: two tasks, two clusters.
void write_schema_and_prose_calls(const std::string& path, int n) {
    const char* cities[][2] = {{"Paris", "France"},  {"Lyon", "France"},     {"Berlin", "Germany"}, {"Munich", "Germany"},
                               {"Rome", "Italy"},     {"Milan", "Italy"},     {"Madrid", "Spain"},   {"Seville", "Spain"},
                               {"Lisbon", "Portugal"}, {"Porto", "Portugal"}, {"Vienna", "Austria"}, {"Oslo", "Norway"}};
    const char* topics[] = {"the budget review", "the hiring plan", "the office move", "the release date",
                            "the vendor contract", "the security audit", "the team offsite", "the roadmap"};
    const json schema = {{"type", "json_schema"},
                         {"json_schema",
                          {{"name", "City"},
                           {"strict", true},
                           {"schema",
                            {{"type", "object"},
                             {"properties", {{"city", {{"type", "string"}}}, {"country", {{"type", "string"}}}}},
                             {"required", {"city", "country"}},
                             {"additionalProperties", false}}}}}};
    std::ofstream f(path);
    for (int i = 0; i < n; ++i) {
        const auto* c = cities[i % 12];
        json req = {{"model", "gpt-4o"},
                    {"messages", {{{"role", "system"}, {"content", "You extract places as JSON."}},
                                  {{"role", "user"}, {"content", fmt::format("Which city is this about, and in which country? "
                                                                             "\"Our trip #{} to {} was lovely.\"", i, c[0])}}}},
                    {"response_format", schema}};
        json resp = {{"choices", {{{"message", {{"role", "assistant"},
                                                {"content", json{{"city", c[0]}, {"country", c[1]}}.dump()}}}}}},
                     {"usage", {{"prompt_tokens", 40}, {"completion_tokens", 12}}}};
        f << json{{"workload_id", "travel.extract"}, {"request", req}, {"response", resp}}.dump() << "\n";
    }
    for (int i = 0; i < n; ++i) {
        const char* t = topics[i % 8];
        json req = {{"model", "gpt-4o"},
                    {"messages", {{{"role", "user"}, {"content", fmt::format("In one sentence, what did meeting {} decide "
                                                                             "about {}? Notes: we agreed to go ahead with "
                                                                             "{} next month.", i, t, t)}}}}};
        json resp = {{"choices", {{{"message", {{"role", "assistant"},
                                                {"content", fmt::format("The meeting decided to go ahead with {} next month.", t)}}}}}},
                     {"usage", {{"prompt_tokens", 50}, {"completion_tokens", 14}}}};
        f << json{{"workload_id", "office.notes"}, {"request", req}, {"response", resp}}.dump() << "\n";
    }
}

}  // namespace

TEST_CASE("slmctl eval end to end: schema validity of JSON answers and an LLM judge on prose" *
          doctest::skip(!have_smollm2())) {
    test::temp_dir t;
    const std::string logs = t / "calls.jsonl", db = t / "calls.db";
    write_schema_and_prose_calls(logs, 30);
    REQUIRE(test::run_slmctl(fmt::format("collect '{}' --db '{}' -q", logs, db)).exit_code == 0);
    {
        auto d = store::db::open(db);
        auto c = store::get_call(d, 1);
        REQUIRE(c);
        CHECK(json::parse(c->response_format)["json_schema"]["schema"]["required"].size() == 2);
    }
    // two tasks, two clusters: the city prompts differ in every word that matters to tf-idf, so no
    // call is left as noise
    auto k = test::run_slmctl(fmt::format("cluster --db '{}' --k 2 --noise-similarity -1 --json", db));
    REQUIRE_MESSAGE(k.exit_code == 0, k.err);

    // the judge: canned replies, always 6/10
    std::atomic<int> asked{0};
    test::canned_server judge([&](const std::string&) {
        ++asked;
        const std::string body =
            json{{"choices", {{{"message", {{"role", "assistant"}, {"content", "Close to the reference. Score: 6/10"}}}}}}}.dump();
        return std::vector<std::string>{fmt::format("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}", body.size(), body)};
    });
    // a judge nobody answers at: a clear error before any model loads, and no eval run
    int dead_port = 0;
    {
        test::canned_server gone([](const std::string&) { return std::vector<std::string>{}; });
        dead_port = gone.port();
    }
    auto bad = test::run_slmctl(fmt::format("eval --db '{}' --all --variants base --judge http://127.0.0.1:{}", db, dead_port));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find(fmt::format("http://127.0.0.1:{}/v1/chat/completions: cannot connect", dead_port)) != std::string::npos);
    bad = test::run_slmctl(fmt::format("eval --db '{}' --all --variants base --judge https://api.example.com", db));
    CHECK(bad.exit_code == 1);
    CHECK(bad.err.find("https is not supported") != std::string::npos);
    CHECK(test::run_slmctl(fmt::format("eval --db '{}' --report", db)).err.find("no finished eval run") != std::string::npos);

    auto r = test::run_slmctl(fmt::format("eval --db '{}' --all --variants base --max-calls 3 --threshold min_calls=1 "
                                          "--judge '{}' --judge-model smol --json",
                                          db, judge.url()));
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    auto j = json::parse(r.out);
    int json_calls = 0, prose_calls = 0;
    for (const auto& cl : j.at("clusters")) {
        if (cl.value("evaluated", 0) == 0) continue;
        const auto& v = cl.at("variants").at(0);
        CAPTURE(cl.dump());
        if (cl.at("kind") == "json") {
            json_calls += v.at("n").get<int>();
            CHECK(v.at("metric") == "schema validity");
            REQUIRE(v.contains("schema_valid"));
            CHECK(v["schema_valid"].at("n") == v.at("n"));
            CHECK(v["schema_valid"].at("value") == v.at("value"));  // the schema is the main metric
            CHECK(v["schema_valid"].at("value").get<double>() <= v.at("json_valid").at("value").get<double>());
            CHECK_FALSE(v.contains("judge"));
        } else if (cl.at("kind") == "prose") {
            prose_calls += v.at("n").get<int>();
            CHECK(v.at("metric") == "judge score");
            CHECK(v.at("judged") == true);
            CHECK(v.at("value").get<double>() == doctest::Approx(0.6));
            CHECK(v.at("judge").at("n") == v.at("n"));
            CHECK(v.contains("chrf"));  // still measured beside the judge
            // judged: the judge's threshold (0.8) decides, and 0.6 is below it
            CHECK(v.at("reason").get<std::string>().find("threshold 0.800 for prose (judged)") != std::string::npos);
        }
    }
    CHECK(json_calls >= 3);
    CHECK(prose_calls >= 3);
    CHECK(judge.requests().at(1).find("\"model\":\"smol\"") != std::string::npos);
    {
        auto d = store::db::open(db);
        int judged = 0, schema_rows = 0;
        for (const auto& row : store::eval_results_of_run(d, j.at("run_id").get<int64_t>())) {
            auto det = json::parse(row.details);
            if (det.at("kind") == "prose") {
                REQUIRE(row.judge_score.has_value());
                CHECK(*row.judge_score == doctest::Approx(0.6));
                CHECK(det.at("judge").at("reply") == "Close to the reference. Score: 6/10");
                ++judged;
            } else if (det.at("kind") == "json") {
                CHECK_FALSE(row.judge_score.has_value());
                CHECK(det.at("schema_checked") == true);
                CHECK(row.score == (det.at("schema_ok") == true ? 1.0 : 0.0));
                ++schema_rows;
            }
        }
        CHECK(judged == prose_calls);
        CHECK(schema_rows == json_calls);
        CHECK(asked.load() == 1 + judged);  // the check, then one judgement per prose answer
    }
    // the stored run renders the same sections
    auto md = test::run_slmctl(fmt::format("eval --db '{}' --report --md '{}'", db, t / "r.md"));
    REQUIRE_MESSAGE(md.exit_code == 0, md.err);
    CHECK(md.out.find("  schema validity") != std::string::npos);
    CHECK(md.out.find("  judge score") != std::string::npos);
    const auto text = test::read_file(t / "r.md");
    CHECK(text.find("| schema validity |") != std::string::npos);
    CHECK(text.find("| judge score |") != std::string::npos);
}
