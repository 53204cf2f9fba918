// `slmctl run` and `slmctl route` end to end with a tiny random Llama (SmolLM2's tokenizer and chat
// template, 2 layers of width 64, so training and generation take seconds) on a subset of
// sample_logs: a first cycle, a re-run that skips every stage, a second cycle with new calls of one
// task (only the clusters whose data changed are retrained), routing held-out requests, the export;
// and the config file's errors.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/format/safetensors.h"
#include "pipeline/pipeline.h"
#include "store/stages.h"
#include "tests/test-util.h"

#include <doctest/doctest.h>  // last: a torch header defines CHECK too

namespace fs = std::filesystem;
using nlohmann::json;
using namespace slm;

namespace {

const char* kChatml =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A tiny Llama HF directory with random weights and the real SmolLM tokenizer.
void write_tiny_model(const fs::path& dir) {
    fs::create_directories(dir);
    const fs::path tok = test::shared_data("tokenizers/smollm-135m");
    fs::copy_file(tok / "tokenizer.json", dir / "tokenizer.json");
    auto tc = json::parse(test::read_file((tok / "tokenizer_config.json").string()));
    tc["chat_template"] = kChatml;
    tc["eos_token"] = "<|im_end|>";
    std::ofstream(dir / "tokenizer_config.json") << tc.dump(2);
    const int64_t vocab = 49216, d = 64, ff = 128, layers = 2, heads = 4, kv = 2, hd = d / heads;
    json cfg = {{"architectures", {"LlamaForCausalLM"}},
                {"model_type", "llama"},
                {"hidden_size", d},
                {"intermediate_size", ff},
                {"num_hidden_layers", layers},
                {"num_attention_heads", heads},
                {"num_key_value_heads", kv},
                {"head_dim", hd},
                {"vocab_size", vocab},
                {"max_position_embeddings", 2048},
                {"rms_norm_eps", 1e-5},
                {"rope_theta", 10000.0},
                {"tie_word_embeddings", true},
                {"bos_token_id", 1},
                {"eos_token_id", 2},
                {"hidden_act", "silu"},
                {"torch_dtype", "float32"}};
    std::ofstream(dir / "config.json") << cfg.dump(2);
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.f, 0.02f);
    std::vector<std::vector<float>> store;
    std::vector<model::st_write_entry> es;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, bool ones = false) {
        int64_t n = 1;
        for (auto s : shape) n *= s;
        store.emplace_back(static_cast<size_t>(n));
        for (auto& x : store.back()) x = ones ? 1.f : nd(rng);
        es.push_back({name, "F32", shape, nullptr, static_cast<uint64_t>(n) * 4});
    };
    add("model.embed_tokens.weight", {vocab, d});
    for (int l = 0; l < layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "self_attn.q_proj.weight", {heads * hd, d});
        add(p + "self_attn.k_proj.weight", {kv * hd, d});
        add(p + "self_attn.v_proj.weight", {kv * hd, d});
        add(p + "self_attn.o_proj.weight", {d, heads * hd});
        add(p + "mlp.gate_proj.weight", {ff, d});
        add(p + "mlp.up_proj.weight", {ff, d});
        add(p + "mlp.down_proj.weight", {d, ff});
        add(p + "input_layernorm.weight", {d}, true);
        add(p + "post_attention_layernorm.weight", {d}, true);
    }
    add("model.norm.weight", {d}, true);
    for (size_t i = 0; i < es.size(); ++i) es[i].data = store[i].data();
    model::write_safetensors((dir / "model.safetensors").string(), es);
}

struct op_line {
    std::string text, tool, response_id;
};

/// The tool_caller lines of sample_logs/workflow_operator.jsonl for a few tools.
std::vector<op_line> operator_lines(const std::set<std::string>& tools) {
    std::vector<op_line> out;
    std::ifstream f(test::source_dir("sample_logs/workflow_operator.jsonl"));
    std::string line;
    while (std::getline(f, line)) {
        auto j = json::parse(line);
        if (j.value("workload_id", "") != "operator.tool_caller") continue;
        const auto& m = j["response"]["choices"][0]["message"];
        if (!m.contains("tool_calls") || m["tool_calls"].empty()) continue;
        std::string tool = m["tool_calls"][0]["function"]["name"];
        if (tools.count(tool)) out.push_back({line, tool, j["response"].value("id", "")});
    }
    return out;
}

void write_lines(const std::string& path, const std::vector<const op_line*>& ls) {
    std::ofstream f(path);
    for (const auto* l : ls) f << l->text << "\n";
}

