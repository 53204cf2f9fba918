// store/runs.cpp: run_scope marks ok / failed / interrupted (forked children stopped by SIGTERM,
// SIGINT, SIGKILL), owner liveness, `db info` showing dead runs as interrupted, latest-ok-run
// selection, and later stages refusing a run that did not finish.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "store/stages.h"
#include "../test-util.h"
#include "helpers.h"

using namespace slm;
using json = nlohmann::json;

namespace {

std::string host() {
    char b[256] = {};
    gethostname(b, sizeof b - 1);
    return b;
}

/// Waits (up to 20 s) until `path` holds `n` runs stored as 'running'.
bool wait_running(const std::string& path, int n) {
    for (int i = 0; i < 2000; ++i) {
        {
            auto d = store::db::open(path, store::open_mode::read_only);
            if (test::scalar(d, "SELECT count(*) FROM runs WHERE status = 'running'") >= n) return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

enum class child_body { sleep, cooperative };

/// A child process that opens `path`, begins a run_scope and then sleeps forever (or, for
/// `cooperative`, polls stop_requested() and marks the run interrupted itself, exiting 7).
pid_t spawn_run(const std::string& path, store::on_signal mode, child_body body, const char* command = "cluster") {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid > 0) return pid;
    try {
        auto d = store::db::open(path);
        store::run_scope run(d, command, R"({"child":true})", mode);
        for (;;) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            if (body == child_body::cooperative && store::stop_requested()) {
                run.interrupted(R"({"stopped_at":"poll"})");
                break;
            }
        }
    } catch (...) {
        _exit(99);
    }
    _exit(7);
}

int wait_exit(pid_t pid, bool& signaled) {
    int st = 0;
    waitpid(pid, &st, 0);
    signaled = WIFSIGNALED(st);
    return WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st);
}

}  // namespace

TEST_CASE("run_scope: finish marks ok with the summary and records this process as owner") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    int64_t id = 0;
    {
        store::run_scope run(d, "collect", R"({"x":1})");
        id = run.id();
        auto mid = store::get_run(d, id);
        REQUIRE(mid);
        CHECK(mid->status == "running");
        CHECK(mid->owner == store::owner_state::alive);
        CHECK(mid->pid == getpid());
        CHECK(mid->host == host());
        run.set_params(R"({"x":2})");
        run.set_device(R"({"device":"cpu","dtype":"fp32"})");
        run.finish(R"({"ingested":3})");
    }
    auto r = store::get_run(d, id);
    REQUIRE(r);
    CHECK(r->status == "ok");
    CHECK(r->stored_status == "ok");
    CHECK(r->summary == R"({"ingested":3})");
    CHECK(r->params == R"({"x":2})");
    CHECK(r->device == R"({"device":"cpu","dtype":"fp32"})");
    CHECK(r->error.empty());
    CHECK(!r->finished.empty());
}

TEST_CASE("run_scope: an exception leaving the scope marks the run failed with its message") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    int64_t with_guard = 0, without_guard = 0, unfinished = 0;
    try {
        store::run_scope run(d, "cluster", "{}");
        with_guard = run.id();
        run.guard([&] { throw user_error("no calls to cluster in x.db"); });
        FAIL("guard swallowed the exception");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()) == "no calls to cluster in x.db");
    }
    try {
        store::run_scope run(d, "cluster", "{}");
        without_guard = run.id();
        throw std::runtime_error("boom");
    } catch (const std::runtime_error&) {
    }
    {
        store::run_scope run(d, "cluster", "{}");
        unfinished = run.id();
    }
    auto a = store::get_run(d, with_guard), b = store::get_run(d, without_guard), c = store::get_run(d, unfinished);
    CHECK(a->status == "failed");
    CHECK(a->error == "no calls to cluster in x.db");
    CHECK(b->status == "failed");
    CHECK(b->error.find("exception") != std::string::npos);
    CHECK(c->status == "failed");
    CHECK(c->error.find("without being marked finished") != std::string::npos);
    CHECK(store::latest_ok_run(d, "cluster") == 0);
}

TEST_CASE("run_scope: 'ok' written inside a transaction that rolls back does not stick") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    int64_t committed = 0, rolled_back = 0;
    {
        store::run_scope run(d, "cluster", "{}");
        committed = run.id();
        store::txn tx(d);
        run.finish(R"({"k":3})");
        tx.commit();
    }
    try {
        store::run_scope run(d, "cluster", "{}");
        rolled_back = run.id();
        store::txn tx(d);
        run.finish(R"({"k":3})");
        throw std::runtime_error("commit never reached");
    } catch (const std::runtime_error&) {
    }
    CHECK(store::get_run(d, committed)->status == "ok");
    auto r = store::get_run(d, rolled_back);
    CHECK(r->status == "failed");
    CHECK(r->error.find("rolled back") != std::string::npos);
    CHECK(store::latest_ok_run(d, "cluster") == committed);
}

