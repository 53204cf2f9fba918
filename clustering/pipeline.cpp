// The clustering run over the store: load task texts, embed, pick k, k-means, consolidate,
// describe each cluster from a sample, then write runs/clusters/cluster_members/cluster_models.
#include <sqlite3.h>

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
#include "store/store.h"

namespace slm::clustering {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t) {
    return std::chrono::duration<double>(clock_type::now() - t).count();
}

/// The calls to cluster, their task texts packed in one arena (1M calls: no per-call allocation).
struct corpus {
    std::vector<int64_t> call_id;
    std::vector<std::string> response_id, workload_id;
    std::string arena;
    std::vector<size_t> offset;  ///< n + 1 offsets into arena
    size_t size() const { return call_id.size(); }
    std::string_view doc(size_t i) const { return std::string_view(arena).substr(offset[i], offset[i + 1] - offset[i]); }
};

std::string_view column_text(sqlite3_stmt* st, int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, col));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(st, col))) : std::string_view();
}

/// Cuts at most `max` bytes without splitting a UTF-8 sequence.
std::string_view cut(std::string_view s, size_t max) {
    if (s.size() <= max) return s;
    size_t e = max;
    while (e > 0 && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) --e;
    return s.substr(0, e);
}

corpus load_corpus(store::db& d, const cluster_params& p) {
    std::string sql =
        "SELECT id, COALESCE(response_id, ''), COALESCE(workload_id, ''), task_text";
    if (p.text.include_system)
        sql += ", COALESCE((SELECT json_extract(value, '$.content') FROM json_each(calls.messages) "
               "WHERE json_extract(value, '$.role') = 'system' LIMIT 1), '')";
    sql += " FROM calls";
    if (!p.workload.empty()) sql += " WHERE workload_id = ?";
    sql += " ORDER BY id";
    auto s = d.prepare(sql);
    if (!p.workload.empty()) s.bind(1, p.workload);
    corpus c;
    c.offset.push_back(0);
    const size_t max = static_cast<size_t>(std::max(1, p.text.max_chars));
    while (s.step()) {
        c.call_id.push_back(s.get_int(0));
        c.response_id.emplace_back(column_text(s.handle(), 1));
        c.workload_id.emplace_back(column_text(s.handle(), 2));
        if (p.text.include_system) {
            c.arena += cut(column_text(s.handle(), 4), max);
            c.arena += '\n';
        }
        c.arena += cut(column_text(s.handle(), 3), max);
        c.offset.push_back(c.arena.size());
    }
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

std::vector<uint8_t> to_blob(const float* v, size_t n) {
    std::vector<uint8_t> b(n * sizeof(float));
    std::memcpy(b.data(), v, b.size());
    return b;
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

    // an embedder named on the command line is checked before any work
    std::unique_ptr<embedder> emb;
    if (p.embedder != "tfidf") emb = make_pretrained_embedder(p.embedder);

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
    const int64_t run_id = store::begin_run(d, "cluster", params.dump());
    progress stages("cluster", 4, "stages");  // embed, cluster, describe, store
    try {
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
            auto s = d.prepare(
                "SELECT COALESCE(response_text, ''), COALESCE(response_tool_calls, ''), prompt_tokens, "
                "completion_tokens, task_text FROM calls WHERE id = ?");
            std::mt19937_64 rng(p.seed ^ 0x51ed270b27a9f1c5ULL);
            for (int ci = 0; ci <= kk; ++ci) {
                auto idx = members[ci];
                size_t m = std::min(idx.size(), static_cast<size_t>(std::max(1, p.stats_sample)));
                for (size_t i = 0; i < m; ++i) std::swap(idx[i], idx[i + rng() % (idx.size() - i)]);
                idx.resize(m);
                std::sort(idx.begin(), idx.end());
                for (size_t i : idx) {
                    s.bind(1, c.call_id[i]);
                    if (!s.step()) throw internal_error(fmt::format("call {} vanished while clustering", c.call_id[i]));
                    call_sample cs;
                    cs.response_text = s.get_text(0);
                    cs.response_tool_calls = s.get_text(1);
                    if (!s.is_null(2)) cs.prompt_tokens = s.get_int(2);
                    if (!s.is_null(3)) cs.completion_tokens = s.get_int(3);
                    cs.task_text = s.get_text(4);
                    cs.workload_id = c.workload_id[i];
                    samples[ci].push_back(std::move(cs));
                    s.reset();
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
            auto ins = d.prepare(
                "INSERT INTO clusters (run_id, idx, label, size, share, suitability, stats, reasons, centroid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
            std::vector<int64_t> row_of(kk + 1, 0);
            for (auto& info : res.clusters) {
                ins.bind_all(run_id, info.idx, info.label, info.size, info.share);
                if (std::isnan(info.suitability)) ins.bind_null(6);
                else ins.bind(6, info.suitability);
                ins.bind(7, info.stats.dump());
                ins.bind(8, info.reasons.dump());
                if (info.idx >= 0) {
                    auto blob = to_blob(centroids.data() + static_cast<size_t>(info.idx) * dim, dim);
                    ins.bind_blob(9, blob.data(), blob.size());
                } else {
                    ins.bind_null(9);
                }
                ins.run();
                info.id = d.last_insert_rowid();
                row_of[info.idx >= 0 ? info.idx : kk] = info.id;
            }
            auto mem = d.prepare("INSERT INTO cluster_members (run_id, call_id, cluster_id, distance) VALUES (?, ?, ?, ?)");
            for (size_t i = 0; i < n; ++i) {
                int l = part.labels[i];
                mem.bind_all(run_id, c.call_id[i], row_of[l >= 0 ? l : kk], 1.0 - static_cast<double>(part.similarity[i]));
                mem.run();
            }
            auto blob = emb->save();
            auto cells = to_blob(part.centroids.data(), part.centroids.size());
            nlohmann::json cell_workload = nlohmann::json::array();
            for (int g : part.cell_group) cell_workload.push_back(group_names[g]);
            auto model = d.prepare(
                "INSERT INTO cluster_models (run_id, embedder, dim, params, blob, cells, cell_owner, cell_workload) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
            model.bind_all(run_id, emb->name(), dim, emb->params().dump());
            model.bind_blob(5, blob.data(), blob.size());
            model.bind_blob(6, cells.data(), cells.size());
            model.bind(7, nlohmann::json(part.owner).dump());
            model.bind(8, cell_workload.dump());
            model.run();
            timings["store_s"] = seconds_since(t);
            timings["total_s"] = seconds_since(t_start);
            auto up = d.prepare("UPDATE runs SET params = ? WHERE id = ?");
            up.bind_all(params.dump(), run_id);
            up.run();
            tx.commit();
        }
        res.summary = {{"calls", n}, {"k", kk}, {"cells", part.cells()}, {"noise", res.noise},
                       {"embedder", emb->name()}, {"dim", dim}, {"timings", timings}};
        store::finish_run(d, run_id, "ok", res.summary.dump());
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
    } catch (const std::exception& e) {
        try {
            store::finish_run(d, run_id, "failed", nlohmann::json{{"error", e.what()}}.dump());
        } catch (...) {
        }
        throw;
    }
}

int64_t latest_run(store::db& d) {
    auto s = d.prepare("SELECT id FROM runs WHERE command = 'cluster' AND status = 'ok' ORDER BY id DESC LIMIT 1");
    return s.step() ? s.get_int(0) : 0;
}

run_result load_run(store::db& d, int64_t run_id) {
    auto r = d.prepare("SELECT command, status, summary FROM runs WHERE id = ?");
    r.bind(1, run_id);
    if (!r.step()) throw user_error(fmt::format("run {} does not exist in {}", run_id, d.path()), "see `slmctl cluster` output for run ids");
    if (r.get_text(0) != "cluster" || r.get_text(1) != "ok")
        throw user_error(fmt::format("run {} is a '{}' run with status '{}', not a finished clustering", run_id,
                                     r.get_text(0), r.get_text(1)),
                         "run `slmctl cluster` first");
    run_result res;
    res.run_id = run_id;
    res.summary = nlohmann::json::parse(r.get_text(2), nullptr, false);
    if (res.summary.is_discarded()) res.summary = nlohmann::json::object();
    res.calls = res.summary.value("calls", int64_t{0});
    res.noise = res.summary.value("noise", int64_t{0});
    res.embedder = res.summary.value("embedder", std::string());
    auto s = d.prepare(
        "SELECT id, idx, label, size, share, suitability, stats, reasons FROM clusters WHERE run_id = ? "
        "ORDER BY idx < 0, idx");
    s.bind(1, run_id);
    while (s.step()) {
        cluster_info c;
        c.id = s.get_int(0);
        c.idx = static_cast<int>(s.get_int(1));
        c.label = s.get_text(2);
        c.size = s.get_int(3);
        c.share = s.get_double(4);
        c.suitability = s.is_null(5) ? std::nan("") : s.get_double(5);
        c.stats = nlohmann::json::parse(s.get_text(6), nullptr, false);
        c.reasons = nlohmann::json::parse(s.get_text(7), nullptr, false);
        if (c.idx >= 0) ++res.k;
        res.clusters.push_back(std::move(c));
    }
    return res;
}

std::vector<member> load_members(store::db& d, int64_t run_id) {
    auto s = d.prepare(
        "SELECT m.call_id, COALESCE(c.response_id, ''), COALESCE(c.workload_id, ''), cl.idx, m.distance "
        "FROM cluster_members m JOIN calls c ON c.id = m.call_id JOIN clusters cl ON cl.id = m.cluster_id "
        "WHERE m.run_id = ? ORDER BY m.call_id");
    s.bind(1, run_id);
    std::vector<member> out;
    while (s.step()) {
        member m;
        m.call_id = s.get_int(0);
        m.response_id = s.get_text(1);
        m.workload_id = s.get_text(2);
        m.cluster = static_cast<int>(s.get_int(3));
        m.similarity = s.is_null(4) ? 0 : 1.0 - s.get_double(4);
        out.push_back(std::move(m));
    }
    return out;
}

std::vector<sample_call> cluster_samples(store::db& d, int64_t run_id, int idx, int n) {
    auto s = d.prepare(
        "SELECT c.id, COALESCE(c.workload_id, ''), c.task_text, "
        "CASE WHEN c.response_tool_calls IS NOT NULL AND c.response_tool_calls NOT IN ('', '[]') "
        "THEN c.response_tool_calls ELSE COALESCE(c.response_text, '') END, m.distance "
        "FROM cluster_members m JOIN clusters cl ON cl.id = m.cluster_id JOIN calls c ON c.id = m.call_id "
        "WHERE m.run_id = ? AND cl.idx = ? ORDER BY m.distance, c.id LIMIT ?");
    s.bind_all(run_id, idx, n);
    std::vector<sample_call> out;
    while (s.step()) {
        sample_call c;
        c.call_id = s.get_int(0);
        c.workload_id = s.get_text(1);
        c.task_text = s.get_text(2);
        c.response = s.get_text(3);
        c.similarity = s.is_null(4) ? 0 : 1.0 - s.get_double(4);
        out.push_back(std::move(c));
    }
    return out;
}

}  // namespace slm::clustering