std::map<std::string, json> stages_by(const json& run, const std::string& stage) {
    std::map<std::string, json> out;
    for (const auto& s : run.at("stages"))
        if (s.at("stage") == stage) out[s.value("what", "")] = s;
    return out;
}

}  // namespace

TEST_CASE("run config: the example parses; unknown keys, wrong types and bad TOML name file:line") {
    test::temp_dir t;
    pipeline::run_config c;
    pipeline::load_config(test::source_dir("pipeline/slmctl.example.toml"), c);
    // relative paths are the file's directory's
    CHECK(c.collect.paths == std::vector<std::string>{(fs::path(test::source_dir("pipeline")) / "../sample_logs").lexically_normal().string()});
    CHECK(c.pick.max_clusters == 2);
    CHECK(c.drift.max_unassigned_share == doctest::Approx(0.25));
    CHECK(c.finetune.format == "both");
    // the example shows the defaults: loading it changes nothing else
    pipeline::run_config def;
    def.collect.paths = c.collect.paths;
    CHECK(c.to_json() == def.to_json());

    auto fails = [&](const std::string& text, const std::string& want) {
        const std::string p = t / "bad.toml";
        std::ofstream(p) << text;
        pipeline::run_config x;
        try {
            pipeline::load_config(p, x);
            FAIL("no error for: " << text);
        } catch (const user_error& e) {
            CHECK_MESSAGE(std::string(e.what()).find(want) != std::string::npos, e.what());
        }
    };
    fails("[finetune]\nmax_clusters = 2\nmax_cluster = 3\n", "bad.toml:3: unknown key 'max_cluster' in [finetune]");
    fails("[finetune]\nlr = \"fast\"\n", "bad.toml:2: lr must be a number");
    fails("[clusters]\nk = 3\n", "unknown key 'clusters' in [top level]");
    fails("[eval]\nclusters = \"some\"\n", "clusters must be \"all\" or \"finetuned\"");
    fails("[collect\nlogs = []\n", "bad.toml:1:");
    fails("[select]\nmax_params = \"lots\"\n", "bad.toml:2: max_params");
}

