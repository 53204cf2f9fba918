// store/stages.h: what stages write and read (calls, a clustering run's clusters, members and model,
// the calls of a cluster, splits), and schema 3 migrating a schema-2 database with its rows.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "store/schema.h"
#include "store/stages.h"
#include "../test-util.h"
#include "helpers.h"

using namespace slm;
using json = nlohmann::json;

namespace {

/// Stores three calls through collect's writer: two of workload "ops" (one a tool call), one of "chat".
std::vector<int64_t> add_calls(store::db& d) {
    store::run_scope run(d, "collect", "{}");
    store::call_writer w(d, run.id());
    store::call_insert a;
    a.content_id = "c-a";
    a.response_id = "chatcmpl-a";
    a.source_file = "a.jsonl";
    a.source_line = 1;
    a.format = "flywheel";
    a.workload_id = "ops";
    a.messages = R"([{"role":"system","content":"You are ops."},{"role":"user","content":"refund order 7"}])";
    a.tools = R"([{"type":"function","function":{"name":"refund"}}])";
    a.response_tool_calls = R"([{"name":"refund","arguments":{"order":7}}])";
    a.finish_reason = "tool_calls";
    a.prompt_tokens = 40;
    a.completion_tokens = 9;
    a.latency_ms = 120.5;
    a.task_text = "refund order 7\ntools: refund\nresponse: tool_call:refund";
    store::call_insert b = a;
    b.content_id = "c-b";
    b.response_id = "";
    b.source_line = 2;
    b.messages = R"([{"role":"user","content":"refund order 8"}])";
    b.tools = "";
    b.response_tool_calls = "";
    b.response_text = std::string_view("Refunded order 8.");
    b.prompt_tokens = std::nullopt;
    b.task_text = "refund order 8\nresponse: prose";
    store::call_insert c = b;
    c.content_id = "c-c";
    c.source_line = 3;
    c.workload_id = "chat";
    c.messages = R"([{"role":"user","content":"hello"}])";
    c.response_text = std::string_view("Hi!");
    c.task_text = "hello\nresponse: prose";
    c.response_format = R"({"type":"json_object"})";
    CHECK(w.insert(a));
    CHECK(w.insert(b));
    CHECK(w.insert(c));
    CHECK(!w.insert(a));  // same content id: a duplicate
    store::quarantine_insert q{"a.jsonl", 4, "h1", "invalid_json", "expected '}'", "{trunc"};
    CHECK(w.insert(q));
    CHECK(!w.insert(q));
    run.finish("{}");
    std::vector<int64_t> ids;
    auto s = d.prepare("SELECT id FROM calls ORDER BY id");
    while (s.step()) ids.push_back(s.get_int(0));
    return ids;
}

}  // namespace

TEST_CASE("calls: collect's writer stores NULLs for empty optional fields; get_call reads the JSON back") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto ids = add_calls(d);
    REQUIRE(ids.size() == 3);
    CHECK(test::scalar(d, "SELECT count(*) FROM quarantine") == 1);
    CHECK(test::scalar(d, "SELECT response_id IS NULL AND tools IS NULL AND prompt_tokens IS NULL FROM calls WHERE content_id = 'c-b'") == 1);
    CHECK(test::scalar(d, "SELECT response_text IS NULL FROM calls WHERE content_id = 'c-a'") == 1);
    auto a = store::get_call(d, ids[0]);
    REQUIRE(a);
    CHECK(a->content_id == "c-a");
    CHECK(a->response_id == "chatcmpl-a");
    CHECK(a->workload_id == "ops");
    CHECK(json::parse(a->messages)[1]["content"] == "refund order 7");
    CHECK(json::parse(a->tools)[0]["function"]["name"] == "refund");
    CHECK(!a->response_text.has_value());
    CHECK(json::parse(a->response_tool_calls)[0]["arguments"]["order"] == 7);
    CHECK(a->finish_reason == "tool_calls");
    CHECK(a->prompt_tokens == 40);
    CHECK(a->completion_tokens == 9);
    auto b = store::get_call(d, ids[1]);
    REQUIRE(b);
    CHECK(b->response_text == "Refunded order 8.");
    CHECK(b->tools.empty());
    CHECK(b->response_id.empty());
    CHECK(!b->prompt_tokens.has_value());
    CHECK(b->response_format.empty());
    CHECK(test::scalar(d, "SELECT response_format IS NULL FROM calls WHERE content_id = 'c-b'") == 1);
    CHECK(store::get_call(d, ids[2])->response_format == R"({"type":"json_object"})");
    CHECK(!store::get_call(d, 9999).has_value());
}

