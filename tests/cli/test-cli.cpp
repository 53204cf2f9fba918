// Runs the built slmctl: help, version, db info (text and --json), exit codes for usage errors (2),
// user errors (1), unbuilt subcommands (2).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "../model/vocab-vectors.h"
#include "../test-util.h"

using namespace slm;

TEST_CASE("--help lists every subcommand and exits 0") {
    auto r = test::run_slmctl("--help");
    CHECK(r.exit_code == 0);
    for (const char* sc : {"collect", "cluster", "select", "finetune", "eval", "run", "route", "model", "db"})
        CHECK_MESSAGE(r.out.find(sc) != std::string::npos, sc);
}

TEST_CASE("--version names slmctl and its libraries") {
    auto r = test::run_slmctl("--version");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("slmctl ") == 0);
    CHECK(r.out.find("libtorch") != std::string::npos);
    CHECK(r.out.find("faiss 1.") != std::string::npos);
    CHECK(r.out.find("sqlite 3.") != std::string::npos);
    CHECK(r.out.find("CUDA compiled:") != std::string::npos);
}

TEST_CASE("usage errors exit 2") {
    CHECK(test::run_slmctl("").exit_code == 2);                       // no subcommand
    CHECK(test::run_slmctl("--no-such-flag db info").exit_code == 2);
    CHECK(test::run_slmctl("nosuchcommand").exit_code == 2);
    CHECK(test::run_slmctl("db info --threads -3").exit_code == 2);
}

TEST_CASE("db info on a missing database is a user error: exit 1 with error and hint") {
    test::temp_dir t;
    auto r = test::run_slmctl("db info --db '" + (t / "missing.db") + "'");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("error: ") == 0);
    CHECK(r.err.find("missing.db") != std::string::npos);
    CHECK(r.err.find("hint: ") != std::string::npos);
}

TEST_CASE("db init creates the schema; db info --json parses and lists every table; SLMCTL_DB") {
    test::temp_dir t;
    std::string db = t / "x.db";
    auto init = test::run_slmctl("db init --json --db '" + db + "'");
    REQUIRE_MESSAGE(init.exit_code == 0, init.err);
    int version = nlohmann::json::parse(init.out)["schema_version"].get<int>();
    CHECK(version >= 1);
    auto r = test::run_slmctl("db info --json --db '" + db + "'");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j["schema_version"].get<int>() == version);
    CHECK(j["schema_version_latest"].get<int>() == version);
    CHECK(j["journal_mode"] == "wal");
    CHECK(j["bytes"].get<int64_t>() > 0);
    for (const char* tb : {"runs", "calls", "quarantine", "clusters", "cluster_members", "selections", "adapters",
                           "eval_results"}) {
        REQUIRE_MESSAGE(j["tables"].contains(tb), tb);
        CHECK(j["tables"][tb].get<int64_t>() == 0);
    }
    setenv("SLMCTL_DB", db.c_str(), 1);
    auto r2 = test::run_slmctl("db info");
    unsetenv("SLMCTL_DB");
    CHECK(r2.exit_code == 0);
    CHECK(r2.out.find("x.db") != std::string::npos);
    CHECK(r2.out.find("calls") != std::string::npos);
}

TEST_CASE("every subcommand is built: without its input it says what is missing") {
    test::temp_dir t;
    const std::string db = t / "empty.db";
    auto ft = test::run_slmctl("finetune");  // a usage error names the missing option
    CHECK(ft.exit_code == 2);
    CHECK(ft.err.find("--cluster") != std::string::npos);
    auto run = test::run_slmctl("run --db '" + db + "'");
    CHECK(run.exit_code == 1);
    CHECK(run.err.find("no logs to collect and no calls in") != std::string::npos);
    CHECK(run.err.find("not built") == std::string::npos);
    auto route = test::run_slmctl("route --db '" + db + "'");
    CHECK(route.exit_code == 1);
    CHECK(route.err.find("holds no finished clustering run") != std::string::npos);
    auto cfg = test::run_slmctl("run --db '" + db + "' --config '" + (t / "missing.toml") + "'");
    CHECK(cfg.exit_code == 2);  // CLI11's ExistingFile check
    CHECK(cfg.err.find("missing.toml") != std::string::npos);
}

