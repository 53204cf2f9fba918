// The clustering run's runs row: a failure inside the run is stored with its message; SIGTERM to
// `slmctl cluster` marks the run interrupted and exits 143; later reads skip or refuse such runs.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <thread>

#include "clustering/clustering.h"
#include "common/common.h"
#include "store/stages.h"
#include "../test-util.h"
#include "synthetic-calls.h"

using namespace slm;

namespace {

std::string make_store(const test::temp_dir& t, int n) {
    std::string path = t / "s.db";
    test::synth g(11);
    auto d = store::db::open(path);
    test::store_calls(d, g.mix(n));
    return path;
}

}  // namespace

TEST_CASE("cluster run(): an error inside the run marks it failed with the message; latest_run skips it") {
    test::temp_dir t;
    auto path = make_store(t, 300);
    auto d = store::db::open(path);
    clustering::cluster_params p;
    p.k = "3";
    auto good = clustering::run(d, p);
    p.tfidf.hash_bits = 40;  // refused by the embedder, after the run began
    CHECK_THROWS_AS(clustering::run(d, p), user_error);
    auto runs = store::list_runs(d, "cluster");
    REQUIRE(runs.size() == 2);
    CHECK(runs[1].status == "failed");
    CHECK(runs[1].error.find("hash_bits 40") != std::string::npos);
    CHECK(clustering::latest_run(d) == good.run_id);
    CHECK_THROWS_AS(clustering::load_run(d, runs[1].id), user_error);
    CHECK_THROWS_AS(clustering::assigner::load(d, runs[1].id), user_error);
    // what the good run stored reads back through the store API too
    auto clusters = store::clusters_of_run(d, good.run_id);
    CHECK(static_cast<int>(clusters.size()) >= 3);
    CHECK(store::members_of_run(d, good.run_id).size() == 300);
    int64_t in_clusters = 0;
    for (const auto& c : clusters) in_clusters += static_cast<int64_t>(store::calls_of_cluster(d, c.id).size());
    CHECK(in_clusters == 300);
}

TEST_CASE("slmctl cluster: SIGTERM mid-run marks the run interrupted, exits 143, and the run is never used") {
    if (!std::filesystem::exists(test::slmctl_binary())) {
        MESSAGE("slmctl not built; skipping");
        return;
    }
    test::temp_dir t;
    auto path = make_store(t, 20000);
    auto first = test::run_slmctl("cluster --k 3 --json --db '" + path + "'");
    REQUIRE_MESSAGE(first.exit_code == 0, first.err);
    const int64_t ok_run = nlohmann::json::parse(first.out)["run_id"];

    const std::string bin = test::slmctl_binary();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin.c_str(), bin.c_str(), "cluster", "--k", "auto", "--db", path.c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    // poll until the run is seen or the child is gone (no fixed short wait: CI boxes are loaded)
    bool running = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(10);
    while (!running && std::chrono::steady_clock::now() < deadline) {
        {
            auto d = store::db::open(path, store::open_mode::read_only);
            for (const auto& r : store::list_runs(d, "cluster")) running |= r.id > ok_run && r.stored_status == "running";
        }
        int ignored = 0;
        if (!running && waitpid(pid, &ignored, WNOHANG) == pid) FAIL("the cluster run exited before it was seen running");
        if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE_MESSAGE(running, "the cluster run never started");
    REQUIRE(kill(pid, SIGTERM) == 0);
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 143);
    auto d = store::db::open(path, store::open_mode::read_only);
    auto runs = store::list_runs(d, "cluster");
    REQUIRE(runs.size() == 2);
    CHECK(runs[1].stored_status == "interrupted");
    CHECK(runs[1].error == "interrupted by SIGTERM");
    CHECK(store::clusters_of_run(d, runs[1].id).empty());  // nothing half-written
    CHECK(clustering::latest_run(d) == ok_run);
    auto show = test::run_slmctl("cluster --show 0 --json --db '" + path + "'");
    REQUIRE_MESSAGE(show.exit_code == 0, show.err);
    CHECK(nlohmann::json::parse(show.out)["run_id"] == ok_run);
    auto refused = test::run_slmctl("cluster --run " + std::to_string(runs[1].id) + " --db '" + path + "'");
    CHECK(refused.exit_code == 1);
    CHECK(refused.err.find("'interrupted'") != std::string::npos);
}
