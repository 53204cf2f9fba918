// store/: migrations, newer-schema refusal, txn rollback on exception, statements,
// and a reader that proceeds while another connection writes (WAL).
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "common/common.h"
#include "store/store.h"
#include "../test-util.h"

using namespace slm;

static int64_t count(store::db& d, const std::string& table) {
    auto s = d.prepare("SELECT count(*) FROM " + table);
    REQUIRE(s.step());
    return s.get_int(0);
}

TEST_CASE("open creates the schema at the latest version, WAL and foreign keys on") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    CHECK(d.user_version() == store::schema_version_latest());
    CHECK(store::schema_version_latest() >= 1);
    auto jm = d.prepare("PRAGMA journal_mode");
    REQUIRE(jm.step());
    CHECK(jm.get_text(0) == "wal");
    auto fk = d.prepare("PRAGMA foreign_keys");
    REQUIRE(fk.step());
    CHECK(fk.get_int(0) == 1);
    auto inf = store::info(d);
    std::vector<std::string> names;
    for (auto& tr : inf.tables) names.push_back(tr.table);
    for (const char* want : {"runs", "calls", "quarantine", "clusters", "cluster_members", "selections", "adapters",
                             "eval_results"})
        CHECK_MESSAGE(std::find(names.begin(), names.end(), want) != names.end(), want);
}

TEST_CASE("re-opening is idempotent and keeps data") {
    test::temp_dir t;
    {
        auto d = store::db::open(t / "a.db");
        auto id = store::begin_run(d, "collect", R"({"x":1})");
        store::finish_run(d, id, "ok", R"({"ingested":3})");
    }
    auto d = store::db::open(t / "a.db");
    CHECK(count(d, "runs") == 1);
    auto s = d.prepare("SELECT command, status, summary, finished IS NOT NULL FROM runs");
    REQUIRE(s.step());
    CHECK(s.get_text(0) == "collect");
    CHECK(s.get_text(1) == "ok");
    CHECK(s.get_text(2) == R"({"ingested":3})");
    CHECK(s.get_int(3) == 1);
}

TEST_CASE("migrations run from an older version") {
    test::temp_dir t;
    {
        // an empty database at version 0 is "older": open must bring it to the latest version
        sqlite3* h = nullptr;
        REQUIRE(sqlite3_open((t / "old.db").c_str(), &h) == SQLITE_OK);
        sqlite3_exec(h, "CREATE TABLE unrelated(x)", nullptr, nullptr, nullptr);
        sqlite3_close(h);
    }
    auto d = store::db::open(t / "old.db");
    CHECK(d.user_version() == store::schema_version_latest());
    CHECK(count(d, "calls") == 0);
    CHECK(count(d, "unrelated") == 0);
}

TEST_CASE("a database written by a newer slmctl is refused with a clear error") {
    test::temp_dir t;
    { auto d = store::db::open(t / "new.db"); d.exec(fmt::format("PRAGMA user_version = {}", store::schema_version_latest() + 5)); }
    try {
        store::db::open(t / "new.db");
        FAIL("expected user_error");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("newer") != std::string::npos);
        CHECK(std::string(e.what()).find("new.db") != std::string::npos);
        CHECK(!e.hint.empty());
    }
    CHECK_THROWS_AS(store::db::open(t / "new.db", store::open_mode::read_only), user_error);
}

TEST_CASE("read-only open of a missing file is a user error, and creates nothing") {
    test::temp_dir t;
    CHECK_THROWS_AS(store::db::open(t / "missing.db", store::open_mode::read_only), user_error);
    CHECK(!std::filesystem::exists(t / "missing.db"));
}

TEST_CASE("txn rolls back on exception and commits when asked") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    try {
        store::txn tx(d);
        store::begin_run(d, "collect", "{}");
        CHECK(count(d, "runs") == 1);
        throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    CHECK(count(d, "runs") == 0);
    {
        store::txn tx(d);
        store::begin_run(d, "collect", "{}");
        tx.commit();
    }
    CHECK(count(d, "runs") == 1);
}

TEST_CASE("statement errors carry the db path and the SQL") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    try {
        d.prepare("SELECT nope FROM runs");
        FAIL("expected error");
    } catch (const user_error& e) {
        std::string m = e.what();
        CHECK(m.find("a.db") != std::string::npos);
        CHECK(m.find("SELECT nope") != std::string::npos);
    }
    // constraint violation: the CHECK on runs.status
    auto s = d.prepare("INSERT INTO runs (command, started, status) VALUES ('x', 'now', 'bogus')");
    CHECK_THROWS_AS(s.run(), user_error);
}

TEST_CASE("bindings: text, int, double, null, blob, optional round-trip") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    d.exec("CREATE TEMP TABLE kv (a, b, c, d, e)");
    std::vector<float> blob = {1.5f, -2.0f, 3.25f};
    std::optional<std::string> none;
    auto ins = d.prepare("INSERT INTO kv VALUES (?, ?, ?, ?, ?)");
    ins.bind_all(std::string("héllo"), int64_t(1) << 40, 0.5, none);
    ins.bind_blob(5, blob.data(), blob.size() * sizeof(float));
    ins.run();
    auto s = d.prepare("SELECT a, b, c, d, e FROM kv");
    REQUIRE(s.step());
    CHECK(s.get_text(0) == "héllo");
    CHECK(s.get_int(1) == (int64_t(1) << 40));
    CHECK(s.get_double(2) == doctest::Approx(0.5));
    CHECK(s.is_null(3));
    CHECK(!s.get_opt_text(3).has_value());
    auto b = s.get_blob(4);
    REQUIRE(b.size() == blob.size() * sizeof(float));
    CHECK(std::memcmp(b.data(), blob.data(), b.size()) == 0);
    CHECK(!s.step());
    // bind_static: no copy, and an empty view can mean NULL
    std::string kept = "static text";
    auto ins2 = d.prepare("INSERT INTO kv (a, b) VALUES (?, ?)");
    ins2.bind_static(1, kept).bind_static(2, std::string_view(), /*empty_is_null=*/true);
    ins2.run();
    auto s2 = d.prepare("SELECT a, b IS NULL FROM kv WHERE a = 'static text'");
    REQUIRE(s2.step());
    CHECK(s2.get_text(0) == kept);
    CHECK(s2.get_int(1) == 1);
}

TEST_CASE("WAL: a reader sees committed data and is not blocked while another connection writes") {
    test::temp_dir t;
    auto writer = store::db::open(t / "a.db");
    store::begin_run(writer, "collect", "{}");
    auto reader = store::db::open(t / "a.db", store::open_mode::read_only);
    store::txn tx(writer);  // write lock held, uncommitted rows pending
    for (int i = 0; i < 100; ++i) store::begin_run(writer, "collect", "{}");
    // the reader runs in another thread while the writer's transaction is open
    int64_t seen = -1;
    std::thread th([&] { seen = count(reader, "runs"); });
    th.join();
    CHECK(seen == 1);  // committed state only, and no SQLITE_BUSY
    tx.commit();
    CHECK(count(reader, "runs") == 101);
    auto inf = store::info(reader);
    CHECK(inf.schema_version == store::schema_version_latest());
}
