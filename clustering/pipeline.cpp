// The clustering run over the store: load task texts, embed, pick k, k-means, consolidate,
// describe each cluster from a sample, then write runs/clusters/cluster_members/cluster_models.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <unordered_map>

#include "clustering/clustering.h"
#include "clustering/sampling.h"
#include "common/common.h"
#include "common/tensor-plugin.h"
#include "common/timing.h"
#include "store/stages.h"

namespace slm::clustering {

namespace {

using clock_type = std::chrono::steady_clock;


/// The calls to cluster, their task texts packed in one arena (1M calls: no per-call allocation).
struct corpus {
    std::vector<int64_t> call_id;
    std::vector<std::string> response_id, workload_id;
    std::string arena;
    std::vector<size_t> offset;  ///< n + 1 offsets into arena
    size_t size() const { return call_id.size(); }
    std::string_view doc(size_t i) const { return std::string_view(arena).substr(offset[i], offset[i + 1] - offset[i]); }
};

/// Cuts at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut(std::string_view s, size_t max) {
    if (s.size() <= max) return s;
    size_t e = max;
    while (e > 0 && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) --e;
    return s.substr(0, e);
}

corpus load_corpus(store::db& d, const cluster_params& p) {
    corpus c;
    c.offset.push_back(0);
    const size_t max = static_cast<size_t>(std::max(1, p.text.max_chars));
    store::call_filter f;
    f.workload = p.workload;
    f.system_prompt = p.text.include_system;
    store::for_each_call_text(d, f, [&](const store::call_text_view& v) {
        c.call_id.push_back(v.id);
        c.response_id.emplace_back(v.response_id);
        c.workload_id.emplace_back(v.workload_id);
        if (p.text.include_system) {
            c.arena += cut(v.system_prompt, max);
            c.arena += '\n';
        }
        c.arena += cut(v.task_text, max);
        c.offset.push_back(c.arena.size());
    });
    return c;
}

/// task_text without its "tools: ..." line.
std::string without_tools_line(const std::string& t) {
    size_t b = t.rfind("\ntools: ");
    if (b == std::string::npos) {
        if (t.rfind("tools: ", 0) != 0) return t;
        size_t e = t.find('\n');
        return e == std::string::npos ? std::string() : t.substr(e + 1);
    }
    size_t e = t.find('\n', b + 1);
    return t.substr(0, b) + (e == std::string::npos ? std::string() : t.substr(e));
}

int parse_k(const std::string& k) {
    if (k == "auto") return 0;
    int v = 0;
    auto [ptr, ec] = std::from_chars(k.data(), k.data() + k.size(), v);
    if (ec != std::errc() || ptr != k.data() + k.size() || v < 1)
        throw usage_error(fmt::format("--k must be `auto` or a positive number, got '{}'", k), "e.g. --k auto or --k 12");
    return v;
}

void validate(const cluster_params& p) {
    parse_k(p.k);
    if (p.k_min < 1 || p.k_max < p.k_min)
        throw usage_error(fmt::format("--k-min {} / --k-max {} is not a range", p.k_min, p.k_max),
                          "need 1 <= k-min <= k-max");
    if (p.cells < 0) throw usage_error(fmt::format("cells {} must be >= 0", p.cells));
    if (!(p.noise_similarity >= -1 && p.noise_similarity < 1))
        throw usage_error(fmt::format("noise similarity {} must be in [-1, 1)", p.noise_similarity));
}

}  // namespace

std::string document(const call_text& c, const text_params& p) {
    const size_t max = static_cast<size_t>(std::max(1, p.max_chars));
    std::string doc;
    if (p.include_system) {
        doc += cut(c.system_prompt, max);
        doc += '\n';
    }
    doc += cut(c.task_text, max);
    return doc;
}

nlohmann::json to_json(const cluster_params& p) {
    return {{"k", p.k},
            {"k_min", p.k_min},
            {"k_max", p.k_max},
            {"embedder", p.embedder},
            {"workload", p.workload},
            {"seed", p.seed},
            {"by_workload", p.by_workload},
            {"auto_sample", p.auto_sample},
            {"silhouette_tolerance", p.silhouette_tolerance},
            {"cells", p.cells},
            {"min_cluster_size", p.min_cluster_size},
            {"noise_similarity", p.noise_similarity},
            {"stats_sample", p.stats_sample},
            {"repetition_sample", p.repetition_sample},
            {"text", {{"include_system", p.text.include_system}, {"max_chars", p.text.max_chars}}},
            {"kmeans",
             {{"niter", p.kmeans.niter},
              {"nredo", p.kmeans.nredo},
              {"max_points_per_centroid", p.kmeans.max_points_per_centroid}}}};
}

