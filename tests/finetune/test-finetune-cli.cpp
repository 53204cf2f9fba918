// `slmctl finetune` end to end with the real SmolLM2-135M-Instruct on a sample_logs cluster: adapter
// files and the `adapters` row, clear errors for bad input, and SIGINT mid-run then --resume giving
// the uninterrupted run's loss curve.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model/model.h"
#include "store/stages.h"
#include "tests/test-util.h"

using namespace slm;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A database with the workflow operator's calls, clustered (tfidf, seed 0).
struct clustered_db {
    test::temp_dir t;
    std::string db = t / "calls.db";
    int cluster = -1;  // a templated tool-call cluster (send_sms or send_email)
    clustered_db() {
        auto c = test::run_slmctl("collect '" + test::source_dir("sample_logs/workflow_operator.jsonl") + "' --db '" + db +
                                  "' -q");
        REQUIRE(c.exit_code == 0);
        auto k = test::run_slmctl("cluster --db '" + db + "' --json");
        REQUIRE_MESSAGE(k.exit_code == 0, k.err);
        auto j = json::parse(k.out);
        for (const auto& cl : j.at("clusters")) {
            const std::string label = cl.value("label", "");
            if (label.rfind("send_sms", 0) == 0 || label.rfind("send_email", 0) == 0) {
                cluster = cl.at("id").get<int>();
                break;
            }
        }
        REQUIRE(cluster >= 0);
    }
    std::string base_args() const {
        return fmt::format("finetune --db '{}' --cluster {} --max-tokens 384 --batch-size 1 --eval-every 0 --val-max 4 "
                           "--lr 1e-3 --seed 3",
                           db, cluster);
    }
};

bool have_smollm2() { return fs::exists(model::default_smollm2_path()); }

}  // namespace

TEST_CASE("finetune: PEFT dir and GGUF adapter written, adapters row stored, bad input refused" *
          doctest::skip(!have_smollm2())) {
    clustered_db c;
    const std::string out = c.t / "adapter";
    auto r = test::run_slmctl(c.base_args() + " --max-steps 3 --format both --json --out '" + out + "'");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    auto j = json::parse(r.out);
    CHECK(j.at("train").at("steps") == 3);
    CHECK(j.at("n_train").get<int>() > 20);
    CHECK(j.at("n_test").get<int>() > 0);
    CHECK(fs::exists(fs::path(out) / "adapter_config.json"));
    CHECK(fs::exists(fs::path(out) / "adapter_model.safetensors"));
    CHECK(fs::exists(fs::path(out) / "adapter.gguf"));
    CHECK_FALSE(fs::exists(out + ".checkpoint"));  // cleaned up after success
    auto cfg = json::parse(test::read_file(out + "/adapter_config.json"));
    CHECK(cfg.at("peft_type") == "LORA");
    CHECK(cfg.at("r") == 8);
    {
        auto d = store::db::open(c.db);
        const int64_t id = j.at("adapter_id");
        auto a = store::get_adapter(d, id);
        REQUIRE(a);
        CHECK(a->path == fs::absolute(out).string());
        CHECK(a->base_model_sha256.size() == 64);
        CHECK(json::parse(a->loss_curve).size() == 4);  // step 0 (validation) + 3 steps
        auto run = store::get_run(d, a->run_id);
        REQUIRE(run);
        CHECK(run->status == "ok");
        CHECK(!store::get_splits(d, store::latest_ok_run(d, "cluster"), 0, "test").empty());
    }

    auto bad = [&](const std::string& extra, const std::string& needle) {
        auto b = test::run_slmctl(c.base_args() + " --max-steps 1 --out '" + (c.t / "bad") + "' " + extra);
        CHECK_MESSAGE(b.exit_code == 1, extra, ": ", b.err);
        CHECK_MESSAGE(b.err.find(needle) != std::string::npos, extra, ": ", b.err);
        CHECK_MESSAGE(b.err.find("hint:") != std::string::npos, extra, ": ", b.err);
        CHECK_FALSE(fs::exists(c.t / "bad"));  // nothing half-written
    };
    bad("--targets q,x", "x");
    bad("--rank 0", "rank");
    bad("--min-calls 100000", "needs at least 100000");
    bad("--base '" + test::source_dir("tests/data/ref/tiny-qwen2") + "'", "chat template");
    auto none = test::run_slmctl(fmt::format("finetune --db '{}' --cluster 999", c.db));
    CHECK(none.exit_code == 1);
    CHECK(none.err.find("no cluster 999") != std::string::npos);
}

TEST_CASE("finetune: SIGINT mid-run keeps a checkpoint; --resume ends with the uninterrupted loss curve" *
          doctest::skip(!have_smollm2())) {
    clustered_db c;
    const std::string args = c.base_args() + " --max-steps 6 --checkpoint-every 1 --dropout 0.1 --json";
    auto full = test::run_slmctl(args + " --out '" + (c.t / "full") + "'");
    REQUIRE_MESSAGE(full.exit_code == 0, full.err);
    auto full_j = json::parse(full.out);

    // the same run, interrupted once its third checkpoint exists
    const std::string out = c.t / "cut";
    pid_t pid = fork();
    if (pid == 0) {
        std::string cmd = "exec '" + test::slmctl_binary() + "' " + args + " --out '" + out + "' >/dev/null 2>'" +
                          (c.t / "cut.err") + "'";
        execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
        _exit(127);
    }
    const auto state = fs::path(out + ".checkpoint") / "state.json";
    // Wait for the third checkpoint for as long as the child lives (a loaded CI box can take minutes to
    // get there; a fixed 2-minute wait failed there once), with a deadline far above any real run.
    bool seen = false, exited = false;
    int st = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(20);
    while (!seen && !exited && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (fs::exists(state)) {
            auto s = json::parse(test::read_file(state.string()), nullptr, false);
            seen = s.is_object() && s.value("step", 0) >= 2;
        }
        if (!seen) exited = waitpid(pid, &st, WNOHANG) == pid;
    }
    if (!seen && !exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
    }
    REQUIRE_MESSAGE(seen, "no checkpoint at step 2 (child ", exited ? "exited" : "timed out",
                    "); its stderr: ", test::read_file(c.t / "cut.err"));
    kill(pid, SIGINT);
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 130);
    CHECK(test::read_file(c.t / "cut.err").find("--resume") != std::string::npos);
    CHECK_FALSE(fs::exists(out));  // no adapter from an interrupted run
    {
        auto d = store::db::open(c.db);
        auto runs = store::list_runs(d, "finetune");
        REQUIRE(!runs.empty());
        CHECK(runs.back().status == "interrupted");
    }
    auto resumed = test::run_slmctl(args + " --out '" + out + "' --resume");
    REQUIRE_MESSAGE(resumed.exit_code == 0, resumed.err);
    auto rj = json::parse(resumed.out);
    CHECK(rj.at("train").at("resumed_from").get<int>() >= 2);
    const auto& a = full_j.at("train").at("curve");
    const auto& b = rj.at("train").at("curve");
    REQUIRE(a.size() == b.size());
    for (size_t i = 1; i < a.size(); ++i)
        CHECK(b[i].at("train_loss").get<double>() ==
              doctest::Approx(a[i].at("train_loss").get<double>()).epsilon(1e-3));
    CHECK(rj.at("train").at("val_best").get<double>() ==
          doctest::Approx(full_j.at("train").at("val_best").get<double>()).epsilon(1e-3));
}
