// clustering/: metrics against scikit-learn values, TF-IDF properties, k-means determinism,
// the stored run and assign(), suitability ordering, and the CLI over a synthetic store.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "clustering/clustering.h"
#include "common/common.h"
#include "model/bert.h"
#include "store/store.h"
#include "../test-util.h"
#include "synthetic-calls.h"

using namespace slm;
using namespace slm::clustering;

namespace {

std::vector<int> truth_of(const std::vector<test::synthetic_call>& calls) {
    std::map<std::string, int> ids;
    std::vector<int> t;
    for (auto& c : calls) t.push_back(ids.try_emplace(c.type, static_cast<int>(ids.size())).first->second);
    return t;
}

double cosine(const float* a, const float* b, int d) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

/// A store filled with `n` synthetic calls.
struct synthetic_store {
    test::temp_dir dir;
    std::string path = dir / "s.db";
    std::vector<test::synthetic_call> calls;
    explicit synthetic_store(int n, uint64_t seed = 7) {
        test::synth g(seed);
        calls = g.mix(n);
        auto d = store::db::open(path);
        test::store_calls(d, calls);
    }
};

}  // namespace

// ---- metrics ----------------------------------------------------------------------------------

TEST_CASE("NMI and ARI match scikit-learn 1.2 on pinned cases") {
    // values from sklearn.metrics.normalized_mutual_info_score / adjusted_rand_score
    struct c {
        std::vector<int> a, b;
        double nmi, ari;
    };
    std::vector<c> cases = {
        {{0, 0, 0, 1, 1, 1}, {0, 0, 1, 1, 2, 2}, 0.5158037429793888, 0.24242424242424243},
        {{0, 0, 1, 1}, {1, 1, 0, 0}, 1.0, 1.0},
        {{0, 1, 2, 0, 1, 2, 0, 1, 2, 3}, {1, 1, 1, 0, 0, 0, 2, 2, 2, 2}, 0.08336246558133524, -0.2962962962962963},
        {{5, 5, 5, 7, 7, 9, 9, 9, 9, 2}, {0, 0, 1, 1, 1, 2, 2, 3, 3, 3}, 0.6787160153384949, 0.3076923076923077},
    };
    for (auto& k : cases) {
        CHECK(nmi(k.a, k.b) == doctest::Approx(k.nmi).epsilon(1e-12));
        CHECK(ari(k.a, k.b) == doctest::Approx(k.ari).epsilon(1e-12));
        CHECK(nmi(k.b, k.a) == doctest::Approx(k.nmi).epsilon(1e-12));  // symmetric
    }
    CHECK(nmi({0, 0, 0}, {1, 1, 1}) == 1.0);
    CHECK(ari({1, 2, 3}, {4, 5, 6}) == 1.0);
    CHECK_THROWS_AS(nmi({0, 1}, {0}), internal_error);
}

TEST_CASE("cosine silhouette matches scikit-learn and the O(n^2) definition") {
    // 12 unit vectors (float32 of a seeded normal draw); sklearn silhouette_score(metric="cosine")
    const std::vector<float> x = {
        0.00125712133012712f, 0.30529478192329407f, -0.28014764189720154f, -0.9101158380508423f,
        -0.26294806599617004f, -0.5734952688217163f, 0.03478262573480606f, 0.7750816941261292f,
        -0.49354833364486694f, -0.6221663951873779f, 0.49117743968963623f, 0.35785993933677673f,
        0.0903526097536087f, -0.7975223660469055f, -0.025072308257222176f, 0.5959579348564148f,
        -0.4977248013019562f, -0.16944222152233124f, -0.7039692401885986f, -0.4774795174598694f,
        -0.8133630752563477f, -0.1038229912519455f, -0.5597407817840576f, 0.11979813128709793f,
        0.0606316477060318f, -0.07230527698993683f, -0.973487913608551f, -0.20836754143238068f,
        -0.030167583376169205f, 0.0704781785607338f, -0.9517443180084229f, -0.2971625030040741f,
        -0.5315107107162476f, -0.4393431544303894f, 0.5762575268745422f, -0.43863561749458313f,
        -0.03050932288169861f, 0.82966548204422f, -0.5474883317947388f, -0.10479003936052322f,
        0.08951497077941895f, 0.05168576538562775f, -0.9927279353141785f, 0.061700478196144104f,
        0.608119785785675f, -0.6923999786376953f, 0.38460302352905273f, 0.05341499298810959f};
    const std::vector<int> lab = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0, 1};
    const int n = 12, d = 4;
    double s = silhouette(x.data(), n, d, lab);
    CHECK(s == doctest::Approx(-0.23356219858374672).epsilon(1e-5));
    // the plain definition
    double total = 0;
    for (int i = 0; i < n; ++i) {
        std::map<int, std::pair<double, int>> per;
        for (int j = 0; j < n; ++j)
            if (j != i) {
                auto& e = per[lab[j]];
                e.first += 1 - cosine(&x[i * d], &x[j * d], d);
                e.second++;
            }
        double a = per[lab[i]].first / per[lab[i]].second, b = 1e9;
        for (auto& [l, e] : per)
            if (l != lab[i]) b = std::min(b, e.first / e.second);
        total += (b - a) / std::max(a, b);
    }
    CHECK(s == doctest::Approx(total / n).epsilon(1e-5));
}

