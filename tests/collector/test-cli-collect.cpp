// `slmctl collect` through the built binary: planted secrets absent from the database file's bytes,
// SIGKILL / SIGINT mid-run then a re-run equal to an uninterrupted run, db info while writing,
// stdin, gzip, --strict, --scrub off, --json, usage errors.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "collector/collector.h"
#include "store/store.h"
#include "../test-util.h"
#include "helpers.h"

extern char** environ;

using namespace slm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

pid_t spawn_slmctl(const std::vector<std::string>& args, const std::string& out, const std::string& err) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string bin = test::slmctl_binary();
    std::vector<std::string> all = {bin};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
    return pid;
}

// calls committed so far (0 while the database or its schema is not there yet)
int64_t committed_calls(const std::string& db) {
    if (!fs::exists(db)) return 0;
    try {
        auto d = store::db::open(db, store::open_mode::read_only);
        return test::count(d, "SELECT count(*) FROM calls");
    } catch (const std::exception&) {
        return 0;
    }
}

// Waits until the writer has committed some calls; false if it exited first.
bool wait_for_progress(pid_t pid, const std::string& db) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
    while (std::chrono::steady_clock::now() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return false;
        if (committed_calls(db) > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

// Where a leaked value sits, for the failure message.
std::string locate(const std::string& db, const std::string& v) {
    std::string where;
    auto d = store::db::open(db, store::open_mode::read_only);
    for (const char* col : {"messages", "tools", "response_text", "response_tool_calls", "task_text", "client_id",
                            "workload_id"}) {
        auto st = d.prepare(std::string("SELECT id, format, substr(") + col + ", max(1, instr(" + col + ", ?) - 60), 160) FROM calls WHERE instr(" + col + ", ?) > 0");
        st.bind(1, v);
        st.bind(2, v);
        while (st.step()) where += std::string(" calls.") + col + " (" + st.get_text(1) + "): ..." + st.get_text(2) + "...";
    }
    for (const char* col : {"raw", "detail"}) {
        auto st = d.prepare(std::string("SELECT source_line, substr(") + col + ", max(1, instr(" + col + ", ?) - 60), 160) FROM quarantine WHERE instr(" + col + ", ?) > 0");
        st.bind(1, v);
        st.bind(2, v);
        while (st.step()) where += std::string(" quarantine.") + col + " line " + std::to_string(st.get_int(0)) + ": ..." + st.get_text(1) + "...";
    }
    return where;
}

std::string db_bytes(const std::string& db) {
    std::string all = test::read_file(db);
    if (fs::exists(db + "-wal")) all += test::read_file(db + "-wal");
    return all;
}

}  // namespace

TEST_CASE("planted secrets of every kind never reach the database file (nor its WAL)") {
    test::temp_dir t;
    // the values planted, each distinctive enough to be searched for in the raw bytes
    const std::vector<std::string> planted = {
        "alice.planted@example.com", "+1 415 555 0199", "415 555 0199", "4012 8888 8888 1881", "4012888888881881",
        "219-09-9999", "198.51.100.23", "2001:db8:4006:812::200e", "DE44 5001 0517 5407 3249 31",
        "DE44500105175407324931", "sk-proj-PLANTEDa1b2c3d4e5f6g7h8i9j0k1l2m3n4",
        "sk-ant-api03-PLANTEDz9y8x7w6v5u4t3s2r1q0p9o8n7m6", "AKIAPLANTED7EXAMPLE1",
        "ghp_PLANTEDabcdefghijklmnopqrstuvwxyz0123", "github_pat_11PLANTED0123456789_abcdefghijklmnopqrstuv",
        "xoxb-123456789012-PLANTEDslackTok", "AIzaSyPLANTED-0123456789abcdefghijklmno",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.UExBTlRFRHNpZ25hdHVyZQ", "MIIEpQIBAAKCAQEAplantedPRIVATEKEYbody",
        "Pl4nted!Passw0rd", "plantedSecretValue42", "plantedJsonApiKey99", "plantedUrlPass77", "4821 Plantedwood Avenue"};
    const std::string pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpQIBAAKCAQEAplantedPRIVATEKEYbody\nQ2lM9s0a==\n-----END RSA PRIVATE KEY-----";
    const std::string prose =
        "Contact alice.planted@example.com or +1 415 555 0199 (desk: 415 555 0199). Card 4012 8888 8888 1881, "
        "SSN 219-09-9999, host 198.51.100.23 / 2001:db8:4006:812::200e, IBAN DE44 5001 0517 5407 3249 31. "
        "Keys: sk-proj-PLANTEDa1b2c3d4e5f6g7h8i9j0k1l2m3n4 sk-ant-api03-PLANTEDz9y8x7w6v5u4t3s2r1q0p9o8n7m6 "
        "AKIAPLANTED7EXAMPLE1 ghp_PLANTEDabcdefghijklmnopqrstuvwxyz0123 "
        "github_pat_11PLANTED0123456789_abcdefghijklmnopqrstuv xoxb-123456789012-PLANTEDslackTok "
        "AIzaSyPLANTED-0123456789abcdefghijklmno Authorization: Bearer "
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJwbGFudGVkIn0.UExBTlRFRHNpZ25hdHVyZQ password=Pl4nted!Passw0rd "
        "client_secret: plantedSecretValue42 postgres://svc:plantedUrlPass77@db.example.com/app "
        "ship to 4821 Plantedwood Avenue, Springfield, IL 62704.\n" + pem;
    json tools = json::array({{{"type", "function"},
                               {"function", {{"name", "notify"},
                                             {"description", "Notify. Escalations go to alice.planted@example.com"},
                                             {"parameters", {{"type", "object"}}}}}}});
    json flywheel = {
        {"timestamp", "2026-11-25T10:00:00Z"}, {"workload_id", "support"}, {"client_id", "alice.planted@example.com"},
        {"request",
         {{"model", "gpt-4o"},
          {"messages", json::array({{{"role", "system"}, {"content", "Escalate to alice.planted@example.com"}},
                                    {{"role", "user"}, {"content", prose}},
                                    {{"role", "assistant"},
                                     {"content", nullptr},
                                     {"tool_calls", json::array({{{"id", "c1"}, {"type", "function"},
                                                                  {"function", {{"name", "notify"},
                                                                                {"arguments", json({{"api_key", "plantedJsonApiKey99"},
                                                                                                    {"to", "alice.planted@example.com"}}).dump()}}}}})}},
                                    {{"role", "tool"}, {"tool_call_id", "c1"}, {"content", prose}},
                                    {{"role", "user"}, {"content", json::array({{{"type", "text"}, {"text", prose}}})}}})},
          {"tools", tools}}},
        {"response",
         {{"id", "chatcmpl-secrets-test"},
          {"choices", json::array({{{"finish_reason", "tool_calls"},
                                    {"message", {{"role", "assistant"},
                                                 {"content", "Done: " + prose},
                                                 {"tool_calls", json::array({{{"id", "c2"}, {"type", "function"},
                                                                              {"function", {{"name", "notify"},
                                                                                            {"arguments", json({{"to", "alice.planted@example.com"},
                                                                                                                {"password", "Pl4nted!Passw0rd"},
                                                                                                                {"note", prose}}).dump()}}}}})}}}}})}}}};
    json finetune = {{"messages", json::array({{{"role", "user"}, {"content", prose}}, {{"role", "assistant"}, {"content", prose}}})}};
    json legacy;
    legacy["request"]["messages"] = json::array({{{"role", "user"}, {"content", prose}}});
    legacy["request"]["functions"] = json::array({{{"name", "f"}, {"description", prose}}});
    json fcall = {{"name", "f"}, {"arguments", json({{"secret", "plantedSecretValue42"}, {"x", prose}}).dump()}};
    legacy["response"]["choices"] = json::array({{{"message", {{"function_call", fcall}}}}});
    std::string otel_line = test::read_file(test::source_dir("tests/collector/data/otel-genai-spans.jsonl"));
    otel_line = otel_line.substr(0, otel_line.find('\n'));
    for (size_t p; (p = otel_line.find("jane.doe@example.org")) != std::string::npos;)
        otel_line.replace(p, 20, "alice.planted@example.com");
    std::string text = flywheel.dump() + "\n" + finetune.dump() + "\n" + legacy.dump() + "\n" + otel_line + "\n";
    // quarantined lines keep their raw text: truncated JSON, invalid UTF-8, a JSON-escaped "@"
    std::string fw = flywheel.dump();
    text += fw.substr(0, fw.size() - 40) + "\n";
    text += "{\"broken\": \"" + prose.substr(0, prose.find('\n')) + " \xff\xfe\"\n";
    text += "not json at all: " + prose.substr(0, prose.find('\n')) + "\n";
    text += R"({"messages":[{"role":"user","content":"mail alice.planted\u0040example.com"},{"role":"assistant","content":"ok"}]})"
            "\n";
    test::write_file(t / "secrets.jsonl", text);

    SUBCASE("through the binary") {
        std::string db = t / "s.db";
        auto r = test::run_slmctl("collect --json --db " + q(db) + " " + q(t / "secrets.jsonl"));
        REQUIRE_MESSAGE(r.exit_code == 0, r.err);
        auto s = json::parse(r.out);
        CHECK(s["ingested"] == 6);
        CHECK(s["quarantined"] == 3);
        std::string bytes = db_bytes(db);
        REQUIRE(bytes.size() > 10000);
        for (const auto& v : planted)
            CHECK_MESSAGE(bytes.find(v) == std::string::npos, "found in the database: ", v, locate(db, v));
        for (const char* frag : {"PLANTED", "planted", "Plantedwood", "Pl4nted"})
            CHECK_MESSAGE(bytes.find(frag) == std::string::npos, "found in the database: ", std::string(frag), locate(db, frag));
        // placeholders are consistent within a call: the same address is <EMAIL_1> everywhere
        auto d = store::db::open(db, store::open_mode::read_only);
        auto st = d.prepare("SELECT messages, response_text, response_tool_calls, client_id, tools, scrubbed FROM calls "
                            "WHERE response_id = 'chatcmpl-secrets-test'");
        REQUIRE(st.step());
        CHECK(st.get_text(0).find("Escalate to <EMAIL_1>") != std::string::npos);
        CHECK(st.get_text(1).find("Contact <EMAIL_1> or <PHONE_1>") != std::string::npos);
        CHECK(json::parse(st.get_text(2))[0]["arguments"]["to"] == "<EMAIL_1>");
        CHECK(json::parse(st.get_text(2))[0]["arguments"]["password"] == "<SECRET_1>");
        CHECK(st.get_text(3) == "<EMAIL_1>");
        CHECK(st.get_text(4).find("Escalations go to <EMAIL_1>") != std::string::npos);
        auto kinds = json::parse(st.get_text(5));
        for (const char* k : {"email", "phone", "card", "ssn", "ipv4", "ipv6", "iban", "api_key", "aws_key",
                              "github_token", "slack_token", "jwt", "private_key", "secret", "address"})
            CHECK_MESSAGE(kinds.value(k, 0) > 0, k);
    }
    SUBCASE("in-process, the WAL still open") {
        std::string db = t / "w.db";
        auto d = store::db::open(db);
        collector::collect_params p;
        p.paths = {t / "secrets.jsonl"};
        auto s = collector::collect(d, p);
        CHECK(s.ingested == 6);
        REQUIRE(fs::exists(db + "-wal"));
        std::string bytes = db_bytes(db);
        for (const auto& v : planted)
            CHECK_MESSAGE(bytes.find(v) == std::string::npos, "found in db or wal: ", v, locate(db, v));
        for (const char* frag : {"PLANTED", "planted", "Plantedwood", "Pl4nted"})
            CHECK_MESSAGE(bytes.find(frag) == std::string::npos, "found in db or wal: ", std::string(frag), locate(db, frag));
    }
}

TEST_CASE("SIGKILL mid-run leaves a consistent database; a re-run gives exactly the uninterrupted result") {
    test::temp_dir t;
    std::string log = t / "big.jsonl";
    test::write_file(log, test::generated_log(30000));
    // the uninterrupted reference
    auto ref = test::run_slmctl("collect --json --threads 1 --db " + q(t / "ref.db") + " " + q(log));
    REQUIRE_MESSAGE(ref.exit_code == 0, ref.err);
    auto rs = json::parse(ref.out);
    CHECK(rs["quarantined"] == 309);
    CHECK(rs["duplicate"] == 600);
    CHECK(rs["ingested"] == 30000);

    std::string db = t / "k.db";
    pid_t pid = spawn_slmctl({"collect", "--db", db, "--batch", "200", log}, t / "k.out", t / "k.err");
    REQUIRE_MESSAGE(wait_for_progress(pid, db), "collect finished before it could be killed");
    REQUIRE(kill(pid, SIGKILL) == 0);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    int64_t before;
    {
        auto d = store::db::open(db, store::open_mode::read_only);
        auto ic = d.prepare("PRAGMA integrity_check");
        REQUIRE(ic.step());
        CHECK(ic.get_text(0) == "ok");
        before = test::count(d, "SELECT count(*) FROM calls");
        CHECK(before > 0);
        CHECK(before < 30000);
        CHECK(test::count(d, "SELECT count(*) FROM runs WHERE status = 'running'") == 1);
    }
    // nobody runs it any more: db info shows it interrupted
    auto info = test::run_slmctl("db info --json --db " + q(db));
    REQUIRE(info.exit_code == 0);
    CHECK(json::parse(info.out)["runs"][0]["status"] == "interrupted");
    auto again = test::run_slmctl("collect --json --threads 1 --db " + q(db) + " " + q(log));
    REQUIRE_MESSAGE(again.exit_code == 0, again.err);
    auto as = json::parse(again.out);
    CHECK(as["ingested"].get<int64_t>() + before == 30000);
    CHECK(as["duplicate"].get<int64_t>() == 600 + before);
    CHECK(as["quarantined"] == 309);
    auto d1 = store::db::open(t / "ref.db", store::open_mode::read_only);
    auto d2 = store::db::open(db, store::open_mode::read_only);
    CHECK(test::count(d2, "SELECT count(*) FROM calls") == 30000);
    CHECK(test::count(d2, "SELECT count(*) FROM quarantine") == 309);
    CHECK(test::content_digest(d1) == test::content_digest(d2));
}

TEST_CASE("db info works while collect writes (the writer paused mid-run)") {
    test::temp_dir t;
    std::string log = t / "big.jsonl";
    test::write_file(log, test::generated_log(20000));
    std::string db = t / "w.db";
    pid_t pid = spawn_slmctl({"collect", "--db", db, "--batch", "1000", log}, t / "w.out", t / "w.err");
    REQUIRE_MESSAGE(wait_for_progress(pid, db), "collect finished before db info could run");
    REQUIRE(kill(pid, SIGSTOP) == 0);  // most likely inside a batch transaction
    auto info = test::run_slmctl("db info --json --db " + q(db));
    kill(pid, SIGCONT);
    CHECK(info.exit_code == 0);
    auto j = json::parse(info.out);
    CHECK(j["tables"]["calls"].get<int64_t>() > 0);
    CHECK(j["tables"]["calls"].get<int64_t>() < 20000);
    CHECK(j["tables"]["runs"] == 1);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 0);
    auto after = test::run_slmctl("db info --json --db " + q(db));
    CHECK(json::parse(after.out)["tables"]["calls"] == 20000);
}