run_result run(store::db& d, const cluster_params& p_in) {
    cluster_params p = p_in;
    validate(p);
    const auto t_start = clock_type::now();
    nlohmann::json timings = nlohmann::json::object();

    // the device and an embedder named on the command line are checked before any work
    if (p.device != "cpu") tensor_plugin::fn<void(const char*)>("slm_plugin_check_device")(p.device.c_str());
    std::unique_ptr<embedder> emb;
    if (p.embedder != "tfidf") emb = make_pretrained_embedder(p.embedder, p.device);

    auto t = clock_type::now();
    corpus c = load_corpus(d, p);
    const size_t n = c.size();
    timings["load_s"] = seconds_since(t);
    if (n == 0) {
        if (p.workload.empty())
            throw user_error(fmt::format("no calls to cluster in {}", d.path()), "run `slmctl collect PATH` first");
        throw user_error(fmt::format("no calls of workload '{}' in {}", p.workload, d.path()),
                         "check the name: `slmctl cluster` without --workload clusters every call");
    }
    log_verbose("clustering {} calls{}", n, p.workload.empty() ? "" : fmt::format(" of workload {}", p.workload));
    if (p.min_cluster_size <= 0) p.min_cluster_size = std::max<int>(5, static_cast<int>(std::ceil(0.002 * n)));

    nlohmann::json params = to_json(p);
    // SIGINT/SIGTERM mark the run 'interrupted' and exit 130/143 (k-means cannot stop midway)
    store::run_scope scope(d, "cluster", params.dump(), store::on_signal::exit);
    const int64_t run_id = scope.id();
    scope.set_device(nlohmann::json({{"device", p.device}, {"kmeans", p.device == "cpu" ? "faiss" : "libtorch"}}).dump());
    progress stages("cluster", 4, "stages");  // embed, cluster, describe, store
    return scope.guard([&]() -> run_result {
        // 1. embed
        t = clock_type::now();
        std::vector<std::string_view> docs(n);
        for (size_t i = 0; i < n; ++i) docs[i] = c.doc(i);
        std::vector<float> x;
        if (!emb) {
            emb = fit_tfidf(docs, p.tfidf, p.seed, &x);
        } else {
            x.assign(n * emb->dim(), 0.f);
            emb->embed(docs, x.data());
        }
        const int dim = emb->dim();
        params["embedder_params"] = emb->params();
        timings["embed_s"] = seconds_since(t);
        log_verbose("embedded {} calls into {} dims with {} in {:.2f} s", n, dim, emb->name(), timings["embed_s"].get<double>());

        stages.add();
        // 2. cells, merged into k clusters (k chosen by silhouette for --k auto)
        t = clock_type::now();
        const int k_fixed = parse_k(p.k);
        k_choice scan;
        std::vector<std::string> group_names;  // dense index -> workload_id
        std::vector<int> group(n, 0);
        if (p.by_workload) {
            std::unordered_map<std::string_view, int> ids;
            for (size_t i = 0; i < n; ++i) {
                if (c.workload_id[i].empty()) {  // no node recorded: may join any node's cluster
                    group[i] = -1;
                    continue;
                }
                auto [it, fresh] = ids.try_emplace(c.workload_id[i], static_cast<int>(group_names.size()));
                if (fresh) group_names.push_back(c.workload_id[i]);
                group[i] = it->second;
            }
        }
        if (group_names.empty()) group_names.push_back("");  // one group: cells serve any call
        partition part = cluster_vectors(x.data(), n, dim, group, k_fixed, p, &scan);
        if (k_fixed == 0) {
            nlohmann::json sil = nlohmann::json::array();
            for (auto& [kk, s] : scan.silhouettes) sil.push_back({kk, std::round(s * 10000) / 10000});
            params["k_scan"] = {{"criterion", "max mean cosine silhouette on a sample, over the merge levels"},
                                {"chosen", scan.k},
                                {"silhouettes", sil}};
            log_verbose("--k auto chose k={} by silhouette", scan.k);
        }
        params["k_chosen"] = part.k;
        params["cells"] = part.cells();
        timings["cluster_s"] = seconds_since(t);
        const int kk = part.k;

        stages.add();
        // each cluster's centroid: the mean direction of its calls (shown, and stored for reference)
        std::vector<float> centroids(static_cast<size_t>(kk) * dim, 0.f);
        {
            std::vector<double> acc(centroids.size(), 0.0);
            for (size_t i = 0; i < n; ++i)
                if (part.labels[i] >= 0)
                    for (int t = 0; t < dim; ++t) acc[static_cast<size_t>(part.labels[i]) * dim + t] += x[i * dim + t];
            for (size_t j = 0; j < acc.size(); ++j) centroids[j] = static_cast<float>(acc[j]);
            for (int ci = 0; ci < kk; ++ci) detail::normalise(centroids.data() + static_cast<size_t>(ci) * dim, dim);
        }

        // 4. describe each cluster from a sample of its calls
        t = clock_type::now();
        std::vector<std::vector<size_t>> members(kk + 1);  // last: noise
        for (size_t i = 0; i < n; ++i) members[part.labels[i] >= 0 ? part.labels[i] : kk].push_back(i);
        std::vector<std::vector<call_sample>> samples(kk + 1);
        {
            std::mt19937_64 rng(p.seed ^ 0x51ed270b27a9f1c5ULL);
            for (int ci = 0; ci <= kk; ++ci) {
                auto idx = members[ci];
                size_t m = std::min(idx.size(), static_cast<size_t>(std::max(1, p.stats_sample)));
                for (size_t i = 0; i < m; ++i) std::swap(idx[i], idx[i + rng() % (idx.size() - i)]);
                idx.resize(m);
                std::sort(idx.begin(), idx.end());
                std::vector<int64_t> ids;
                for (size_t i : idx) ids.push_back(c.call_id[i]);
                auto briefs = store::get_call_briefs(d, ids);
                for (size_t j = 0; j < idx.size(); ++j) {
                    call_sample cs;
                    cs.response_text = std::move(briefs[j].response_text);
                    cs.response_tool_calls = std::move(briefs[j].response_tool_calls);
                    cs.prompt_tokens = briefs[j].prompt_tokens;
                    cs.completion_tokens = briefs[j].completion_tokens;
                    cs.task_text = std::move(briefs[j].task_text);
                    cs.workload_id = c.workload_id[idx[j]];
                    samples[ci].push_back(std::move(cs));
                }
            }
        }
        std::vector<const std::vector<call_sample>*> all;
        for (auto& s : samples) all.push_back(&s);
        auto ridf = response_idf(all);
        // labels from what the calls ask (the user turn, the response shape), not from the list of
        // tools offered: that list is the same for every call of a node
        std::vector<std::vector<std::string>> label_text(kk);
        std::vector<std::vector<std::string_view>> label_docs(kk);
        for (int ci = 0; ci < kk; ++ci) {
            for (auto& cs : samples[ci]) label_text[ci].push_back(without_tools_line(cs.task_text));
            for (auto& t : label_text[ci]) label_docs[ci].push_back(t);
        }
        auto terms = c_tfidf_terms(label_docs, 8);
        auto labels = make_labels(terms);

        run_result res;
        res.run_id = run_id;
        res.k = kk;
        res.calls = static_cast<int64_t>(n);
        res.noise = static_cast<int64_t>(members[kk].size());
        res.embedder = emb->name();
        for (int ci = 0; ci <= kk; ++ci) {
            if (ci == kk && members[kk].empty()) break;
            cluster_stats st = describe(samples[ci], ridf, p.repetition_sample, p.seed + ci);
            st.size = static_cast<int64_t>(members[ci].size());
            st.share = static_cast<double>(st.size) / static_cast<double>(n);
            cluster_info info;
            info.idx = ci == kk ? -1 : ci;
            info.size = st.size;
            info.share = st.share;
            if (ci < kk) {
                st.top_terms = terms[ci];
                info.label = labels[ci];
                auto su = score_suitability(st);
                info.suitability = su.score;
                info.reasons = su.reasons;
            } else {
                info.label = "(noise)";
                info.suitability = std::nan("");
                info.reasons = nlohmann::json::array(
                    {{{"factor", "noise"}, {"effect", "-"}, {"weight", 1}, {"score", 0},
                      {"evidence", fmt::format("calls below cosine {} to every cluster", p.noise_similarity)}}});
            }
            info.stats = to_json(st);
            res.clusters.push_back(std::move(info));
        }
        timings["describe_s"] = seconds_since(t);

        stages.add();
        // 5. store
        t = clock_type::now();
        {
            store::txn tx(d);
            std::vector<int64_t> row_of(kk + 1, 0);
            for (auto& info : res.clusters) {
                store::cluster_insert ci;
                ci.idx = info.idx;
                ci.label = info.label;
                ci.size = info.size;
                ci.share = info.share;
                if (!std::isnan(info.suitability)) ci.suitability = info.suitability;
                const std::string stats = info.stats.dump(), reasons = info.reasons.dump();
                ci.stats = stats;
                ci.reasons = reasons;
                if (info.idx >= 0) {
                    ci.centroid = centroids.data() + static_cast<size_t>(info.idx) * dim;
                    ci.dim = dim;
                }
                info.id = store::insert_cluster(d, run_id, ci);
                row_of[info.idx >= 0 ? info.idx : kk] = info.id;
            }
            std::vector<store::member_insert> mem(n);
            for (size_t i = 0; i < n; ++i) {
                int l = part.labels[i];
                mem[i] = {c.call_id[i], row_of[l >= 0 ? l : kk], 1.0 - static_cast<double>(part.similarity[i])};
            }
            store::insert_members(d, run_id, mem);
            store::cluster_model model;
            model.embedder = emb->name();
            model.dim = dim;
            model.params = emb->params().dump();
            model.blob = emb->save();
            model.cells = part.centroids;
            model.cell_owner = nlohmann::json(part.owner).dump();
            nlohmann::json cell_workload = nlohmann::json::array();
            for (int g : part.cell_group) cell_workload.push_back(group_names[g]);
            model.cell_workload = cell_workload.dump();
            store::insert_cluster_model(d, run_id, model);
            timings["store_s"] = seconds_since(t);
            timings["total_s"] = seconds_since(t_start);
            scope.set_params(params.dump());
            res.summary = {{"calls", n}, {"k", kk}, {"cells", part.cells()}, {"noise", res.noise},
                           {"embedder", emb->name()}, {"dim", dim}, {"timings", timings}};
            scope.finish(res.summary.dump());  // 'ok' commits with the rows, or not at all
            tx.commit();
        }
        res.members.resize(n);
        for (size_t i = 0; i < n; ++i) {
            auto& m = res.members[i];
            m.call_id = c.call_id[i];
            m.response_id = std::move(c.response_id[i]);
            m.workload_id = std::move(c.workload_id[i]);
            m.cluster = part.labels[i];
            m.similarity = part.similarity[i];
        }
        stages.add();
        stages.finish();
        return res;
    });
}

