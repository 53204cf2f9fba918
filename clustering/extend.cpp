// A new cycle of the loop (S6): the calls collected since a clustering run are assigned to its
// clusters with the run's own embedder and cells; when they fit (drift below the thresholds) a new
// run extends the old one and every cluster keeps its identity, so only clusters whose data changed
// need a new adapter.
#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_set>

#include "clustering/clustering.h"
#include "common/common.h"
#include "store/stages.h"

namespace slm::clustering {

nlohmann::json drift_report::to_json() const {
    nlohmann::json per = nlohmann::json::array();
    for (const auto& [idx, n] : new_per_cluster) per.push_back({{"idx", idx}, {"new_calls", n}});
    return {{"run_id", run_id},
            {"old_calls", old_calls},
            {"new_calls", new_calls},
            {"unassigned", unassigned},
            {"unassigned_share", unassigned_share},
            {"growth", growth},
            {"new_per_cluster", per},
            {"recluster", recluster},
            {"reason", reason}};
}

drift_report measure_drift(store::db& d, int64_t run_id, const drift_params& p) {
    auto run = store::require_ok_run(d, run_id, "cluster");
    auto params = nlohmann::json::parse(run.params, nullptr, false);
    if (!params.is_object()) params = nlohmann::json::object();
    drift_report dr;
    dr.run_id = run_id;
    std::unordered_set<int64_t> covered;
    for (const auto& m : store::members_of_run(d, run_id)) covered.insert(m.call_id);
    dr.old_calls = static_cast<int64_t>(covered.size());
    store::call_filter f;
    f.workload = params.value("workload", std::string());
    f.system_prompt = params.contains("text") && params["text"].value("include_system", false);
    std::vector<call_text> texts;
    store::for_each_call_text(d, f, [&](const store::call_text_view& v) {
        if (covered.count(v.id)) return;
        dr.new_ids.push_back(v.id);
        texts.push_back({std::string(v.task_text), std::string(v.workload_id), std::string(v.system_prompt)});
    });
    dr.new_calls = static_cast<int64_t>(dr.new_ids.size());
    if (dr.new_calls == 0) {
        dr.reason = "no new calls";
        return dr;
    }
    auto a = assigner::load(d, run_id);
    dr.assigned = a.assign(texts);
    std::map<int, int64_t> per;
    for (const auto& x : dr.assigned) {
        ++per[x.cluster];
        dr.unassigned += x.cluster < 0;
    }
    dr.new_per_cluster.assign(per.begin(), per.end());
    dr.unassigned_share = static_cast<double>(dr.unassigned) / static_cast<double>(dr.new_calls);
    dr.growth = dr.old_calls ? static_cast<double>(dr.new_calls) / static_cast<double>(dr.old_calls) : INFINITY;
    const double noise = params.value("noise_similarity", -1.0);
    if (dr.unassigned_share > p.max_unassigned_share) {
        dr.recluster = true;
        dr.reason = fmt::format("{} of {} new calls ({:.0f}%) are below cosine {} to every cell of run {} (limit {:.0f}%)",
                                dr.unassigned, dr.new_calls, 100 * dr.unassigned_share, noise, run_id,
                                100 * p.max_unassigned_share);
    } else if (dr.growth > p.max_growth) {
        dr.recluster = true;
        dr.reason = fmt::format("{} new calls are {:.2f}x the {} calls run {} covered (limit {:.2f}x)", dr.new_calls,
                                dr.growth, dr.old_calls, run_id, p.max_growth);
    } else {
        dr.reason = fmt::format("{} new calls fit run {}'s cells ({:.0f}% outside, limit {:.0f}%; growth {:.2f}x, "
                                "limit {:.2f}x): assigned, not re-clustered",
                                dr.new_calls, run_id, 100 * dr.unassigned_share, 100 * p.max_unassigned_share,
                                dr.growth, p.max_growth);
    }
    return dr;
}

run_result extend_run(store::db& d, const drift_report& dr) {
    auto prev = store::require_ok_run(d, dr.run_id, "cluster");
    auto params = nlohmann::json::parse(prev.params, nullptr, false);
    if (!params.is_object()) params = nlohmann::json::object();
    params["extends"] = {{"run_id", dr.run_id}, {"drift", dr.to_json()}};
    auto old_members = store::members_of_run(d, dr.run_id);
    auto old_clusters = store::clusters_of_run(d, dr.run_id);
    auto model = store::get_cluster_model(d, dr.run_id);
    if (!model) throw user_error(fmt::format("clustering run {} has no stored cluster model", dr.run_id));

    std::map<int, int64_t> size;  // idx -> calls in the new run
    for (const auto& m : old_members) ++size[m.cluster_idx];
    for (const auto& a : dr.assigned) ++size[a.cluster];
    const int64_t n = static_cast<int64_t>(old_members.size() + dr.assigned.size());

    store::run_scope scope(d, "cluster", params.dump(), store::on_signal::exit);
    return scope.guard([&]() -> run_result {
        run_result res;
        res.run_id = scope.id();
        res.calls = n;
        res.embedder = model->embedder;
        store::txn tx(d);
        std::map<int, int64_t> row_of;  // idx -> new clusters.id
        auto add_cluster = [&](const store::cluster_row& c) {
            cluster_info info;
            info.idx = c.idx;
            info.label = c.label;
            info.size = size[c.idx];
            info.share = n ? static_cast<double>(info.size) / static_cast<double>(n) : 0;
            info.suitability = c.suitability ? *c.suitability : std::nan("");
            info.stats = nlohmann::json::parse(c.stats, nullptr, false);
            if (!info.stats.is_object()) info.stats = nlohmann::json::object();
            info.stats["size"] = info.size;
            info.stats["share"] = info.share;
            info.stats["described_in_run"] = dr.run_id;  // the stats are the earlier run's sample
            info.reasons = nlohmann::json::parse(c.reasons, nullptr, false);
            const std::string st = info.stats.dump();
            store::cluster_insert ci;
            ci.idx = c.idx;
            ci.label = info.label;
            ci.size = info.size;
            ci.share = info.share;
            ci.suitability = c.suitability;
            ci.stats = st;
            ci.reasons = c.reasons;
            info.id = store::insert_cluster(d, res.run_id, ci);
            row_of[c.idx] = info.id;
            if (c.idx >= 0) ++res.k;
            res.clusters.push_back(std::move(info));
        };
        bool has_noise = false;
        for (const auto& c : old_clusters) {
            if (c.idx < 0) has_noise = true;
            if (c.idx >= 0) add_cluster(c);
        }
        for (const auto& c : old_clusters)
            if (c.idx < 0) add_cluster(c);
        if (!has_noise && size.count(-1)) {
            store::cluster_row noise;
            noise.idx = -1;
            noise.label = "(noise)";
            noise.reasons = nlohmann::json::array({{{"factor", "noise"}, {"effect", "-"}, {"weight", 1}, {"score", 0},
                                                     {"evidence", "new calls below the run's noise threshold"}}})
                                .dump();
            add_cluster(noise);
        }
        std::vector<store::member_insert> mem;
        mem.reserve(n);
        for (const auto& m : old_members) mem.push_back({m.call_id, row_of.at(m.cluster_idx), m.distance.value_or(0)});
        for (size_t i = 0; i < dr.assigned.size(); ++i)
            mem.push_back({dr.new_ids[i], row_of.at(dr.assigned[i].cluster), 1.0 - dr.assigned[i].similarity});
        std::sort(mem.begin(), mem.end(), [](const auto& a, const auto& b) { return a.call_id < b.call_id; });
        store::insert_members(d, res.run_id, mem);
        store::insert_cluster_model(d, res.run_id, *model);
        res.noise = size.count(-1) ? size[-1] : 0;
        auto ps = nlohmann::json::parse(prev.summary, nullptr, false);
        res.summary = {{"calls", n},
                       {"k", res.k},
                       {"cells", ps.is_object() ? ps.value("cells", 0) : 0},
                       {"noise", res.noise},
                       {"embedder", model->embedder},
                       {"dim", model->dim},
                       {"extends", dr.run_id},
                       {"new_calls", dr.new_calls}};
        scope.finish(res.summary.dump());
        tx.commit();
        return res;
    });
}

}  // namespace slm::clustering