// ---- tfidf -------------------------------------------------------------------------------------

TEST_CASE("tfidf embeddings: unit norm, deterministic, boilerplate on every call does not blur types") {
    test::synth g(3);
    auto calls = g.mix(400);
    std::vector<std::string> docs;
    for (auto& c : calls) docs.push_back(c.task_text);
    std::vector<std::string_view> v(docs.begin(), docs.end());
    tfidf_params p;
    p.dim = 64;
    std::vector<float> x1, x2;
    auto e1 = fit_tfidf(v, p, 11, &x1);
    auto e2 = fit_tfidf(v, p, 11, &x2);
    REQUIRE(e1->dim() == 64);
    REQUIRE(x1.size() == v.size() * 64);
    CHECK(x1 == x2);
    for (size_t i = 0; i < v.size(); ++i) CHECK(cosine(&x1[i * 64], &x1[i * 64], 64) == doctest::Approx(1.0).epsilon(1e-4));
    // embed() of a fitted model reproduces the corpus vectors
    std::vector<float> again(x1.size());
    e1->embed(v, again.data());
    CHECK(again == x1);
    // same task type closer than other types, on average, also when every call carries the same
    // long boilerplate (idf ~1 and PCA centring take it out)
    auto truth = truth_of(calls);
    auto margin = [&](const std::vector<float>& x) {
        double same = 0, other = 0;
        int ns = 0, no = 0;
        for (int i = 0; i < 200; ++i)
            for (int j = i + 1; j < 200; ++j) {
                double c = cosine(&x[i * 64], &x[j * 64], 64);
                if (truth[i] == truth[j]) same += c, ++ns;
                else other += c, ++no;
            }
        return same / ns - other / no;
    };
    std::vector<std::string> boiler;
    for (auto& c : calls)
        boiler.push_back("Please always be polite, concise and accurate in your answers to the team. " + c.task_text);
    std::vector<std::string_view> vb(boiler.begin(), boiler.end());
    std::vector<float> xb;
    fit_tfidf(vb, p, 11, &xb);
    MESSAGE("same-type minus other-type mean cosine: ", margin(x1), ", with boilerplate ", margin(xb));
    CHECK(margin(x1) > 0.5);
    CHECK(margin(xb) > 0.5);
    // tiny corpora: fewer documents than dimensions still embed
    std::vector<std::string_view> three = {"a b c", "d e f", "a b f"};
    std::vector<float> x3;
    auto e3 = fit_tfidf(three, tfidf_params{}, 1, &x3);
    CHECK(x3.size() == 3 * 256u);
}

TEST_CASE("tfidf save/load round-trips; damaged blobs are refused") {
    test::synth g(5);
    auto calls = g.mix(200);
    std::vector<std::string> docs;
    for (auto& c : calls) docs.push_back(c.task_text);
    std::vector<std::string_view> v(docs.begin(), docs.end());
    std::vector<float> x;
    tfidf_params p;
    p.hash_bits = 16;
    auto e = fit_tfidf(v, p, 1, &x);
    auto blob = e->save();
    auto back = load_embedder("tfidf", blob);
    std::vector<float> y(x.size());
    back->embed(v, y.data());
    CHECK(x == y);
    CHECK(back->params() == e->params());
    auto cut = blob;
    cut.resize(cut.size() - 5);
    CHECK_THROWS_AS(load_embedder("tfidf", cut), user_error);
    auto bad = blob;
    bad[0] = 'X';
    CHECK_THROWS_AS(load_embedder("tfidf", bad), user_error);
    CHECK_THROWS_AS(load_embedder("nope", blob), user_error);
}