TEST_CASE("calls: task texts in id order, by workload, with the system prompt when asked; briefs by id") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto ids = add_calls(d);
    std::vector<int64_t> seen;
    std::vector<std::string> systems, workloads;
    store::call_filter f;
    store::for_each_call_text(d, f, [&](const store::call_text_view& v) {
        seen.push_back(v.id);
        workloads.emplace_back(v.workload_id);
        systems.emplace_back(v.system_prompt);
    });
    CHECK(seen == ids);
    CHECK(workloads == std::vector<std::string>{"ops", "ops", "chat"});
    CHECK(systems == std::vector<std::string>{"", "", ""});  // not asked for
    f.workload = "ops";
    f.system_prompt = true;
    seen.clear();
    systems.clear();
    std::vector<std::string> tasks;
    store::for_each_call_text(d, f, [&](const store::call_text_view& v) {
        seen.push_back(v.id);
        systems.emplace_back(v.system_prompt);
        tasks.emplace_back(v.task_text);
    });
    CHECK(seen == std::vector<int64_t>{ids[0], ids[1]});
    CHECK(systems == std::vector<std::string>{"You are ops.", ""});
    CHECK(tasks[1] == "refund order 8\nresponse: prose");

    auto briefs = store::get_call_briefs(d, {ids[2], ids[0]});
    REQUIRE(briefs.size() == 2);
    CHECK(briefs[0].id == ids[2]);
    CHECK(briefs[0].response_text == "Hi!");
    CHECK(briefs[1].response_text.empty());
    CHECK(briefs[1].response_tool_calls.find("refund") != std::string::npos);
    CHECK(briefs[1].prompt_tokens == 40);
    CHECK_THROWS_AS(store::get_call_briefs(d, {ids[0], 424242}), internal_error);
}