TEST_CASE("SIGINT finishes cleanly: batch committed, run 'interrupted', exit 130; a re-run completes") {
    test::temp_dir t;
    std::string log = t / "big.jsonl";
    test::write_file(log, test::generated_log(20000));
    std::string db = t / "i.db";
    pid_t pid = spawn_slmctl({"collect", "--json", "--db", db, "--batch", "100", log}, t / "i.out", t / "i.err");
    REQUIRE_MESSAGE(wait_for_progress(pid, db), "collect finished before it could be interrupted");
    REQUIRE(kill(pid, SIGINT) == 0);
    int st = 0;
    waitpid(pid, &st, 0);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 130);  // 128 + SIGINT
    auto out = json::parse(test::read_file(t / "i.out"));
    CHECK(out["status"] == "interrupted");
    CHECK(test::read_file(t / "i.err").find("re-run") != std::string::npos);
    {
        auto d = store::db::open(db, store::open_mode::read_only);
        CHECK(test::count(d, "SELECT count(*) FROM runs WHERE status = 'interrupted'") == 1);
        // everything handled before the signal was committed
        CHECK(test::count(d, "SELECT count(*) FROM calls") == out["ingested"].get<int64_t>());
    }
    auto again = test::run_slmctl("collect --json --db " + q(db) + " " + q(log));
    REQUIRE(again.exit_code == 0);
    auto ref = test::run_slmctl("collect --json --db " + q(t / "ref.db") + " " + q(log));
    REQUIRE(ref.exit_code == 0);
    auto d1 = store::db::open(t / "ref.db", store::open_mode::read_only);
    auto d2 = store::db::open(db, store::open_mode::read_only);
    CHECK(test::content_digest(d1) == test::content_digest(d2));
}