TEST_CASE("SIGTERM / SIGINT: an on_signal::exit run is marked interrupted and the process exits 143 / 130") {
    for (int sig : {SIGTERM, SIGINT}) {
        CAPTURE(sig);
        test::temp_dir t;
        std::string path = t / "a.db";
        { store::db::open(path); }
        pid_t pid = spawn_run(path, store::on_signal::exit, child_body::sleep);
        REQUIRE(wait_running(path, 1));
        REQUIRE(kill(pid, sig) == 0);
        bool signaled = false;
        int code = wait_exit(pid, signaled);
        CHECK(!signaled);
        CHECK(code == 128 + sig);
        auto d = store::db::open(path, store::open_mode::read_only);
        auto runs = store::list_runs(d);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].stored_status == "interrupted");  // written by the process itself
        CHECK(runs[0].status == "interrupted");
        CHECK(runs[0].error == (sig == SIGTERM ? "interrupted by SIGTERM" : "interrupted by SIGINT"));
        CHECK(!runs[0].finished.empty());
        auto ic = d.prepare("PRAGMA integrity_check");
        REQUIRE(ic.step());
        CHECK(ic.get_text(0) == "ok");
    }
}

TEST_CASE("on_signal::stop: the stage sees stop_requested() and marks the run itself; a second signal exits") {
    test::temp_dir t;
    std::string path = t / "a.db";
    { store::db::open(path); }
    SUBCASE("cooperative stop") {
        pid_t pid = spawn_run(path, store::on_signal::stop, child_body::cooperative, "collect");
        REQUIRE(wait_running(path, 1));
        REQUIRE(kill(pid, SIGINT) == 0);
        bool signaled = false;
        CHECK(wait_exit(pid, signaled) == 7);  // returned through its own code path
        auto d = store::db::open(path, store::open_mode::read_only);
        auto r = store::list_runs(d).at(0);
        CHECK(r.stored_status == "interrupted");
        CHECK(r.summary == R"({"stopped_at":"poll"})");
        CHECK(r.error == "interrupted by SIGINT");
    }
    SUBCASE("a stage that does not stop: the second signal exits 143") {
        pid_t pid = spawn_run(path, store::on_signal::stop, child_body::sleep, "collect");
        REQUIRE(wait_running(path, 1));
        REQUIRE(kill(pid, SIGTERM) == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        {
            auto d = store::db::open(path, store::open_mode::read_only);
            CHECK(store::list_runs(d).at(0).status == "running");  // the first signal only asks
        }
        REQUIRE(kill(pid, SIGTERM) == 0);
        bool signaled = false;
        CHECK(wait_exit(pid, signaled) == 143);
        auto d = store::db::open(path, store::open_mode::read_only);
        CHECK(store::list_runs(d).at(0).stored_status == "interrupted");
    }
}

TEST_CASE("SIGKILL: the row stays 'running', every reader sees 'interrupted', no stage takes it as input") {
    test::temp_dir t;
    std::string path = t / "a.db";
    int64_t ok_run = 0;
    {
        auto d = store::db::open(path);
        store::run_scope run(d, "cluster", "{}");
        ok_run = run.id();
        store::cluster_insert c;
        c.label = "refund requests";
        c.share = 1;
        store::insert_cluster(d, ok_run, c);
        run.finish(R"({"calls":0,"k":1})");
    }
    pid_t pid = spawn_run(path, store::on_signal::exit, child_body::sleep);
    REQUIRE(wait_running(path, 1));
    REQUIRE(kill(pid, SIGKILL) == 0);
    bool signaled = false;
    wait_exit(pid, signaled);
    CHECK(signaled);
    int64_t killed = 0;
    {
        auto d = store::db::open(path, store::open_mode::read_only);
        killed = test::scalar(d, "SELECT max(id) FROM runs");
        CHECK(killed > ok_run);
        auto r = store::get_run(d, killed);
        REQUIRE(r);
        CHECK(r->stored_status == "running");  // nobody could write it
        CHECK(r->status == "interrupted");
        CHECK(r->owner == store::owner_state::gone);
        CHECK(r->pid == pid);
        CHECK(r->error.find(std::to_string(pid)) != std::string::npos);
        // a later stage: the newest ok run, never the dead one
        CHECK(store::latest_ok_run(d, "cluster") == ok_run);
        try {
            store::require_ok_run(d, killed, "cluster");
            FAIL("a dead run was accepted as input");
        } catch (const user_error& e) {
            CHECK(std::string(e.what()).find("'interrupted'") != std::string::npos);
            CHECK(e.hint.find("again") != std::string::npos);
        }
        CHECK(store::require_ok_run(d, ok_run, "cluster").id == ok_run);
        CHECK_THROWS_AS(store::require_ok_run(d, ok_run, "finetune"), user_error);
    }
    // db info (read-only, the row untouched) shows it interrupted
    auto info = test::run_slmctl("db info --json --db '" + path + "'");
    REQUIRE_MESSAGE(info.exit_code == 0, info.err);
    auto j = json::parse(info.out);
    REQUIRE(j["runs"].size() == 2);
    CHECK(j["runs"][1]["id"] == killed);
    CHECK(j["runs"][1]["status"] == "interrupted");
    CHECK(j["runs"][1]["stored_status"] == "running");
    CHECK(j["runs_by_status"]["interrupted"] == 1);
    CHECK(j["runs_by_status"]["ok"] == 1);
    auto human = test::run_slmctl("db info --db '" + path + "'");
    CHECK(human.out.find("interrupted") != std::string::npos);
    // `slmctl cluster` refuses the dead run and, asked for the latest, skips it
    auto refused = test::run_slmctl("cluster --run " + std::to_string(killed) + " --db '" + path + "'");
    CHECK(refused.exit_code == 1);
    CHECK(refused.err.find("interrupted") != std::string::npos);
    auto show = test::run_slmctl("cluster --json --show 0 --db '" + path + "'");
    REQUIRE_MESSAGE(show.exit_code == 0, show.err);
    CHECK(json::parse(show.out)["run_id"] == ok_run);
    // the next run on this database writes the truth back
    {
        auto d = store::db::open(path);
        CHECK(store::reap_stale_runs(d) == 1);
        CHECK(store::reap_stale_runs(d) == 0);
        CHECK(store::get_run(d, killed)->stored_status == "interrupted");
    }
}

TEST_CASE("owner liveness: a live owner, a dead pid, a reused pid, another host, no owner") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    auto ins = d.prepare("INSERT INTO runs (command, started, status, pid, host, owner_start) VALUES ('cluster', 'x', 'running', ?, ?, ?)");
    const int64_t alive = store::begin_run(d, "cluster", "{}");  // this process
    pid_t child = fork();
    if (child == 0) _exit(0);
    int st = 0;
    waitpid(child, &st, 0);  // a pid that no longer exists
    ins.bind_all(int64_t(child), host(), "whatever/1");
    ins.run();
    const int64_t dead = d.last_insert_rowid();
    ins.bind_all(int64_t(getpid()), host(), "another-boot/1");
    ins.run();
    const int64_t reused = d.last_insert_rowid();
    ins.bind_all(int64_t(1), "some-other-host.example", "b/1");
    ins.run();
    const int64_t elsewhere = d.last_insert_rowid();
    d.exec("INSERT INTO runs (command, started, status) VALUES ('cluster', 'x', 'running')");
    const int64_t ownerless = d.last_insert_rowid();
    auto status = [&](int64_t id) { return store::get_run(d, id)->status; };
    CHECK(status(alive) == "running");
    CHECK(store::get_run(d, alive)->owner == store::owner_state::alive);
    CHECK(status(dead) == "interrupted");
    CHECK(status(reused) == "interrupted");
    CHECK(status(elsewhere) == "running");
    CHECK(store::get_run(d, elsewhere)->owner == store::owner_state::unknown);
    CHECK(status(ownerless) == "interrupted");
    CHECK(store::reap_stale_runs(d) == 3);
    CHECK(store::get_run(d, alive)->stored_status == "running");
    CHECK(store::get_run(d, elsewhere)->stored_status == "running");
    store::finish_run(d, alive, "ok");
}

TEST_CASE("latest_ok_run: the newest 'ok' run of that command only") {
    test::temp_dir t;
    auto d = store::db::open(t / "a.db");
    CHECK(store::latest_ok_run(d, "cluster") == 0);
    auto mk = [&](const char* cmd, const char* status) {
        int64_t id = store::begin_run(d, cmd, "{}");
        if (std::string(status) != "running") store::finish_run(d, id, status);
        return id;
    };
    mk("cluster", "ok");
    int64_t want = mk("cluster", "ok");
    mk("collect", "ok");
    mk("cluster", "failed");
    mk("cluster", "interrupted");
    mk("cluster", "running");
    CHECK(store::latest_ok_run(d, "cluster") == want);
    CHECK(store::latest_ok_run(d, "finetune") == 0);
    auto clusters = store::list_runs(d, "cluster");
    CHECK(clusters.size() == 5);
    CHECK(store::list_runs(d).size() == 6);
}