TEST_CASE("unknown embedders are usage errors; a missing model is a user error") {
    CHECK_THROWS_AS(make_pretrained_embedder("model:/x.gguf"), user_error);  // no such file
    CHECK_THROWS_AS(make_pretrained_embedder("word2vec"), usage_error);
}

// ---- k-means and the cell merge ----------------------------------------------------------------

TEST_CASE("spherical k-means is deterministic for a seed and finds separated blobs") {
    // 3 directions in 8-d with small noise
    std::mt19937_64 rng(1);
    std::normal_distribution<float> noise(0.f, 0.05f);
    const int d = 8, n = 600;
    std::vector<float> x(n * d);
    std::vector<int> truth(n);
    for (int i = 0; i < n; ++i) {
        truth[i] = i % 3;
        for (int t = 0; t < d; ++t) x[i * d + t] = (t == truth[i] ? 1.f : 0.f) + noise(rng);
        double nn = std::sqrt(cosine(&x[i * d], &x[i * d], d));
        for (int t = 0; t < d; ++t) x[i * d + t] /= static_cast<float>(nn);
    }
    kmeans_params kp;
    auto a = spherical_kmeans(x.data(), n, d, 3, kp, 42);
    auto b = spherical_kmeans(x.data(), n, d, 3, kp, 42);
    CHECK(a.labels == b.labels);
    CHECK(a.centroids == b.centroids);
    CHECK(nmi(truth, a.labels) == doctest::Approx(1.0));
    for (int c = 0; c < 3; ++c) CHECK(cosine(&a.centroids[c * d], &a.centroids[c * d], d) == doctest::Approx(1.0).epsilon(1e-5));
    CHECK_THROWS_AS(spherical_kmeans(x.data(), 0, d, 3, kp, 1), user_error);
}

TEST_CASE("cluster_vectors: k auto finds the task types, nodes never share a cluster") {
    test::synth g(9);
    auto calls = g.mix(1500);
    std::vector<std::string> docs;
    std::vector<int> group;
    std::map<std::string, int> gid;
    for (auto& c : calls) {
        docs.push_back(c.task_text);
        group.push_back(gid.try_emplace(c.workload_id, static_cast<int>(gid.size())).first->second);
    }
    std::vector<std::string_view> v(docs.begin(), docs.end());
    std::vector<float> x;
    cluster_params p;
    p.min_cluster_size = 10;
    auto e = fit_tfidf(v, p.tfidf, p.seed, &x);
    k_choice scan;
    auto part = cluster_vectors(x.data(), v.size(), e->dim(), group, 0, p, &scan);
    auto truth = truth_of(calls);
    MESSAGE("k auto chose ", part.k, ", NMI ", nmi(truth, part.labels), ", ARI ", ari(truth, part.labels));
    CHECK(nmi(truth, part.labels) >= 0.95);
    CHECK(!scan.silhouettes.empty());
    std::map<int, std::set<int>> groups_of_cluster;
    for (size_t i = 0; i < v.size(); ++i)
        if (part.labels[i] >= 0) groups_of_cluster[part.labels[i]].insert(group[i]);
    for (auto& [c, gs] : groups_of_cluster) CHECK(gs.size() == 1);
    // sizes decrease with the cluster number
    std::vector<int64_t> size(part.k, 0);
    for (int l : part.labels)
        if (l >= 0) ++size[l];
    for (int c = 1; c < part.k; ++c) CHECK(size[c - 1] >= size[c]);
    // a fixed k is honoured; the same seed gives the same partition
    auto k3 = cluster_vectors(x.data(), v.size(), e->dim(), group, 3, p, nullptr);
    CHECK(k3.k == 3);
    auto again = cluster_vectors(x.data(), v.size(), e->dim(), group, 0, p, nullptr);
    CHECK(again.labels == part.labels);
}