TEST_CASE("a clustering run: clusters (noise last), members, the calls of a cluster, nearest calls, the model") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto ids = add_calls(d);
    store::run_scope run(d, "cluster", R"({"k":"auto"})");
    const int64_t r = run.id();
    std::vector<float> centroid = {0.6f, 0.8f};
    store::cluster_insert noise;
    noise.idx = -1;
    noise.label = "(noise)";
    noise.size = 1;
    noise.share = 1.0 / 3;
    const int64_t noise_id = store::insert_cluster(d, r, noise);  // stored first, read last
    store::cluster_insert refunds;
    refunds.idx = 0;
    refunds.label = "refund order";
    refunds.size = 2;
    refunds.share = 2.0 / 3;
    refunds.suitability = 0.8;
    refunds.stats = R"({"top_terms":[{"term":"refund"}]})";
    refunds.centroid = centroid.data();
    refunds.dim = 2;
    const int64_t refunds_id = store::insert_cluster(d, r, refunds);
    store::insert_members(d, r, {{ids[0], refunds_id, 0.25}, {ids[1], refunds_id, 0.05}, {ids[2], noise_id, 0.9}});
    store::cluster_model m;
    m.embedder = "tfidf";
    m.dim = 2;
    m.blob = {1, 2, 3};
    m.cells = {0.6f, 0.8f, 1.0f, 0.0f};
    m.cell_owner = "[0,0]";
    m.cell_workload = R"(["ops","ops"])";
    store::insert_cluster_model(d, r, m);
    run.finish("{}");

    auto cl = store::clusters_of_run(d, r);
    REQUIRE(cl.size() == 2);
    CHECK(cl[0].idx == 0);
    CHECK(cl[0].id == refunds_id);
    CHECK(cl[0].label == "refund order");
    CHECK(cl[0].suitability == doctest::Approx(0.8));
    CHECK(json::parse(cl[0].stats)["top_terms"][0]["term"] == "refund");
    CHECK(cl[1].idx == -1);
    CHECK(!cl[1].suitability.has_value());
    CHECK(test::scalar(d, "SELECT length(centroid) FROM clusters WHERE idx = 0") == 8);

    auto mem = store::members_of_run(d, r);
    REQUIRE(mem.size() == 3);
    CHECK(mem[0].call_id == ids[0]);
    CHECK(mem[0].cluster_idx == 0);
    CHECK(mem[0].response_id == "chatcmpl-a");
    CHECK(mem[1].distance == doctest::Approx(0.05));
    CHECK(mem[2].cluster_idx == -1);
    CHECK(mem[2].workload_id == "chat");

    auto calls = store::calls_of_cluster(d, refunds_id);
    REQUIRE(calls.size() == 2);
    CHECK(calls[0].id == ids[0]);
    CHECK(calls[1].id == ids[1]);
    CHECK(json::parse(calls[1].messages)[0]["content"] == "refund order 8");
    CHECK(store::calls_of_cluster(d, noise_id).size() == 1);

    auto near = store::nearest_calls(d, r, 0, 5);
    REQUIRE(near.size() == 2);
    CHECK(near[0].call_id == ids[1]);  // distance 0.05 before 0.25
    CHECK(near[0].response == "Refunded order 8.");
    CHECK(near[1].response.find("\"refund\"") != std::string::npos);  // tool calls over text
    CHECK(store::nearest_calls(d, r, 0, 1).size() == 1);
    CHECK(store::nearest_calls(d, r, 7, 5).empty());

    auto back = store::get_cluster_model(d, r);
    REQUIRE(back);
    CHECK(back->embedder == "tfidf");
    CHECK(back->dim == 2);
    CHECK(back->blob == std::vector<uint8_t>{1, 2, 3});
    CHECK(back->cells == m.cells);
    CHECK(back->cell_workload == m.cell_workload);
    CHECK(!store::get_cluster_model(d, r + 100).has_value());
}

TEST_CASE("splits: written per (cluster run, seed), replaced on rewrite, filtered by split, checked") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto ids = add_calls(d);
    const int64_t r = store::begin_run(d, "cluster", "{}");
    store::finish_run(d, r, "ok");
    store::write_splits(d, r, 1, {{ids[0], "train"}, {ids[1], "val"}, {ids[2], "test"}});
    store::write_splits(d, r, 2, {{ids[0], "test"}, {ids[1], "train"}});
    CHECK(store::get_splits(d, r, 1).size() == 3);
    auto train = store::get_splits(d, r, 2, "train");
    REQUIRE(train.size() == 1);
    CHECK(train[0].call_id == ids[1]);
    store::write_splits(d, r, 1, {{ids[2], "train"}});
    auto again = store::get_splits(d, r, 1);
    REQUIRE(again.size() == 1);
    CHECK(again[0].call_id == ids[2]);
    CHECK(store::get_splits(d, r, 2).size() == 2);  // another seed untouched
    CHECK_THROWS_AS(store::write_splits(d, r, 3, {{ids[0], "holdout"}}), user_error);
    CHECK(store::get_splits(d, r, 3).empty());  // rolled back whole
}