TEST_CASE("model info / tokenize / generate through the CLI") {
    const std::string tiny = test::shared_data("models/ollama_tiny/llama-2-tiny-random.gguf");
    auto info = test::run_slmctl("model info --json '" + tiny + "'");
    REQUIRE_MESSAGE(info.exit_code == 0, info.err);
    auto ij = nlohmann::json::parse(info.out);
    CHECK(ij["architecture"] == "llama");
    CHECK(ij["format"] == "gguf");
    CHECK(ij["layers"] == 1);
    CHECK(ij["hidden_size"] == 8);

    // SmolLM2 (fetched by the set-up): ids round-trip, digits split one by one
    const std::string smol = std::string(std::getenv("HOME")) + "/.cache/slmctl/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    auto tok = test::run_slmctl("model tokenize --json --decode '" + smol + "' --text 'Hello world 123'");
    REQUIRE_MESSAGE(tok.exit_code == 0, tok.err, " (run scripts/fetch-models.sh)");
    auto tj = nlohmann::json::parse(tok.out);
    CHECK(tj["decoded"] == "Hello world 123");
    CHECK(tj["tokens"].back() == "3");
    CHECK(tj["count"] == tj["ids"].size());

    // the trained stories260K model: greedy generation is deterministic and honours --max-tokens
    const std::string stories = test::shared_data("models/llama2c/stories260K.bin");
    auto g1 = test::run_slmctl("model generate --json '" + stories + "' --prompt 'Once upon a time' --max-tokens 12");
    auto g2 = test::run_slmctl("model generate --json '" + stories + "' --prompt 'Once upon a time' --max-tokens 12");
    REQUIRE_MESSAGE(g1.exit_code == 0, g1.err);
    auto j1 = nlohmann::json::parse(g1.out), j2 = nlohmann::json::parse(g2.out);
    CHECK(j1["results"][0]["ids"].size() == 12);
    CHECK(j1["results"][0]["ids"] == j2["results"][0]["ids"]);

    auto missing = test::run_slmctl("model info /nonexistent/model.gguf");
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("hint: ") != std::string::npos);
    CHECK(test::run_slmctl("model generate '" + stories + "'").exit_code == 2);  // needs --prompt or --chat
}

namespace {

std::string shell_quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

// `slmctl model tokenize --json PATH --text=TEXT`, parsed
nlohmann::json tokenize(const std::string& path, const std::string& text, const std::string& flags = "") {
    // CLI11 takes --text=VALUE whatever VALUE starts with, but not an empty one
    const std::string opt = text.empty() ? "--text ''" : "--text=" + shell_quote(text);
    auto r = test::run_slmctl("model tokenize --json " + flags + " " + shell_quote(path) + " " + opt);
    REQUIRE_MESSAGE(r.exit_code == 0, path, ": ", r.err);
    return nlohmann::json::parse(r.out);
}

}  // namespace

TEST_CASE("model tokenize reads a tokenizer alone: vocab-only GGUF, tokenizer.json, its directory") {
    const auto cases = test::load_vectors("ggml-vocab-gpt-2.gguf");
    REQUIRE(cases.size() == 46);
    const std::string gguf = test::shared_data(test::k_vocab_dir + "ggml-vocab-gpt-2.gguf");
    const std::string json = test::shared_data("tokenizers/gpt2/tokenizer.json");
    const std::string dir = test::shared_data("tokenizers/gpt2");
    // every other case through the vocab-only GGUF, a spread through the json and its directory (each
    // run is a process that loads the tensor plugin; tests/model checks all 46 in process)
    for (size_t i = 0; i < cases.size(); i += 2) {
        CHECK_MESSAGE(tokenize(gguf, cases[i].text)["ids"] == nlohmann::json(cases[i].ids), "GGUF case ", i);
        if (i % 10 == 0) {
            CHECK_MESSAGE(tokenize(json, cases[i].text)["ids"] == nlohmann::json(cases[i].ids), "json case ", i);
            CHECK_MESSAGE(tokenize(dir, cases[i].text)["ids"] == nlohmann::json(cases[i].ids), "dir case ", i);
        }
    }
    // SentencePiece: the model asks for BOS, which tokenize adds
    const auto spm = test::load_vectors("ggml-vocab-llama-spm.gguf");
    const std::string spm_gguf = test::shared_data(test::k_vocab_dir + "ggml-vocab-llama-spm.gguf");
    for (size_t i = 1; i < spm.size(); i += 9) {
        auto want = spm[i].ids;
        want.insert(want.begin(), 1);
        CHECK_MESSAGE(tokenize(spm_gguf, spm[i].text)["ids"] == nlohmann::json(want), "spm case ", i);
    }

    // SmolLM-135M's tokenizer files agree with SmolLM2's GGUF; decode round-trips; specials parse
    const std::string smol_dir = test::shared_data("tokenizers/smollm-135m");
    const std::string smol2 = std::string(std::getenv("HOME")) + "/.cache/slmctl/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    const std::string text = "<|im_start|>user\nHello world 123 caf\xC3\xA9<|im_end|>";
    auto a = tokenize(smol_dir + "/tokenizer.json", text, "--decode --special");
    auto b = tokenize(smol2, text, "--decode --special");
    CHECK(a["ids"] == b["ids"]);
    CHECK(a["decoded"] == "user\nHello world 123 caf\xC3\xA9");  // control tokens are not rendered
    CHECK(a["tokens"][0] == "<|im_start|>");
    CHECK(a["count"] == a["ids"].size());

    // what is not a tokenizer says so, with a hint
    test::temp_dir t;
    auto r = test::run_slmctl("model tokenize '" + t.path.string() + "' --text x");
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("no tokenizer.json") != std::string::npos);
    CHECK(r.err.find("hint: ") != std::string::npos);
}