// ---- describing clusters -----------------------------------------------------------------------

TEST_CASE("response kinds") {
    CHECK(classify_response("", R"([{"name":"f","arguments":{}}])") == response_kind::tool_call);
    CHECK(classify_response("{\"a\": 1}", "") == response_kind::json);
    CHECK(classify_response("```json\n{\"a\": [1, 2]}\n```", "[]") == response_kind::json);
    CHECK(classify_response("```python\ndef f():\n    return 1\n```", "") == response_kind::code);
    CHECK(classify_response("import os\nx = os.getcwd();\nprint(x);\n", "") == response_kind::code);
    CHECK(classify_response("The root cause is a race between two writers.", "") == response_kind::prose);
    CHECK(classify_response("{not json", "") == response_kind::prose);
}

TEST_CASE("suitability: a templated tool-call cluster scores above open-ended reasoning") {
    test::synth g(4);
    std::vector<call_sample> tool, prose;
    auto to_sample = [](const test::synthetic_call& c) {
        call_sample s;
        s.task_text = c.task_text;
        s.response_text = c.response_text;
        s.response_tool_calls = c.response_tool_calls;
        s.prompt_tokens = c.prompt_tokens;
        s.completion_tokens = c.completion_tokens;
        s.workload_id = c.workload_id;
        return s;
    };
    for (int i = 0; i < 60; ++i) tool.push_back(to_sample(g.ticket()));
    for (int i = 0; i < 60; ++i) prose.push_back(to_sample(g.reasoning()));
    auto idf = response_idf({&tool, &prose});
    auto st = describe(tool, idf, 48, 1), sp = describe(prose, idf, 48, 1);
    auto su_t = score_suitability(st), su_p = score_suitability(sp);
    MESSAGE("tool-call cluster ", su_t.score, " (repetitiveness ", st.repetitiveness, "), reasoning ", su_p.score,
            " (repetitiveness ", sp.repetitiveness, ")");
    CHECK(su_t.score > su_p.score + 0.3);
    CHECK(su_t.score >= 0.7);
    CHECK(su_p.score <= 0.45);
    CHECK(su_t.score <= 1.0);
    CHECK(su_p.score >= 0.0);
    CHECK(st.tool_call_share == doctest::Approx(1.0));
    CHECK(sp.kind_share[static_cast<int>(response_kind::prose)] == doctest::Approx(1.0));
    CHECK(st.repetitiveness > sp.repetitiveness);
    CHECK(st.completion_tokens_p[1] < sp.completion_tokens_p[1]);
    REQUIRE(su_t.reasons.is_array());
    CHECK(su_t.reasons.size() == 4);
    for (auto& r : su_p.reasons) CHECK(!r.value("evidence", "").empty());
}

TEST_CASE("c-TF-IDF labels name what is particular to each cluster and are distinct") {
    std::vector<std::string> a = {"create ticket printer broken", "create ticket vpn down", "create ticket disk full"};
    std::vector<std::string> b = {"send email to dana", "send email to omar about the offsite", "send email please"};
    std::vector<std::string> c = {"send email to dana", "send email to omar", "send email"};
    std::vector<std::vector<std::string_view>> docs(3);
    for (auto& s : a) docs[0].push_back(s);
    for (auto& s : b) docs[1].push_back(s);
    for (auto& s : c) docs[2].push_back(s);
    auto terms = c_tfidf_terms(docs, 5);
    REQUIRE(terms[0].size() >= 2);
    CHECK((terms[0][0].first == "ticket" || terms[0][0].first == "create"));
    auto labels = make_labels(terms);
    CHECK(labels.size() == 3);
    CHECK(std::set<std::string>(labels.begin(), labels.end()).size() == 3);
    for (auto& l : labels) CHECK(!l.empty());
}

// ---- the stored run ----------------------------------------------------------------------------