TEST_CASE("migration 2 -> 3 keeps every row; new columns get their defaults; db info reads a v2 file") {
    test::temp_dir t;
    const std::string path = t / "v2.db";
    {
        sqlite3* h = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
        auto exec = [&](const std::string& sql) {
            char* err = nullptr;
            int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
            INFO(sql.substr(0, 200) << (err ? err : ""));
            REQUIRE(rc == SQLITE_OK);
        };
        exec("PRAGMA journal_mode = WAL");
        for (const auto& m : store::migrations())
            if (m.version <= 2) exec(m.sql);
        exec("PRAGMA user_version = 2");
        exec(R"(INSERT INTO runs (id, command, params, started, finished, status, summary) VALUES
                (1, 'collect', '{"paths":["a"]}', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', 'ok', '{"ingested":2}'),
                (2, 'cluster', '{"k":"auto"}', '2026-01-01T00:02:00Z', '2026-01-01T00:03:00Z', 'ok', '{"k":1}'),
                (3, 'cluster', '{}', '2026-01-01T00:04:00Z', NULL, 'running', '{}'))");
        exec(R"(INSERT INTO calls (id, content_id, run_id, source_file, source_line, format, messages, task_text)
                VALUES (10, 'h10', 1, 'a.jsonl', 1, 'pair', '[{"role":"user","content":"x"}]', 'x'),
                       (11, 'h11', 1, 'a.jsonl', 2, 'pair', '[{"role":"user","content":"y"}]', 'y'))");
        exec("INSERT INTO clusters (id, run_id, idx, label, size, share) VALUES (20, 2, 0, 'xy', 2, 1.0)");
        exec("INSERT INTO cluster_members VALUES (2, 10, 20, 0.1), (2, 11, 20, 0.2)");
        exec(R"(INSERT INTO adapters (id, run_id, cluster_id, base_model, path, rank, alpha, created)
                VALUES (30, 2, 20, '/models/smol.gguf', '/out/a.safetensors', 8, 16, '2026-01-01'))");
        exec("INSERT INTO eval_results (run_id, adapter_id, call_id, score, passed) VALUES (2, 30, 10, 0.5, 1)");
        sqlite3_close(h);
    }
    {
        // db info on the v2 file, read-only: nothing is migrated, the ownerless 'running' run reads interrupted
        auto info = test::run_slmctl("db info --json --db '" + path + "'");
        REQUIRE_MESSAGE(info.exit_code == 0, info.err);
        auto j = json::parse(info.out);
        CHECK(j["schema_version"] == 2);
        CHECK(j["runs"].size() == 3);
        CHECK(j["runs"][2]["status"] == "interrupted");
        CHECK(j["runs"][2]["stored_status"] == "running");
        CHECK(!j["tables"].contains("splits"));
    }
    auto d = store::db::open(path);
    CHECK(d.user_version() == store::schema_version_latest());
    CHECK(test::scalar(d, "SELECT count(*) FROM runs") == 3);
    CHECK(test::scalar(d, "SELECT count(*) FROM calls") == 2);
    CHECK(test::scalar(d, "SELECT count(*) FROM cluster_members") == 2);
    CHECK(test::scalar(d, "SELECT count(*) FROM adapters") == 1);
    CHECK(test::scalar(d, "SELECT count(*) FROM eval_results") == 1);
    CHECK(test::scalar_text(d, "SELECT summary FROM runs WHERE id = 1") == R"({"ingested":2})");
    CHECK(test::scalar_text(d, "SELECT device FROM runs WHERE id = 1") == "{}");
    CHECK(test::scalar(d, "SELECT error IS NULL AND pid IS NULL FROM runs WHERE id = 1") == 1);
    CHECK(test::scalar_text(d, "SELECT variant FROM eval_results") == "customized");
    CHECK(test::scalar_text(d, "SELECT model FROM eval_results").empty());
    CHECK(test::scalar_text(d, "SELECT loss_curve FROM adapters") == "[]");
    CHECK(test::scalar(d, "SELECT base_model_sha256 IS NULL FROM adapters") == 1);
    CHECK(test::scalar_text(d, "SELECT base_model FROM adapters") == "/models/smol.gguf");
    // schema 6: calls stored before it have no response_format; old eval rows no judge score
    CHECK(store::calls_of_cluster(d, 20).at(0).response_format.empty());
    CHECK(store::eval_results_of_run(d, 2).at(0).judge_score == std::nullopt);
    {
        store::eval_result_row r;
        r.run_id = 1;
        r.call_id = 11;
        r.cluster_id = 20;
        r.variant = "base";
        r.score = 0.4;
        r.passed = false;
        r.judge_score = 0.7;
        store::insert_eval_results(d, {r});
        auto back = store::eval_results_of_run(d, 1);
        REQUIRE(back.size() == 1);
        REQUIRE(back[0].judge_score.has_value());
        CHECK(*back[0].judge_score == doctest::Approx(0.7));
        CHECK(*back[0].score == doctest::Approx(0.4));
    }
    // the variant is checked; the new table works
    CHECK_THROWS_AS(d.exec("UPDATE eval_results SET variant = 'other'"), user_error);
    d.exec("UPDATE eval_results SET variant = 'icl', model = '/models/smol.gguf'");
    store::write_splits(d, 2, 7, {{10, "train"}, {11, "test"}});
    CHECK(store::get_splits(d, 2, 7, "test").at(0).call_id == 11);
    // the migrated rows read through the stage API
    CHECK(store::latest_ok_run(d, "cluster") == 2);
    CHECK(store::get_run(d, 3)->status == "interrupted");
    CHECK_THROWS_AS(store::require_ok_run(d, 3, "cluster"), user_error);
    CHECK(store::members_of_run(d, 2).size() == 2);
    CHECK(store::calls_of_cluster(d, 20).at(1).task_text == "y");
    auto inf = store::info(d);
    bool has_splits = false;
    for (const auto& tr : inf.tables) has_splits |= tr.table == "splits" && tr.rows == 2;
    CHECK(has_splits);
}

TEST_CASE("adapters: inserted per finetune run, read by id and per cluster (ok runs only, newest first)") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    const int64_t cr = store::begin_run(d, "cluster", "{}");
    store::finish_run(d, cr, "ok");
    store::cluster_insert ci;
    ci.idx = 0;
    ci.label = "lookup order";
    ci.size = 30;
    const int64_t cid = store::insert_cluster(d, cr, ci);
    auto ref = store::get_cluster(d, cid);
    REQUIRE(ref);
    CHECK(ref->run_id == cr);
    CHECK(ref->cluster.label == "lookup order");
    CHECK_FALSE(store::get_cluster(d, cid + 100));

    auto add = [&](const char* status, const char* path) {
        const int64_t fr = store::begin_run(d, "finetune", "{}");
        store::adapter_row a;
        a.run_id = fr;
        a.cluster_id = cid;
        a.base_model = "/m/base.gguf";
        a.base_model_sha256 = "ab12";
        a.path = path;
        a.rank = 8;
        a.alpha = 16;
        a.loss_curve = R"([{"step":1,"train_loss":1.5}])";
        const int64_t id = store::insert_adapter(d, a);
        store::finish_run(d, fr, status);
        return id;
    };
    const int64_t a1 = add("ok", "/a/one");
    add("failed", "/a/failed");
    const int64_t a3 = add("ok", "/a/three");
    auto got = store::get_adapter(d, a1);
    REQUIRE(got);
    CHECK(got->path == "/a/one");
    CHECK(got->base_model_sha256 == "ab12");
    CHECK(got->rank == 8);
    CHECK(got->alpha == 16);
    CHECK(got->loss_curve == R"([{"step":1,"train_loss":1.5}])");
    CHECK_FALSE(got->created.empty());
    auto list = store::adapters_of_cluster(d, cid);
    REQUIRE(list.size() == 2);
    CHECK(list[0].id == a3);
    CHECK(list[1].id == a1);
}
