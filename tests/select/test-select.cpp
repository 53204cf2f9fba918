// select/: the catalog's schema check (built-in file and bad edits naming the field), constraint
// parsing, hard filters, the scoring formula and its reasons on hand-built candidates, local
// checkpoint discovery and catalog merging, the selections store round trip and finetune's pick,
// and `slmctl select --all` end to end on sample_logs with SmolLM2-135M-Instruct probed for real.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/model.h"
#include "select/select.h"
#include "store/stages.h"
#include "tests/test-util.h"

using namespace slm;
using namespace slm::select;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string catalog_text() { return test::read_file(test::source_dir("select/catalog.json")); }

// The user_error message parse_catalog gives for the catalog after `edit` ("" when it parses).
template <typename F> std::string catalog_error(F edit) {
    json j = json::parse(catalog_text());
    edit(j);
    try {
        parse_catalog(j.dump(), "edited.json");
    } catch (const user_error& e) {
        return e.what();
    }
    return "";
}

template <typename F> std::string user_error_of(F f) {
    try {
        f();
    } catch (const user_error& e) {
        return e.what();
    }
    return "";
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

candidate cand(const std::string& name, int64_t params, bool tools, int64_t ctx = 32768) {
    candidate c;
    c.name = name;
    c.params = params;
    c.architecture = "llama";
    c.loadable = true;
    c.context_length = ctx;
    c.license = "apache-2.0";
    c.license_kind = "open";
    c.tool_calling = tools;
    return c;
}

cluster_needs tool_cluster() {
    cluster_needs n;
    n.size = 1;  // volume 0: w_q 0.40, w_e 0.10
    n.share = 0.2;
    n.p95_prompt = 900;
    n.p95_completion = 124;
    n.needed_context = 1024;
    n.tool_share = 1.0;
    return n;
}

const ranked& by_name(const std::vector<ranked>& rs, const std::string& name) {
    for (const auto& r : rs)
        if (r.c.name == name) return r;
    FAIL("no candidate " << name);
    return rs.front();
}

// A minimal GGUF v3 header with string metadata and no tensors: what find_local_models reads.
void write_gguf(const std::string& path, const std::vector<std::pair<std::string, std::string>>& kv) {
    std::ofstream f(path, std::ios::binary);
    auto u32 = [&](uint32_t v) { f.write(reinterpret_cast<const char*>(&v), 4); };
    auto u64 = [&](uint64_t v) { f.write(reinterpret_cast<const char*>(&v), 8); };
    auto str = [&](const std::string& s) {
        u64(s.size());
        f.write(s.data(), static_cast<std::streamsize>(s.size()));
    };
    f.write("GGUF", 4);
    u32(3);
    u64(0);
    u64(kv.size() + 1);
    str("general.alignment");  // a scalar before the strings: the scan must skip it
    u32(4);
    u32(32);
    for (const auto& [k, v] : kv) {
        str(k);
        u32(8);
        str(v);
    }
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// A database with one 'ok' clustering run and its clusters (no calls: enough for ranking without a probe).
struct ranked_db {
    test::temp_dir t;
    std::string path = t / "s.db";
    store::db d = store::db::open(path);
    int64_t cluster_run = 0, tools_id = 0, prose_id = 0;
    ranked_db() {
        cluster_run = store::begin_run(d, "cluster", "{}");
        store::finish_run(d, cluster_run, "ok");
        const std::string tools_stats =
            R"({"tool_call_share": 0.9, "response_kinds": {"tool_call": 0.9, "json": 0, "code": 0, "prose": 0.1},
                "prompt_tokens": {"p50": 400, "p90": 700, "p99": 1600},
                "completion_tokens": {"p50": 40, "p90": 60, "p99": 150}})";
        const std::string prose_stats =
            R"({"tool_call_share": 0, "response_kinds": {"tool_call": 0, "json": 0, "code": 0, "prose": 1},
                "prompt_tokens": {"p50": 9000, "p90": 10000, "p99": 19000},
                "completion_tokens": {"p50": 300, "p90": 500, "p99": 500}})";
        store::cluster_insert a;
        a.idx = 0;
        a.label = "send_email";
        a.size = 300;
        a.share = 0.6;
        a.suitability = 0.8;
        a.stats = tools_stats;
        tools_id = store::insert_cluster(d, cluster_run, a);
        store::cluster_insert b;
        b.idx = 1;
        b.label = "summaries";
        b.size = 200;
        b.share = 0.4;
        b.suitability = 0.5;
        b.stats = prose_stats;
        prose_id = store::insert_cluster(d, cluster_run, b);
        store::cluster_insert noise;
        noise.idx = -1;
        noise.label = "noise";
        noise.size = 5;
        noise.stats = "{}";
        store::insert_cluster(d, cluster_run, noise);
    }
};

}  // namespace