TEST_CASE("run() stores runs/clusters/members/model; assign() returns the training assignment") {
    synthetic_store s(800);
    auto d = store::db::open(s.path);
    cluster_params p;
    auto r = run(d, p);
    CHECK(r.run_id > 0);
    CHECK(r.calls == 800);
    CHECK(r.k >= 3);
    auto members = load_members(d, r.run_id);
    REQUIRE(members.size() == 800);
    std::vector<int> pred;
    for (auto& m : members) pred.push_back(m.cluster);
    auto truth = truth_of(s.calls);
    MESSAGE("synthetic store: k=", r.k, " NMI ", nmi(truth, pred));
    CHECK(nmi(truth, pred) >= 0.95);
    // the runs row: ok, resolved params with the scan, summary
    auto q = d.prepare("SELECT status, params, summary FROM runs WHERE id = ?");
    q.bind(1, r.run_id);
    REQUIRE(q.step());
    CHECK(q.get_text(0) == "ok");
    auto params = nlohmann::json::parse(q.get_text(1));
    CHECK(params.at("k") == "auto");
    CHECK(params.at("k_chosen").get<int>() >= 3);
    CHECK(params.at("k_scan").at("silhouettes").size() >= 2);
    CHECK(params.at("embedder_params").at("dim") == 256);
    // clusters: shares sum to 1, labels distinct, suitability in [0,1], centroids of dim floats
    auto loaded = load_run(d, r.run_id);
    double share = 0;
    std::set<std::string> labels;
    for (auto& c : loaded.clusters) {
        share += c.share;
        labels.insert(c.label);
        if (c.idx >= 0) {
            CHECK(c.suitability >= 0);
            CHECK(c.suitability <= 1);
            CHECK(c.reasons.size() == 4);
            CHECK(c.stats.at("top_terms").size() >= 1);
        }
    }
    CHECK(share == doctest::Approx(1.0));
    CHECK(labels.size() == loaded.clusters.size());
    // the reasoning cluster is the least suitable
    std::map<std::string, std::map<int, int>> votes;
    for (size_t i = 0; i < members.size(); ++i) votes[s.calls[i].type][members[i].cluster]++;
    auto top = [&](const std::string& t) {
        return std::max_element(votes[t].begin(), votes[t].end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
    };
    auto suit = [&](int idx) {
        for (auto& c : loaded.clusters)
            if (c.idx == idx) return c.suitability;
        return -1.0;
    };
    CHECK(suit(top("ticket")) > suit(top("reasoning")));
    CHECK(suit(top("invoice")) > suit(top("reasoning")));

    // assign(): the training calls land where the run put them
    auto a = assigner::load(d, r.run_id);
    CHECK(a.k() == r.k);
    std::vector<call_text> texts;
    for (auto& c : s.calls) texts.push_back({c.task_text, c.workload_id, c.system_prompt});
    auto got = a.assign(texts);
    REQUIRE(got.size() == members.size());
    int same = 0;
    for (size_t i = 0; i < got.size(); ++i) same += got[i].cluster == members[i].cluster;
    CHECK(same == static_cast<int>(got.size()));
    // a fresh call of a known type joins that type's cluster, also from an unknown node
    test::synth g(1234);
    auto fresh = g.ticket();
    auto one = a.assign({{fresh.task_text, fresh.workload_id, ""}, {fresh.task_text, "never.seen", ""}});
    CHECK(one[0].cluster == top("ticket"));
    CHECK(one[1].cluster == top("ticket"));
    CHECK(one[0].cluster_id > 0);

    // samples for --show: closest first
    auto samples = cluster_samples(d, r.run_id, 0, 3);
    REQUIRE(samples.size() == 3);
    CHECK(samples[0].similarity >= samples[1].similarity);
    CHECK(latest_run(d) == r.run_id);
}

TEST_CASE("run(): a fixed k, one workload, and the errors") {
    synthetic_store s(300);
    auto d = store::db::open(s.path);
    cluster_params p;
    p.k = "2";
    p.workload = "ops.tool_caller";
    auto r = run(d, p);
    CHECK(r.k == 2);
    int64_t ops = 0;
    for (auto& c : s.calls) ops += c.workload_id == "ops.tool_caller";
    CHECK(r.calls == ops);

    p.workload = "no.such.node";
    CHECK_THROWS_AS(run(d, p), user_error);
    p.workload.clear();
    p.k = "many";
    CHECK_THROWS_AS(run(d, p), usage_error);
    p.k = "auto";
    p.k_min = 5;
    p.k_max = 2;
    CHECK_THROWS_AS(run(d, p), usage_error);
    p.k_max = 40;
    p.embedder = "model:/x.gguf";
    CHECK_THROWS_AS(run(d, p), user_error);

    test::temp_dir t;
    auto empty = store::db::open(t / "empty.db");
    CHECK_THROWS_AS(run(empty, cluster_params{}), user_error);
    CHECK_THROWS_AS(load_run(empty, 99), user_error);
    CHECK(latest_run(empty) == 0);
}

TEST_CASE("a node's system prompt would dominate: with it, clusters follow the prompt version") {
    // one node, two task types, and two deployed versions of the node's long system prompt
    // (as in sample_logs): the version says nothing about the task
    test::synth g(21);
    std::vector<test::synthetic_call> calls;
    const std::string v1 =
        "You are the operations assistant of ACME Corporation, a company that ships widgets to customers in forty "
        "countries. Follow the runbook, be courteous, never reveal internal tooling, escalate incidents to the "
        "on-call engineer, and log every action you take in the audit trail with the ticket number.";
    const std::string v2 =
        "Role: ops agent (v2). Rules: 1) act only through the provided functions 2) prefer the cheapest action "
        "3) confirm destructive changes 4) reply in the user's language 5) summarise what was done in one line.";
    for (int i = 0; i < 600; ++i) {
        calls.push_back(i % 2 ? g.ticket() : g.email());
        calls.back().system_prompt = (i / 2) % 2 ? v1 : v2;
    }
    auto truth = truth_of(calls);
    auto score = [&](bool with_system) {
        text_params tp;
        tp.include_system = with_system;
        std::vector<std::string> docs;
        for (auto& c : calls) docs.push_back(document({c.task_text, c.workload_id, c.system_prompt}, tp));
        std::vector<std::string_view> v(docs.begin(), docs.end());
        cluster_params p;
        std::vector<float> x;
        auto e = fit_tfidf(v, p.tfidf, 1, &x);
        auto part = cluster_vectors(x.data(), v.size(), e->dim(), {}, 2, p, nullptr);
        return nmi(truth, part.labels);
    };
    double without = score(false), with = score(true);
    MESSAGE("NMI without system prompt ", without, ", with ", with);
    CHECK(without >= 0.95);
    CHECK(with < 0.5);
}

// ---- the CLI -----------------------------------------------------------------------------------

TEST_CASE("slmctl cluster: table, --json, --show, --members, errors") {
    if (!std::filesystem::exists(test::slmctl_binary())) {
        MESSAGE("slmctl not built; skipping");
        return;
    }
    synthetic_store s(400);
    std::string db = "--db '" + s.path + "'";
    auto r = test::run_slmctl(db + " cluster --k auto --members '" + (s.dir / "m.jsonl") + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("label") != std::string::npos);
    CHECK(r.out.find("suit") != std::string::npos);
    std::ifstream f(s.dir / "m.jsonl");
    std::string line;
    int lines = 0;
    while (std::getline(f, line)) {
        auto j = nlohmann::json::parse(line);
        CHECK(j.contains("call_id"));
        CHECK(j.contains("response_id"));
        CHECK(j.contains("workload_id"));
        CHECK(j.at("cluster").is_number_integer());
        ++lines;
    }
    CHECK(lines == 400);

    auto js = test::run_slmctl(db + " cluster --k 3 --json");
    REQUIRE(js.exit_code == 0);
    auto j = nlohmann::json::parse(js.out);
    CHECK(j.at("clusters").size() >= 3);
    CHECK(j.at("clusters")[0].contains("suitability"));
    CHECK(j.at("clusters")[0].at("stats").contains("repetitiveness"));

    auto show = test::run_slmctl(db + " cluster --show 0");
    CHECK(show.exit_code == 0);
    CHECK(show.out.find("sample calls") != std::string::npos);
    auto showj = test::run_slmctl(db + " cluster --show 0 --json");
    CHECK(showj.exit_code == 0);
    CHECK(nlohmann::json::parse(showj.out).at("samples").size() >= 1);
    auto missing = test::run_slmctl(db + " cluster --show 99");
    CHECK(missing.exit_code == 1);

    CHECK(test::run_slmctl(db + " cluster --k lots").exit_code == 2);
    CHECK(test::run_slmctl(db + " cluster --embedder model:/x.gguf").exit_code == 1);
    test::temp_dir t;
    auto none = test::run_slmctl("--db '" + (t / "none.db") + "' cluster");
    CHECK(none.exit_code == 1);
    CHECK(none.err.find("collect") != std::string::npos);
}

// ---- acceptance: sample_logs and the shared real pairs, through the CLI ------------------------

namespace {

/// NMI/ARI of a --members file against sample_logs/labels.jsonl (response id, or "file:line" for
/// the fine-tuning-form lines, which have none).
struct scored {
    size_t n = 0;
    double nmi = 0, ari = 0;
};

scored score_members(const std::string& db_path, const std::string& members, const std::string& labels_path) {
    std::map<std::string, std::string> truth;
    {
        std::ifstream f(labels_path);
        std::string line;
        while (std::getline(f, line)) {
            auto j = nlohmann::json::parse(line);
            truth[j.at("response_id").get<std::string>()] = j.at("task_type").get<std::string>();
        }
    }
    std::map<int64_t, std::string> file_line;
    {
        auto d = store::db::open(db_path, store::open_mode::read_only);
        auto s = d.prepare("SELECT id, source_file, source_line FROM calls");
        while (s.step())
            file_line[s.get_int(0)] =
                std::filesystem::path(s.get_text(1)).filename().string() + ":" + std::to_string(s.get_int(2));
    }
    std::map<std::string, int> tid;
    std::vector<int> t, p;
    std::ifstream f(members);
    std::string line;
    while (std::getline(f, line)) {
        auto j = nlohmann::json::parse(line);
        std::string key = j.at("response_id").is_string() ? j.at("response_id").get<std::string>()
                                                          : file_line[j.at("call_id").get<int64_t>()];
        auto it = truth.find(key);
        if (it == truth.end()) continue;
        t.push_back(tid.try_emplace(it->second, static_cast<int>(tid.size())).first->second);
        p.push_back(j.at("cluster").get<int>());
    }
    return {t.size(), nmi(t, p), ari(t, p)};
}

}  // namespace

TEST_CASE("acceptance: sample_logs with --k auto, NMI >= 0.9; with the system prompt it drops") {
    const std::string logs = test::source_dir("sample_logs");
    REQUIRE_MESSAGE(std::filesystem::exists(logs + "/labels.jsonl"), "sample_logs/labels.jsonl is missing");
    test::temp_dir t;
    std::string db = "--db '" + (t / "s.db") + "'";
    std::string files;
    for (const char* f : {"software_company.jsonl", "workflow_operator.jsonl", "gui_controller.jsonl",
                          "legacy_functions.jsonl", "finetune_form.jsonl"})
        files += " '" + logs + "/" + f + "'";
    auto col = test::run_slmctl(db + " collect" + files);
    INFO(col.err);
    REQUIRE(col.exit_code == 0);

    auto r = test::run_slmctl(db + " cluster --k auto --members '" + (t / "m.jsonl") + "' --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    auto s = score_members(t / "s.db", t / "m.jsonl", logs + "/labels.jsonl");
    MESSAGE("sample_logs, tfidf, --k auto: k=", j.at("summary").at("k"), "  scored ", s.n, " calls  NMI ", s.nmi,
            "  ARI ", s.ari);
    CHECK(s.n >= 4000);
    CHECK(s.nmi >= 0.9);

    auto w = test::run_slmctl(db + " cluster --k auto --include-system --members '" + (t / "ms.jsonl") + "'");
    REQUIRE(w.exit_code == 0);
    auto ws = score_members(t / "s.db", t / "ms.jsonl", logs + "/labels.jsonl");
    MESSAGE("with the system prompt embedded: NMI ", ws.nmi, "  ARI ", ws.ari);
    CHECK(ws.nmi < s.nmi);
}

TEST_CASE("acceptance: the shared real pydantic-ai pairs give readable labels and sensible sizes") {
    const std::string pairs = test::shared_data("logs/pydantic-ai-chat-completions.jsonl");
    REQUIRE_MESSAGE(std::filesystem::exists(pairs), pairs, " is missing (../shared/data beside the checkout)");
    test::temp_dir t;
    std::string db = "--db '" + (t / "p.db") + "'";
    auto col = test::run_slmctl(db + " collect '" + pairs + "'");
    INFO(col.err);
    REQUIRE(col.exit_code == 0);
    auto r = test::run_slmctl(db + " cluster --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    const auto& cl = j.at("clusters");
    const int64_t calls = j.at("summary").at("calls");
    std::set<std::string> labels;
    int64_t total = 0, largest = 0, noise = 0;
    std::string table;
    for (const auto& c : cl) {
        std::string label = c.at("label");
        int64_t size = c.at("size");
        total += size;
        table += fmt::format("\n  {:>3} {:>4}  {}", c.at("id").get<int>(), size, label);
        if (c.at("id") == -1) {
            noise = size;
            continue;
        }
        labels.insert(label);
        largest = std::max(largest, size);
        CHECK(label.size() >= 3);
        CHECK(std::any_of(label.begin(), label.end(), [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)); }));
        CHECK(c.at("stats").at("top_terms").size() >= 2);
    }
    MESSAGE(calls, " real calls in ", labels.size(), " clusters:", table);
    CHECK(total == calls);
    CHECK(labels.size() >= 4);
    CHECK(labels.size() == cl.size() - (noise > 0 ? 1 : 0));  // distinct
    CHECK(largest <= calls / 2);
    CHECK(noise <= calls / 10);
}

TEST_CASE("--embedder minilm: the real pairs cluster with all-MiniLM-L6-v2, and the run can assign") {
    const std::string pairs = test::shared_data("logs/pydantic-ai-chat-completions.jsonl");
    REQUIRE_MESSAGE(std::filesystem::exists(slm::model::default_minilm_dir() + "/model.safetensors"),
                    "all-MiniLM-L6-v2 not found: run scripts/fetch-models.sh");
    test::temp_dir t;
    std::string db = "--db '" + (t / "m.db") + "' --threads 1";
    REQUIRE(test::run_slmctl(db + " collect '" + pairs + "'").exit_code == 0);
    auto r = test::run_slmctl(db + " cluster --embedder minilm --json");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("clusters").size() >= 4);
    // the stored run re-loads its embedder and puts every training call back in its cluster
    auto d = store::db::open(t / "m.db");
    const int64_t run_id = latest_run(d);
    auto a = assigner::load(d, run_id);
    auto members = load_members(d, run_id);
    REQUIRE(members.size() >= 100);
    std::vector<call_text> texts;
    auto q = d.prepare("SELECT task_text, coalesce(workload_id, '') FROM calls WHERE id = ?");
    for (auto& m : members) {
        q.bind(1, m.call_id);
        REQUIRE(q.step());
        texts.push_back({q.get_text(0), q.get_text(1), ""});
        q.reset();
    }
    auto got = a.assign(texts);
    REQUIRE(got.size() == members.size());
    size_t same = 0;
    for (size_t i = 0; i < got.size(); ++i) same += got[i].cluster == members[i].cluster;
    MESSAGE("minilm: ", j.at("clusters").size(), " clusters; assign() agrees on ", same, "/", got.size());
    CHECK(same >= got.size() * 98 / 100);  // bf16 batches may differ by a rounding at a boundary
}

TEST_CASE("--embedder model:PATH: mean-pooled hidden states of a decoder cluster the real pairs") {
    const std::string pairs = test::shared_data("logs/pydantic-ai-chat-completions.jsonl");
    const std::string smol = slm::models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    REQUIRE_MESSAGE(std::filesystem::exists(smol), "SmolLM2 not found: run scripts/fetch-models.sh");
    test::temp_dir t;
    std::string db = "--db '" + (t / "d.db") + "' --threads 1";
    REQUIRE(test::run_slmctl(db + " collect '" + pairs + "'").exit_code == 0);
    auto r = test::run_slmctl(db + " cluster --json --embedder 'model:" + smol + "'");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto j = nlohmann::json::parse(r.out);
    CHECK(j.at("clusters").size() >= 3);
    auto d = store::db::open(t / "d.db");
    auto a = assigner::load(d, latest_run(d));  // reloads the model by its stored path
    CHECK(a.k() >= 2);
}