TEST_CASE("stdin, gzip, --strict, --scrub off, --json and db info") {
    test::temp_dir t;
    std::string good = test::generated_log(40);  // 40 records, no malformed line (the first is after 97)
    test::write_file(t / "good.jsonl", good);
    test::write_gz(t / "good.jsonl.gz", good);
    test::write_file(t / "bad.jsonl", good + "{truncated\n");

    auto a = test::run_slmctl("collect --json --db " + q(t / "stdin.db") + " -", t / "good.jsonl");
    REQUIRE_MESSAGE(a.exit_code == 0, a.err);
    CHECK(json::parse(a.out)["ingested"] == 40);
    {
        auto d = store::db::open(t / "stdin.db", store::open_mode::read_only);
        CHECK(test::count(d, "SELECT count(*) FROM calls WHERE source_file = '<stdin>'") == 40);
    }
    auto z = test::run_slmctl("collect --json --db " + q(t / "gz.db") + " " + q(t / "good.jsonl.gz"));
    REQUIRE_MESSAGE(z.exit_code == 0, z.err);
    CHECK(json::parse(z.out)["ingested"] == 40);
    // gzip on stdin is detected by its magic bytes too
    auto zs = test::run_slmctl("collect --json --db " + q(t / "gz2.db") + " -", t / "good.jsonl.gz");
    CHECK(json::parse(zs.out)["ingested"] == 40);

    auto lax = test::run_slmctl("collect --db " + q(t / "b.db") + " " + q(t / "bad.jsonl"));
    CHECK(lax.exit_code == 0);
    CHECK(lax.out.find("invalid_json") != std::string::npos);  // the human table
    auto strict = test::run_slmctl("collect --strict --db " + q(t / "b2.db") + " " + q(t / "bad.jsonl"));
    CHECK(strict.exit_code == 1);
    CHECK(strict.err.find("quarantined (--strict)") != std::string::npos);
    CHECK(strict.err.find("hint: ") != std::string::npos);
    CHECK(test::run_slmctl("collect --strict --db " + q(t / "b3.db") + " " + q(t / "good.jsonl")).exit_code == 0);

    auto off = test::run_slmctl("collect --scrub off --json --db " + q(t / "off.db") + " " + q(t / "good.jsonl"));
    CHECK(off.exit_code == 0);
    CHECK(off.err.find("--scrub off") != std::string::npos);
    {
        auto d = store::db::open(t / "off.db", store::open_mode::read_only);
        auto p = d.prepare("SELECT params FROM runs");
        REQUIRE(p.step());
        CHECK(json::parse(p.get_text(0))["scrub"] == "off");
        CHECK(test::count(d, "SELECT count(*) FROM calls WHERE messages LIKE '%user7@example.com%'") == 1);
        CHECK(test::count(d, "SELECT count(*) FROM calls WHERE scrubbed <> '{}'") == 0);
    }
    auto info = test::run_slmctl("db info --json --db " + q(t / "b.db"));
    REQUIRE(info.exit_code == 0);
    auto ij = json::parse(info.out);
    CHECK(ij["tables"]["calls"] == 40);
    CHECK(ij["tables"]["quarantine"] == 1);
    CHECK(ij["tables"]["runs"] == 1);
}

TEST_CASE("collect usage and input errors") {
    test::temp_dir t;
    CHECK(test::run_slmctl("collect --db " + q(t / "x.db")).exit_code == 2);  // no PATH
    CHECK(test::run_slmctl("collect --format yaml --db " + q(t / "x.db") + " x.jsonl").exit_code == 2);
    CHECK(test::run_slmctl("collect --scrub maybe --db " + q(t / "x.db") + " x.jsonl").exit_code == 2);
    auto r = test::run_slmctl("collect --db " + q(t / "x.db") + " " + q(t / "missing.jsonl"));
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("missing.jsonl") != std::string::npos);
    CHECK(r.err.find("hint: ") != std::string::npos);
}