int64_t latest_run(store::db& d) { return store::latest_ok_run(d, "cluster"); }

run_result load_run(store::db& d, int64_t run_id) {
    auto run = store::require_ok_run(d, run_id, "cluster");
    run_result res;
    res.run_id = run_id;
    res.summary = nlohmann::json::parse(run.summary, nullptr, false);
    if (res.summary.is_discarded()) res.summary = nlohmann::json::object();
    res.calls = res.summary.value("calls", int64_t{0});
    res.noise = res.summary.value("noise", int64_t{0});
    res.embedder = res.summary.value("embedder", std::string());
    for (auto& row : store::clusters_of_run(d, run_id)) {
        cluster_info c;
        c.id = row.id;
        c.idx = row.idx;
        c.label = std::move(row.label);
        c.size = row.size;
        c.share = row.share;
        c.suitability = row.suitability ? *row.suitability : std::nan("");
        c.stats = nlohmann::json::parse(row.stats, nullptr, false);
        c.reasons = nlohmann::json::parse(row.reasons, nullptr, false);
        if (c.idx >= 0) ++res.k;
        res.clusters.push_back(std::move(c));
    }
    return res;
}

std::vector<member> load_members(store::db& d, int64_t run_id) {
    std::vector<member> out;
    for (auto& row : store::members_of_run(d, run_id)) {
        member m;
        m.call_id = row.call_id;
        m.response_id = std::move(row.response_id);
        m.workload_id = std::move(row.workload_id);
        m.cluster = row.cluster_idx;
        m.similarity = row.distance ? 1.0 - *row.distance : 0;
        out.push_back(std::move(m));
    }
    return out;
}

std::vector<sample_call> cluster_samples(store::db& d, int64_t run_id, int idx, int n) {
    std::vector<sample_call> out;
    for (auto& row : store::nearest_calls(d, run_id, idx, n)) {
        sample_call c;
        c.call_id = row.call_id;
        c.workload_id = std::move(row.workload_id);
        c.task_text = std::move(row.task_text);
        c.response = std::move(row.response);
        c.similarity = row.distance ? 1.0 - *row.distance : 0;
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace slm::clustering