// ---- catalog ---------------------------------------------------------------------------------

TEST_CASE("catalog: the built-in select/catalog.json passes the schema check and lists the issue's models") {
    const auto& c = builtin_catalog();
    CHECK(c.models.size() == parse_catalog(catalog_text(), "select/catalog.json").models.size());
    std::set<std::string> ids;
    for (const auto& m : c.models) ids.insert(m.id);
    for (const char* id :
         {"smollm2-135m-instruct", "smollm2-360m-instruct", "smollm2-1.7b-instruct", "qwen2.5-0.5b-instruct",
          "qwen2.5-1.5b-instruct", "qwen2.5-3b-instruct", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct",
          "qwen2.5-coder-3b-instruct", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "llama-3.2-1b-instruct",
          "llama-3.2-3b-instruct", "phi-3.5-mini-instruct", "phi-4-mini-instruct", "gemma-2-2b-it", "gemma-3-1b-it",
          "gemma-3-4b-it", "xlam-2-1b-fc-r", "xlam-2-3b-fc-r", "llama-xlam-2-8b-fc-r", "hammer2.1-1.5b",
          "nemotron-mini-4b-instruct", "deepseek-r1-distill-qwen-1.5b"})
        CHECK_MESSAGE(ids.count(id), id);
    // model/ loads the Llama family only (model/format/loader.cpp k_archs): the flag must say so
    const std::set<std::string> loadable_archs = {"llama", "mistral", "qwen2"};
    for (const auto& m : c.models) {
        INFO(m.id);
        CHECK(m.loadable == (loadable_archs.count(m.architecture) == 1));
        CHECK(m.params > 50'000'000);
        CHECK(m.params < 10'000'000'000);
        CHECK(m.context_length >= 2048);
        CHECK(m.source.rfind("https://", 0) == 0);
        CHECK(std::abs(m.memory_q4_gb - memory_gb(m.params, true)) < 0.0051);
        CHECK(std::abs(m.memory_bf16_gb - memory_gb(m.params, false)) < 0.0051);
        if (m.license_kind != "open") CHECK_FALSE(m.license_note.empty());
        if (m.bfcl || m.ifeval) CHECK_FALSE(m.score_source.empty());
        if (m.tool_calling) CHECK_FALSE(m.tool_format.empty());
    }
    // the licences the issue asks to note, and the architectures model/ cannot run
    auto entry = [&](const std::string& id) -> const catalog_entry& {
        for (const auto& m : c.models)
            if (m.id == id) return m;
        FAIL("missing " << id);
        return c.models.front();
    };
    CHECK(entry("qwen2.5-3b-instruct").license_kind == "research-only");
    CHECK(entry("xlam-2-1b-fc-r").license_kind == "non-commercial");
    CHECK(entry("llama-3.2-1b-instruct").license_kind == "community");
    CHECK(entry("smollm2-135m-instruct").license_kind == "open");
    CHECK_FALSE(entry("phi-3.5-mini-instruct").loadable);
    CHECK_FALSE(entry("gemma-2-2b-it").loadable);
    CHECK(entry("smollm2-135m-instruct").loadable);
    CHECK(entry("xlam-2-1b-fc-r").tool_calling);
}

TEST_CASE("catalog: a bad edit fails naming the file and the field") {
    CHECK(catalog_error([](json&) {}).empty());
    std::string e = catalog_error([](json& j) { j["models"][3].erase("params"); });
    CHECK(contains(e, "edited.json"));
    CHECK(contains(e, "models[3].params"));
    CHECK(contains(e, "missing"));
    e = catalog_error([](json& j) { j["models"][3]["memory_gb"]["q4"] = 9.5; });
    CHECK(contains(e, "models[3].memory_gb.q4"));
    e = catalog_error([](json& j) { j["models"][2]["license_kind"] = "free"; });
    CHECK(contains(e, "models[2].license_kind"));
    CHECK(contains(e, "'free'"));
    e = catalog_error([](json& j) { j["models"][1]["id"] = j["models"][0]["id"]; });
    CHECK(contains(e, "models[1].id"));
    CHECK(contains(e, "twice"));
    e = catalog_error([](json& j) { j["models"][0]["gathered"] = "02/12/2026"; });
    CHECK(contains(e, "models[0].gathered"));
    e = catalog_error([](json& j) { j["models"][0]["source"] = "http://example.com"; });
    CHECK(contains(e, "models[0].source"));
    e = catalog_error([](json& j) { j["models"][0]["scores"]["ifeval"] = 120; });
    CHECK(contains(e, "models[0].scores.ifeval"));
    e = catalog_error([](json& j) {
        j["models"][0]["scores"]["bfcl"] = 50;
        j["models"][0]["scores"]["source"] = nullptr;
    });
    CHECK(contains(e, "models[0].scores.source"));
    e = catalog_error([](json& j) { j["models"][0]["loadable"] = "yes"; });
    CHECK(contains(e, "models[0].loadable"));
    e = catalog_error([](json& j) { j["schema"] = "other/2"; });
    CHECK(contains(e, "schema"));
    e = catalog_error([](json& j) { j["models"] = json::array(); });
    CHECK(contains(e, "models"));
    CHECK(contains(user_error_of([] { parse_catalog("{not json", "x.json"); }), "x.json: not JSON"));
    CHECK(contains(user_error_of([] { load_catalog("/nonexistent/cat.json"); }), "/nonexistent/cat.json"));
}

// ---- constraints ---------------------------------------------------------------------------------

TEST_CASE("constraints: parameter counts, sizes and licence lists parse, bad ones name the flag") {
    CHECK(parse_param_count("3B") == 3'000'000'000);
    CHECK(parse_param_count("1.5b") == 1'500'000'000);
    CHECK(parse_param_count("500M") == 500'000'000);
    CHECK(parse_param_count(" 135m ") == 135'000'000);
    CHECK(parse_param_count("7e9") == 7'000'000'000);
    CHECK(parse_param_count("1000000") == 1'000'000);
    for (const char* bad : {"", "abc", "3X", "-1B", "0", "B", "nanB"}) {
        const auto e = user_error_of([&] { parse_param_count(bad); });
        CHECK_MESSAGE(contains(e, "--max-params"), bad);
    }
    CHECK(contains(user_error_of([] { parse_param_count("3Q", "--flag-x"); }), "unknown unit 'q'"));

    CHECK(parse_memory_bytes("8GB") == 8e9);
    CHECK(parse_memory_bytes("8 GiB") == 8.0 * 1024 * 1024 * 1024);
    CHECK(parse_memory_bytes("512MB") == 512e6);
    CHECK(parse_memory_bytes("4G") == 4e9);
    CHECK(parse_memory_bytes("1.5TB") == 1.5e12);
    CHECK(parse_memory_bytes("1024") == 1024);
    for (const char* bad : {"", "0GB", "-1GB", "8 parsecs", "GB"}) {
        const auto e = user_error_of([&] { parse_memory_bytes(bad); });
        CHECK_MESSAGE(contains(e, "--max-memory"), bad);
    }

    CHECK(parse_license_list(" Apache-2.0, MIT ") == std::vector<std::string>{"apache-2.0", "mit"});
    CHECK(parse_license_list("mit,mit,llama3.2") == std::vector<std::string>{"mit", "llama3.2"});
    CHECK(contains(user_error_of([] { parse_license_list("apache-2.0,,mit"); }), "--license"));
    CHECK(contains(user_error_of([] { parse_license_list(""); }), "empty licence id"));
}

TEST_CASE("violation: each hard constraint filters with its reason") {
    const auto n = tool_cluster();
    constraints none;
    CHECK_FALSE(violation(cand("ok", 1'000'000'000, true), n, none));

    constraints k;
    k.max_params = 3'000'000'000;
    auto v = violation(cand("big", 8'000'000'000, true), n, k);
    REQUIRE(v);
    CHECK(contains(*v, "8.0B parameters > --max-params 3.0B"));
    CHECK_FALSE(violation(cand("small", 3'000'000'000, true), n, k));  // the limit itself passes

    constraints m;
    m.max_memory_bytes = 1e9;  // 1.5B params: 0.94 GB of 4-bit weights x 1.2 = 1.1 GB
    v = violation(cand("mid", 1'500'000'000, true), n, m);
    REQUIRE(v);
    CHECK(contains(*v, "--max-memory 1.0 GB"));
    CHECK(contains(*v, "1.1 GB"));
    CHECK_FALSE(violation(cand("tiny", 1'000'000'000, true), n, m));  // 0.75 GB

    constraints l;
    l.licenses = {"mit"};
    auto c = cand("apache", 1'000'000'000, true);
    v = violation(c, n, l);
    REQUIRE(v);
    CHECK(contains(*v, "licence apache-2.0 not in --license mit"));
    c.license = "MIT";
    CHECK_FALSE(violation(c, n, l));

    v = violation(cand("short", 1'000'000'000, true, 512), n, none);
    REQUIRE(v);
    CHECK(contains(*v, "context 512 tokens < needed 1.0k"));

    auto p = cand("probed", 1'000'000'000, true);
    p.probe = probe_result{};
    CHECK_FALSE(violation(p, n, none));
    p.probe->error = "cannot load x.gguf: truncated";
    v = violation(p, n, none);
    REQUIRE(v);
    CHECK(contains(*v, "probe failed: cannot load x.gguf"));
}

TEST_CASE("needs_from_stats: p95 between p90 and p99, kinds and tool share") {
    auto n = needs_from_stats(R"({"tool_call_share": 0.25, "response_kinds": {"json": 0.5, "prose": 0.25},
        "prompt_tokens": {"p90": 1000, "p99": 1900}, "completion_tokens": {"p90": 100, "p99": 190}})",
                              40, 0.1);
    CHECK(n.p95_prompt == doctest::Approx(1500));
    CHECK(n.p95_completion == doctest::Approx(150));
    CHECK(n.needed_context == doctest::Approx(1650));
    CHECK(n.tool_share == doctest::Approx(0.25));
    CHECK(n.json_share == doctest::Approx(0.5));
    CHECK(n.size == 40);
    auto empty = needs_from_stats("{}", 3, 0);
    CHECK(empty.needed_context == 0);
    CHECK(contains(user_error_of([] { needs_from_stats("{oops", 1, 0); }), "clusters.stats"));
}

// ---- ranking -------------------------------------------------------------------------------------

TEST_CASE("rank_candidates: a tool cluster prefers the tool-calling model; over --max-memory is filtered with why") {
    const auto n = tool_cluster();
    constraints k;
    k.max_memory_bytes = parse_memory_bytes("2GB");
    std::vector<candidate> cs = {cand("plain-1b", 1'000'000'000, false), cand("tools-1b", 1'000'000'000, true),
                                 cand("huge-8b", 8'000'000'000, true)};
    const auto rs = rank_candidates(cs, n, k);
    REQUIRE(rs.size() == 3);
    CHECK(rs[0].c.name == "tools-1b");
    CHECK(rs[0].rank == 1);
    CHECK(rs[1].c.name == "plain-1b");
    CHECK(rs[1].rank == 2);
    CHECK(rs[0].score - rs[1].score == doctest::Approx(0.15));  // tool_fit weight x tool share 1
    CHECK(contains(rs[0].why, "needs tools (100% tool calls); native tool calling"));
    CHECK(contains(rs[1].why, "no native tool calling"));
    CHECK(contains(rs[0].why, "p95 prompt 900 tokens"));
    CHECK(contains(rs[0].why, "fits 750 MB in 4-bit"));
    CHECK(rs[2].c.name == "huge-8b");
    CHECK(rs[2].filtered);
    CHECK(rs[2].rank == 0);
    CHECK(contains(rs[2].why, "needs 6.0 GB in 4-bit (weights + 20%) > --max-memory 2.0 GB"));
    CHECK(rs[0].factors.at("tool_fit") == 1.0);
    CHECK(rs[1].factors.at("tool_fit") == 0.0);
}

TEST_CASE("rank_candidates: the documented formula, measured beats published beats the size prior") {
    auto n = tool_cluster();  // volume 1 call: w_q 0.40, w_e 0.10; needed 1024; 8192 context = 8x -> 1
    auto probed = cand("probed", 1'000'000'000, true, 8192);
    probed.probe = probe_result{};
    probed.probe->calls = 4;
    probed.probe->quality = 0.5;
    probed.probe->tokens_per_s = 20;
    probed.probe->metric = "name+args accuracy";
    probed.path = "/models/probed.gguf";
    const auto r = rank_candidates({probed}, n, {});
    REQUIRE(r.size() == 1);
    const double eff = std::log10(20.0) / std::log10(200.0);
    CHECK(r[0].score == doctest::Approx(0.40 * 0.5 + 0.10 * eff + 0.15 + 0.20 + 0.05 + 0.10));
    CHECK(r[0].factors.at("quality_from") == "measured");
    CHECK(r[0].factors.at("efficiency_from") == "measured");
    CHECK(contains(r[0].why, "probe 0.50 on 4 calls (name+args accuracy), 20 tok/s here"));
    CHECK(contains(r[0].why, "loadable, on disk"));

    // published: t BFCL + (1 - t) IFEval with t = 0.5; a missing BFCL takes IFEval
    n.tool_share = 0.5;
    auto pub = cand("pub", 1'000'000'000, true, 8192);
    pub.bfcl = 60;
    pub.ifeval = 80;
    auto half = cand("half", 1'000'000'000, true, 8192);
    half.ifeval = 80;
    auto prior = cand("prior", 1'000'000'000, true, 8192);  // 0.7 clamp((9 - 8) / 2) = 0.35
    const auto rs = rank_candidates({prior, half, pub}, n, {});
    CHECK(by_name(rs, "pub").factors.at("quality").get<double>() == doctest::Approx(0.7));
    CHECK(by_name(rs, "half").factors.at("quality").get<double>() == doctest::Approx(0.8));
    CHECK(by_name(rs, "prior").factors.at("quality").get<double>() == doctest::Approx(0.35));
    CHECK(rs[0].c.name == "half");
    CHECK(rs[1].c.name == "pub");
    CHECK(rs[2].c.name == "prior");
    CHECK(contains(by_name(rs, "pub").why, "published BFCL 60.0, IFEval 80.0"));

    // a research-only licence and a model model/ cannot load cost their weights
    auto research = cand("research", 1'000'000'000, true, 8192);
    research.license_kind = "research-only";
    research.license = "qwen-research";
    auto foreign = cand("foreign", 1'000'000'000, true, 8192);
    foreign.loadable = false;
    foreign.architecture = "phi3";
    const auto rl = rank_candidates({research, foreign, prior}, n, {});
    CHECK(rl[0].c.name == "prior");
    CHECK(by_name(rl, "prior").score - by_name(rl, "research").score == doctest::Approx(0.10 * 0.8));
    CHECK(by_name(rl, "prior").score - by_name(rl, "foreign").score == doctest::Approx(0.20));
    CHECK(contains(by_name(rl, "research").why, "licence qwen-research (research-only)"));
    CHECK(contains(by_name(rl, "foreign").why, "not loadable by slmctl's model/ (phi3)"));

    // equal scores: a local copy first, then by name
    auto a = cand("b-model", 1'000'000'000, true, 8192), b = cand("a-model", 1'000'000'000, true, 8192),
         c = cand("c-model", 1'000'000'000, true, 8192);
    c.path = "/models/c.gguf";
    const auto tie = rank_candidates({a, b, c}, n, {});
    CHECK(tie[0].c.name == "c-model");
    CHECK(tie[1].c.name == "a-model");
    CHECK(tie[2].c.name == "b-model");
}

// ---- local checkpoints and the stage over the store --------------------------------------------------

TEST_CASE("find_local_models: decoder GGUFs and HF dirs; adapters, encoders and non-GGUF files left out") {
    test::temp_dir t;
    write_gguf(t / "SmolLM2-135M-Instruct.Q4_1.gguf", {{"general.architecture", "llama"}, {"general.type", "model"}});
    write_gguf(t / "adapter.gguf", {{"general.type", "adapter"}, {"general.architecture", "llama"}});
    write_gguf(t / "nomic-embed.gguf", {{"general.architecture", "nomic-bert"}});
    write_text(t / "fake.gguf", "not a gguf file at all");
    write_text(t / "notes.txt", "x");
    fs::create_directories(t / "org/tiny-llama");
    write_text(t / "org/tiny-llama/config.json", R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"]})");
    fs::create_directories(t / "minilm");
    write_text(t / "minilm/config.json", R"({"model_type": "bert", "architectures": ["BertModel"]})");
    fs::create_directories(t / "peft-adapter");
    write_text(t / "peft-adapter/adapter_config.json", "{}");
    const auto found = find_local_models({t.path.string()}, false);
    const std::string root = fs::weakly_canonical(t.path).string();
    CHECK(found == std::vector<std::string>{root + "/SmolLM2-135M-Instruct.Q4_1.gguf", root + "/org/tiny-llama"});
    // a file given directly, and the same one twice: unique
    CHECK(find_local_models({t / "SmolLM2-135M-Instruct.Q4_1.gguf", t / "SmolLM2-135M-Instruct.Q4_1.gguf"}, false).size() ==
          1);
    CHECK(contains(user_error_of([&] { find_local_models({t / "missing-dir"}, false); }), "--models " + t / "missing-dir"));
}

TEST_CASE("run_select without a probe: catalog + local copies ranked per cluster, stored, read back") {
    ranked_db r;
    test::temp_dir models;
    write_gguf(models / "SmolLM2-135M-Instruct.Q4_1.gguf", {{"general.architecture", "llama"}});
    write_gguf(models / "mystery-model.gguf", {{"general.architecture", "llama"}});
    select_options o;
    o.model_dirs = {models.path.string()};
    o.model_cache = false;
    o.probe = 0;
    o.limits.max_params = parse_param_count("3B");
    const auto rep = run_select(r.d, o);
    CHECK(rep.cluster_run == r.cluster_run);
    REQUIRE(rep.clusters.size() == 2);  // noise is no task
    CHECK(rep.local.size() == 2);
    const auto& tools = rep.clusters[0];
    CHECK(tools.idx == 0);
    CHECK(tools.needs.tool_share == doctest::Approx(0.9));
    CHECK(tools.needs.p95_prompt == doctest::Approx(700 + 900 * 5.0 / 9));
    const size_t n_catalog = builtin_catalog().models.size();
    CHECK(tools.candidates.size() == n_catalog + 1);  // the local SmolLM2 replaces its catalog line; + mystery
    int smol = 0, mystery = 0;
    for (const auto& c : tools.candidates) {
        if (c.c.catalog_id == "smollm2-135m-instruct") {
            ++smol;
            CHECK(contains(c.c.path, "SmolLM2-135M-Instruct.Q4_1.gguf"));
            CHECK(c.c.name == "SmolLM2-135M-Instruct");
        }
        if (c.c.name == "mystery-model.gguf") {
            ++mystery;
            CHECK(c.c.catalog_id.empty());
        }
        if (c.filtered) {
            CHECK(c.rank == 0);
            CHECK_FALSE(c.why.empty());
        } else {
            CHECK(c.rank > 0);
            CHECK(contains(c.why, "needs tools"));
        }
        if (c.c.params > 3'000'000'000) CHECK(c.filtered);
    }
    CHECK(smol == 1);
    CHECK(mystery == 1);
    CHECK(by_name(tools.candidates, "Llama-xLAM-2-8b-fc-r").why == "8.0B parameters > --max-params 3.0B");
    // the prose cluster needs ~19k tokens of context: the 8k-context models are filtered for it
    const auto& prose = rep.clusters[1];
    const auto& smol_prose = by_name(prose.candidates, "SmolLM2-135M-Instruct");
    CHECK(smol_prose.filtered);
    CHECK(contains(smol_prose.why, "context 8192 tokens < needed"));
    CHECK_FALSE(by_name(prose.candidates, "Qwen2.5-1.5B-Instruct").filtered);
    // a tool-calling model ranks above SmolLM2-135M (no native tools) on the tool cluster
    CHECK(by_name(tools.candidates, "Qwen2.5-1.5B-Instruct").rank < by_name(tools.candidates, "SmolLM2-135M-Instruct").rank);

    // stored: every candidate of every cluster, as ranked
    const auto rows = store::latest_selections(r.d, r.tools_id);
    REQUIRE(rows.size() == tools.candidates.size());
    for (size_t i = 0; i < rows.size(); ++i) {
        CHECK(rows[i].run_id == rep.run_id);
        CHECK(rows[i].rank == tools.candidates[i].rank);
        const auto j = json::parse(rows[i].details);
        CHECK(j.at("name") == tools.candidates[i].c.name);
        CHECK(j.at("why") == tools.candidates[i].why);
    }
    const auto run = store::get_run(r.d, rep.run_id);
    REQUIRE(run);
    CHECK(run->command == "select");
    CHECK(run->status == "ok");
    CHECK(json::parse(run->params).at("limits").at("max_params") == 3'000'000'000);
    CHECK(json::parse(run->params).at("cluster_run") == r.cluster_run);
    // finetune's default base: the best ranked loadable local checkpoint of the cluster
    const std::string pick = top_local_pick(r.d, r.tools_id);
    CHECK_FALSE(pick.empty());
    bool is_local = false;
    for (const auto& p : rep.local) is_local = is_local || p == pick;
    CHECK(is_local);

    // one cluster only, and a cluster that does not exist
    select_options one = o;
    one.cluster_idx = 1;
    CHECK(run_select(r.d, one).clusters.size() == 1);
    one.cluster_idx = 7;
    const auto e = user_error_of([&] { run_select(r.d, one); });
    CHECK(contains(e, "has no cluster 7 (it has 0, 1)"));
}

TEST_CASE("selections: the newest ok select run of a cluster, ranked then filtered; finetune's pick") {
    ranked_db r;
    test::temp_dir files;
    const std::string on_disk = files / "a.gguf", gone = files / "gone.gguf";
    write_text(on_disk, "x");
    auto row = [](int64_t run, int64_t cluster, std::string model, int64_t rank, double score, json details) {
        store::selection_row s;
        s.run_id = run;
        s.cluster_id = cluster;
        s.model = std::move(model);
        s.rank = rank;
        s.score = score;
        s.details = details.dump();
        return s;
    };
    const json local = {{"local", true}, {"loadable", true}}, remote = {{"local", false}, {"loadable", true}},
               unloadable = {{"local", true}, {"loadable", false}};
    CHECK(store::latest_selections(r.d, r.tools_id).empty());
    CHECK(top_local_pick(r.d, r.tools_id).empty());

    const int64_t s1 = store::begin_run(r.d, "select", "{}");
    store::insert_selections(r.d, {row(s1, r.tools_id, "filtered-one", 0, 0, remote), row(s1, r.tools_id, gone, 1, 0.9, local),
                                   row(s1, r.tools_id, "Qwen2.5-1.5B-Instruct", 3, 0.7, remote),
                                   row(s1, r.tools_id, on_disk, 2, 0.8, local), row(s1, r.prose_id, on_disk, 1, 0.5, local)});
    CHECK(store::latest_selections(r.d, r.tools_id).empty());  // still running: not a result yet
    store::finish_run(r.d, s1, "ok");
    auto rows = store::latest_selections(r.d, r.tools_id);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].model == gone);
    CHECK(rows[0].rank == 1);
    CHECK(rows[0].score == doctest::Approx(0.9));
    CHECK(rows[1].rank == 2);
    CHECK(rows[2].rank == 3);
    CHECK(rows[3].model == "filtered-one");
    CHECK(rows[3].rank == 0);
    CHECK(json::parse(rows[1].details) == local);
    // rank 1 is no longer on disk: the next loadable local one
    CHECK(top_local_pick(r.d, r.tools_id) == on_disk);

    // a newer failed run is no result; a newer ok one replaces the old ranking for its clusters only
    const int64_t s2 = store::begin_run(r.d, "select", "{}");
    store::insert_selections(r.d, {row(s2, r.tools_id, "x", 1, 1, local)});
    store::finish_run(r.d, s2, "failed", "{}", "boom");
    CHECK(store::latest_selections(r.d, r.tools_id).size() == 4);
    const int64_t s3 = store::begin_run(r.d, "select", "{}");
    store::insert_selections(r.d, {row(s3, r.tools_id, "Qwen2.5-1.5B-Instruct", 1, 0.9, remote),
                                   row(s3, r.tools_id, on_disk, 2, 0.6, unloadable)});
    store::finish_run(r.d, s3, "ok");
    rows = store::latest_selections(r.d, r.tools_id);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].run_id == s3);
    CHECK(top_local_pick(r.d, r.tools_id).empty());  // no loadable local checkpoint in the newest ranking
    CHECK(store::latest_selections(r.d, r.prose_id).size() == 1);
    CHECK(top_local_pick(r.d, r.prose_id) == on_disk);
}

// ---- end to end -------------------------------------------------------------------------------------

TEST_CASE("slmctl select: bad constraint values and a missing choice of clusters are refused") {
    test::temp_dir t;
    const std::string db = t / "e.db";
    auto r = test::run_slmctl("select --db '" + db + "' --all --max-memory 8parsecs");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "--max-memory '8parsecs'"));
    CHECK(contains(r.err, "hint:"));
    r = test::run_slmctl("select --db '" + db + "' --all --max-params lots");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "--max-params 'lots'"));
    r = test::run_slmctl("select --db '" + db + "' --all --license mit,,");
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "--license"));
    r = test::run_slmctl("select --db '" + db + "' --cluster 1 --all");
    CHECK(r.exit_code == 2);
    CHECK(contains(r.err, "either --cluster IDX or --all"));
    r = test::run_slmctl("select --db '" + db + "'");  // nothing clustered yet
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "no finished clustering run"));
    r = test::run_slmctl("select --db '" + db + "' --all --catalog '" + t / "none.json" + "'");
    CHECK(r.exit_code == 1);
}

TEST_CASE("slmctl select --all on sample_logs: ranks every cluster with reasons, SmolLM2 probed for real") {
    const std::string smol = model::default_smollm2_path();
    if (!fs::exists(smol)) {
        MESSAGE("skipped: " << smol << " is missing (scripts/fetch-models.sh, or make test, fetches it)");
        return;
    }
    test::temp_dir t;
    const std::string db = t / "calls.db";
    std::vector<std::string> logs;  // every log file, bad/ included; labels.jsonl is ground truth, not a log
    for (const auto& e : fs::recursive_directory_iterator(test::source_dir("sample_logs")))
        if (e.path().extension() == ".jsonl" && e.path().filename() != "labels.jsonl") logs.push_back(e.path().string());
    std::sort(logs.begin(), logs.end());
    std::string files;
    for (const auto& l : logs) files += " '" + l + "'";
    auto c = test::run_slmctl("collect" + files + " --db '" + db + "' -q");
    REQUIRE_MESSAGE(c.exit_code == 0, c.err);
    auto k = test::run_slmctl("cluster --db '" + db + "' --json -q");
    REQUIRE_MESSAGE(k.exit_code == 0, k.err);
    const auto kj = json::parse(k.out);
    std::set<int> idxs;  // cluster's "id" column is the idx within the run; -1 is noise
    for (const auto& cl : kj.at("clusters"))
        if (cl.at("id").get<int>() >= 0) idxs.insert(cl.at("id").get<int>());
    REQUIRE_FALSE(idxs.empty());

    auto r = test::run_slmctl("select --db '" + db + "' --all --probe 2 --probe-max-tokens 48 --no-cache --models '" + smol +
                              "' --max-params 4B --json");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    const auto j = json::parse(r.out);
    REQUIRE(j.at("clusters").size() == idxs.size());
    int probed = 0;
    std::vector<int64_t> cluster_ids;  // clusters.id
    for (const auto& cl : j.at("clusters")) {
        INFO("cluster " << cl.at("idx") << " " << cl.at("label"));
        CHECK(idxs.count(cl.at("idx").get<int>()));
        cluster_ids.push_back(cl.at("cluster_id").get<int64_t>());
        const auto& cands = cl.at("candidates");
        REQUIRE(cands.size() == builtin_catalog().models.size());
        int expect_rank = 1;
        bool seen_filtered = false;
        double last = 2;
        for (const auto& x : cands) {
            CHECK_FALSE(x.at("why").get<std::string>().empty());
            if (x.at("filtered").get<bool>()) {
                seen_filtered = true;
                CHECK(x.at("rank") == 0);
                continue;
            }
            CHECK_FALSE(seen_filtered);  // ranked ones first
            CHECK(x.at("rank") == expect_rank++);
            CHECK(x.at("score").get<double>() <= last);
            last = x.at("score").get<double>();
        }
        for (const auto& x : cands) {
            if (x.at("params").get<int64_t>() > 4'000'000'000) CHECK(x.at("filtered").get<bool>());
            if (x.at("catalog_id") != "smollm2-135m-instruct") continue;
            CHECK(x.at("local").get<bool>());
            CHECK(x.at("path") == fs::weakly_canonical(smol).string());
            if (x.at("filtered").get<bool>()) continue;  // e.g. a cluster needing more than 8k context
            const auto& p = x.at("probe");
            REQUIRE(p.is_object());
            CHECK_FALSE(p.contains("error"));
            CHECK(p.at("calls").get<int>() + p.at("skipped").get<int>() >= 1);
            CHECK(p.at("calls").get<int>() + p.at("skipped").get<int>() <= 2);
            CHECK(p.at("tokens_per_s").get<double>() > 0);
            CHECK(p.at("quality").get<double>() >= 0);
            CHECK(p.at("quality").get<double>() <= 1);
            CHECK(contains(p.at("calls_from").get<std::string>(), "split of run"));
            CHECK(x.at("factors").at("quality_from") == "measured");
            CHECK(contains(x.at("why").get<std::string>(), "tok/s here"));
            MESSAGE("cluster " << cl.at("idx").get<int>() << " " << cl.at("label").get<std::string>() << ": SmolLM2 quality "
                               << p.at("quality").get<double>() << " (" << p.at("metric").get<std::string>() << "), "
                               << p.at("tokens_per_s").get<double>() << " tok/s, rank " << x.at("rank").get<int>());
            ++probed;
        }
        // the table's "why" names the cluster's needs
        CHECK(contains(cands.at(0).at("why").get<std::string>(), "p95 prompt"));
    }
    CHECK(probed >= 1);
    // stored in selections; finetune --cluster without --base would take the local SmolLM2
    auto d = store::db::open(db, store::open_mode::read_only);
    CHECK(store::latest_selections(d, cluster_ids.front()).size() == builtin_catalog().models.size());
    int picks = 0;
    for (int64_t id : cluster_ids)
        if (top_local_pick(d, id) == fs::weakly_canonical(smol).string()) ++picks;
    CHECK(picks == probed);
    // the table form: a header per cluster and the filtered models with their reason
    auto tbl = test::run_slmctl("select --db '" + db + "' --all --probe 0 --no-cache --max-params 1B");
    REQUIRE_MESSAGE(tbl.exit_code == 0, tbl.err);
    CHECK(contains(tbl.out, "rank"));
    CHECK(contains(tbl.out, "filtered: 8.0B parameters > --max-params 1.0B"));
}