TEST_CASE("slmctl run: a cycle, a re-run that skips, a new cycle retraining only changed clusters; route and export") {
    test::temp_dir t;
    const fs::path tiny = t.path / "models" / "tiny-smollm";
    write_tiny_model(tiny);
    const std::set<std::string> tools = {"send_email", "create_ticket", "send_sms", "lookup_record"};
    auto lines = operator_lines(tools);
    REQUIRE(lines.size() > 400);
    // cycle 1: the first 60% of each tool's calls; the rest is held back
    std::map<std::string, std::vector<const op_line*>> by_tool;
    for (const auto& l : lines) by_tool[l.tool].push_back(&l);
    std::vector<const op_line*> first;
    std::map<std::string, std::vector<const op_line*>> rest;
    for (auto& [tool, ls] : by_tool) {
        const size_t cut = ls.size() * 6 / 10;
        first.insert(first.end(), ls.begin(), ls.begin() + static_cast<std::ptrdiff_t>(cut));
        rest[tool].assign(ls.begin() + static_cast<std::ptrdiff_t>(cut), ls.end());
    }
    const std::string logs1 = t / "cycle1.jsonl", db = t / "calls.db", cfg = t / "slmctl.toml";
    write_lines(logs1, first);
    std::ofstream(cfg) << fmt::format(R"([select]
models = ["{}"]
model_cache = false
probe = 1
probe_max_tokens = 4

[finetune]
max_clusters = 3
min_size = 20
min_suitability = 0.0
max_steps = 2
batch_size = 2
max_tokens = 1024
eval_every = 0
val_max = 2
format = "both"

[eval]
max_calls = 2
max_new_tokens = 4
variants = ["base", "customized"]
)",
                                      tiny.string());
    const std::string base_cmd = fmt::format("run --db '{}' --config '{}' --json -q", db, cfg);

    // ---- cycle 1 ----
    auto r1 = test::run_slmctl(base_cmd + " '" + logs1 + "'");
    REQUIRE_MESSAGE(r1.exit_code == 0, r1.err);
    auto j1 = json::parse(r1.out);
    for (const char* s : {"collect", "cluster", "select", "eval"}) {
        CAPTURE(s);
        auto st = stages_by(j1, s);
        REQUIRE(st.size() == 1);
        CHECK(st.begin()->second.at("action") == "ran");
    }
    auto ft1 = stages_by(j1, "finetune");
    REQUIRE(ft1.size() == 3);
    std::map<std::string, int64_t> adapter1;  // what -> adapter id
    for (const auto& [what, s] : ft1) {
        CAPTURE(what);
        CHECK(s.at("action") == "ran");
        const auto& r = s.at("result");
        CHECK(fs::exists(fs::path(r.at("out").get<std::string>()) / "adapter_config.json"));
        CHECK(fs::exists(r.at("gguf").get<std::string>()));
        CHECK(r.at("base") == tiny.string());  // select's top local pick: the only local model
        adapter1[what] = r.at("adapter_id");
    }
    CHECK_FALSE(j1.contains("previous_cycle"));
    CHECK(j1.at("eval").at("shares").size() >= 2);

    // ---- the same command again: every stage skipped, nothing new in the database ----
    auto r2 = test::run_slmctl(base_cmd + " '" + logs1 + "'");
    REQUIRE_MESSAGE(r2.exit_code == 0, r2.err);
    auto j2 = json::parse(r2.out);
    for (const auto& s : j2.at("stages")) {
        CAPTURE(s.dump());
        CHECK(s.at("action") == "skipped");
    }
    CHECK(j2.at("cluster_run") == j1.at("cluster_run"));
    CHECK(j2.at("eval_run") == j1.at("eval_run"));

    // ---- cycle 2: new calls of the first fine-tuned cluster's tool only ----
    const std::string changed = ft1.begin()->first;  // "cluster N (label)"
    std::string changed_tool;
    for (const auto& tool : tools)
        if (changed.find(tool) != std::string::npos) changed_tool = tool;
    REQUIRE_MESSAGE(!changed_tool.empty(), changed);
    const std::string logs2 = t / "cycle2.jsonl";
    write_lines(logs2, rest[changed_tool]);
    auto r3 = test::run_slmctl(base_cmd + " '" + logs1 + "' '" + logs2 + "'");
    REQUIRE_MESSAGE(r3.exit_code == 0, r3.err);
    auto j3 = json::parse(r3.out);
    CHECK(stages_by(j3, "collect").begin()->second.at("action") == "ran");
    auto cl3 = stages_by(j3, "cluster").begin()->second;
    CHECK_MESSAGE(cl3.at("action") == "assigned", cl3.dump());
    REQUIRE(j3.contains("drift"));
    CHECK(j3["drift"].at("new_calls") == rest[changed_tool].size());
    CHECK(j3["drift"].at("recluster") == false);
    CHECK(j3.at("cluster_run") != j1.at("cluster_run"));
    auto ft3 = stages_by(j3, "finetune");
    REQUIRE(ft3.size() == 3);
    // per fine-tuned cluster, the new calls that landed in its train or val split
    std::map<int, int> new_train_val;
    {
        auto d = store::db::open(db);
        std::set<int64_t> old_calls;
        for (const auto& m : store::members_of_run(d, j1.at("cluster_run").get<int64_t>())) old_calls.insert(m.call_id);
        std::map<int64_t, std::string> side;
        for (const auto& s : store::get_splits(d, j3.at("cluster_run").get<int64_t>(), 0)) side[s.call_id] = s.split;
        for (const auto& m : store::members_of_run(d, j3.at("cluster_run").get<int64_t>()))
            if (!old_calls.count(m.call_id) && side[m.call_id] != "test") ++new_train_val[m.cluster_idx];
        // the earlier calls kept their side of the split
        std::map<int64_t, std::string> side1;
        for (const auto& s : store::get_splits(d, j1.at("cluster_run").get<int64_t>(), 0)) side1[s.call_id] = s.split;
        int moved = 0;
        for (const auto& [id, sd] : side1) moved += side[id] != sd;
        CHECK(moved == 0);
    }
    int retrained = 0, carried = 0;
    for (const auto& [what, s] : ft3) {
        CAPTURE(what);
        const int idx = std::stoi(what.substr(std::string("cluster ").size()));
        if (new_train_val[idx] > 0) {
            CHECK(s.at("action") == "ran");  // its train / val calls changed
            ++retrained;
        } else {
            CHECK(s.at("action") == "carried");  // the same calls: the cycle-1 adapter serves it
            CHECK(s.at("result").at("adapter_id") != adapter1[what]);  // recorded for the new cluster row
            ++carried;
        }
    }
    CHECK(retrained >= 1);  // the cluster that got the new calls
    CHECK(carried >= 1);    // and one that got none
    CHECK(stages_by(j3, "eval").begin()->second.at("action") == "ran");
    REQUIRE(j3.contains("previous_cycle"));
    CHECK(j3["previous_cycle"].at("shares").size() >= 2);
    CHECK(j3["previous_cycle"]["shares"][0].contains("previous_share"));

    // ---- `slmctl finetune` without --base takes select's top local pick too ----
    {
        const int idx = std::stoi(changed.substr(std::string("cluster ").size()));
        auto f = test::run_slmctl(fmt::format("finetune --db '{}' --cluster {} --max-steps 1 --batch-size 2 --eval-every 0 "
                                              "--val-max 2 --format gguf --json --out '{}'",
                                              db, idx, t / "manual-adapter"));
        REQUIRE_MESSAGE(f.exit_code == 0, f.err);
        CHECK(json::parse(f.out).at("base") == tiny.string());
        CHECK(f.err.find("the top loadable local pick of `slmctl select`") != std::string::npos);
    }

    // ---- route: the held-out (test split) calls go to the cluster they are stored in ----
    std::map<std::string, int> stored;  // response_id -> cluster idx in the cycle-2 run
    std::vector<std::string> test_ids;
    {
        auto d = store::db::open(db);
        const int64_t cr = j3.at("cluster_run");
        std::set<int64_t> test_calls;
        for (const auto& s : store::get_splits(d, cr, 0, "test")) test_calls.insert(s.call_id);
        for (const auto& m : store::members_of_run(d, cr)) {
            stored[m.response_id] = m.cluster_idx;
            if (test_calls.count(m.call_id)) test_ids.push_back(m.response_id);
        }
    }
    REQUIRE(test_ids.size() >= 10);
    const std::set<std::string> held(test_ids.begin(), test_ids.end());
    const std::string requests = t / "requests.jsonl";
    {
        std::ofstream f(requests);
        for (const auto& l : lines)
            if (held.count(l.response_id)) {
                auto j = json::parse(l.text);
                json req = j["request"];
                req["metadata"] = {{"workload_id", j["workload_id"]}};
                req["id"] = l.response_id;  // echoed back as request_id
                f << req.dump() << "\n";
            }
    }
    const std::string table = t / "routing.json";
    auto rr = test::run_slmctl(fmt::format("route --db '{}' --json --export '{}' '{}'", db, table, requests));
    REQUIRE_MESSAGE(rr.exit_code == 0, rr.err);
    auto routed = json::parse(rr.out);
    REQUIRE(routed.size() == held.size());
    // "its cluster": the cluster that holds most stored calls of its task (the logged tool); the
    // stored membership itself was decided with the answer's shape in view, which a request lacks
    std::map<std::string, std::string> tool_of;
    for (const auto& l : lines) tool_of[l.response_id] = l.tool;
    std::map<std::string, std::map<int, int>> tool_clusters;
    for (const auto& [rid, idx] : stored)
        if (tool_of.count(rid)) ++tool_clusters[tool_of[rid]][idx];
    auto majority = [&](const std::string& tool) {
        int best = -1, n = -1;
        for (const auto& [idx, c] : tool_clusters[tool])
            if (c > n) best = idx, n = c;
        return best;
    };
    int task = 0, same = 0;
    for (const auto& x : routed) {
        CAPTURE(x.dump());
        CHECK(x.at("reason").get<std::string>().size() > 10);
        const std::string rid = x.at("request_id");
        task += majority(tool_of.at(rid)) == x.at("cluster").get<int>();
        same += stored.at(rid) == x.at("cluster").get<int>();
    }
    CHECK(task == static_cast<int>(routed.size()));
    CHECK(same >= static_cast<int>(routed.size()) * 9 / 10);
    auto tj = json::parse(test::read_file(table));
    CHECK(tj.at("format") == "slmctl.routing.v1");
    CHECK(tj.at("cluster_run") == j3.at("cluster_run"));
    CHECK(tj.at("eval_run") == j3.at("eval_run"));
    for (const auto& c : tj.at("clusters")) {
        CAPTURE(c.dump());
        CHECK(c.at("centroid_ref").at("cells").size() >= 1);
        CHECK(c.contains("thresholds"));
        bool replaceable = false;
        for (const auto& e : j3.at("eval").at("clusters"))
            if (e.at("idx") == c.at("cluster")) replaceable = e.value("replaceable", false);
        CHECK((c.at("target") != "llm") == replaceable);
        if (c.at("target") == "adapter") CHECK(fs::exists(c.at("adapter").at("path").get<std::string>()));
    }
    // a request without messages: the line is named
    const std::string bad = t / "bad.jsonl";
    std::ofstream(bad) << "{\"model\": \"gpt-4o\"}\n";
    auto rb = test::run_slmctl(fmt::format("route --db '{}' '{}'", db, bad));
    CHECK(rb.exit_code == 1);
    CHECK(rb.err.find("bad.jsonl:1") != std::string::npos);
}
