// The zero-shot probe: a local checkpoint answers a few of each cluster's val-split calls here,
// scored by eval's metrics, so select ranks on measured quality and tokens/s, not only on cards.
#include <algorithm>
#include <chrono>
#include <set>
#include <unordered_map>

#include "common/common.h"
#include "eval/eval.h"
#include "model/model.h"
#include "select/probe.h"

namespace slm::finetune {
// finetune/finetune.h owns this (declared there, defined in finetune/finetune.cpp). That header pulls
// in model/llama.h and with it torch, which select/ never includes: the one function is declared
// here with the same signature; a mismatch fails at link time.
std::vector<store::split_row> ensure_split(store::db& d, int64_t cluster_run, int64_t seed);
}  // namespace slm::finetune

namespace slm::select {

namespace {

constexpr int64_t k_split_seed = 0;  // finetune's and eval's default --split-seed

// `n` of `ids` spread evenly (all of them when there are fewer).
std::vector<int64_t> spread(const std::vector<int64_t>& ids, int n) {
    if (static_cast<int>(ids.size()) <= n) return ids;
    std::vector<int64_t> out;
    for (int i = 0; i < n; ++i) out.push_back(ids[static_cast<size_t>(i) * ids.size() / static_cast<size_t>(n)]);
    return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

std::vector<probe_set> probe_sets(store::db& d, int64_t cluster_run, const std::vector<store::cluster_row>& clusters,
                                  int n) {
    const auto split = finetune::ensure_split(d, cluster_run, k_split_seed);
    std::unordered_map<int64_t, std::string> which;
    for (const auto& r : split) which[r.call_id] = r.split;
    std::vector<probe_set> out;
    for (const auto& c : clusters) {
        probe_set s;
        s.cluster_id = c.id;
        s.idx = c.idx;
        auto calls = store::calls_of_cluster(d, c.id);  // by call id
        std::vector<int64_t> val, train;
        for (const auto& call : calls) {
            auto it = which.find(call.id);
            if (it == which.end()) continue;
            if (it->second == "val") val.push_back(call.id);
            else if (it->second == "train") train.push_back(call.id);
        }
        std::vector<int64_t> pick;
        if (!val.empty()) {
            pick = spread(val, n);
            s.calls_from = fmt::format("val split of run {} (seed {})", cluster_run, k_split_seed);
        } else if (!train.empty()) {
            pick = spread(train, n);
            s.calls_from = fmt::format("train split of run {} (seed {}): the cluster has no val calls", cluster_run,
                                       k_split_seed);
        } else {
            s.calls_from = fmt::format("none: the cluster has no val or train calls in run {} (seed {})", cluster_run,
                                       k_split_seed);
        }
        const std::set<int64_t> chosen(pick.begin(), pick.end());
        for (auto& call : calls)
            if (chosen.count(call.id)) s.calls.push_back(std::move(call));
        out.push_back(std::move(s));
    }
    return out;
}

model_probe probe_model(const std::string& path, const std::vector<probe_set>& sets, const probe_params& p) {
    model_probe mp;
    mp.results.resize(sets.size());
    for (size_t i = 0; i < sets.size(); ++i) mp.results[i].calls_from = sets[i].calls_from;
    auto fail_all = [&](const std::string& why) {
        mp.error = why;
        for (auto& r : mp.results) r.error = why;
    };
    const auto t_load = std::chrono::steady_clock::now();
    std::unique_ptr<model::language_model> lm;
    try {
        model::load_options lo;
        lo.dtype = p.dtype;
        lo.device = p.device;
        lm = model::load_model(path, lo);
    } catch (const internal_error&) {
        throw;  // a bug of ours, not a property of the model
    } catch (const std::exception& e) {
        fail_all(fmt::format("cannot load {}: {}", path, e.what()));
        return mp;
    }
    mp.load_s = seconds_since(t_load);
    mp.name = lm->info().name;
    mp.architecture = lm->info().architecture;
    mp.params = lm->info().n_params;
    mp.context_length = lm->info().context_length;
    log_verbose("probe: loaded {} ({} params, {}) in {:.1f} s", path, mp.params, mp.architecture, mp.load_s);

    eval::replay_options ro;
    ro.max_new_tokens = p.max_new_tokens;
    ro.max_prompt_tokens = p.max_prompt_tokens;
    int64_t total = 0;
    for (const auto& s : sets) total += static_cast<int64_t>(s.calls.size());
    const std::string label = p.label.empty() ? path : p.label;
    progress bar("probe " + label, static_cast<uint64_t>(total), "calls");
    int64_t before = 0;
    for (size_t i = 0; i < sets.size(); ++i) {
        const auto& s = sets[i];
        auto& r = mp.results[i];
        if (s.calls.empty()) continue;
        std::vector<eval::replay_item> items;
        for (const auto& c : s.calls) items.push_back({&c, {}});
        const auto t0 = std::chrono::steady_clock::now();
        std::vector<eval::replay_result> rs;
        try {
            rs = eval::replay(*lm, items, ro, [&](int64_t done, int64_t) { bar.set(static_cast<uint64_t>(before + done)); });
        } catch (const internal_error&) {
            throw;
        } catch (const std::exception& e) {
            // the model loaded but cannot answer these calls (no chat template, ...): same for every set
            fail_all(fmt::format("{} cannot answer the calls: {}", label, e.what()));
            return mp;
        }
        before += static_cast<int64_t>(items.size());
        r.seconds = seconds_since(t0);
        r.calls = static_cast<int>(rs.size());
        double score_sum = 0, tps_sum = 0;
        int n = 0;
        std::vector<std::string> metrics, skip_reasons;
        for (const auto& x : rs) {
            if (x.skipped) {
                ++r.skipped;
                skip_reasons.push_back(x.skip_reason);
                continue;
            }
            ++n;
            score_sum += x.s.score;
            tps_sum += x.tokens_per_s;
            if (x.s.parsed) ++r.parsed;
            const std::string m = eval::main_metric(x.s.kind);
            if (std::find(metrics.begin(), metrics.end(), m) == metrics.end()) metrics.push_back(m);
        }
        r.calls -= r.skipped;
        if (n == 0) {
            r.error = fmt::format("all {} probe calls were skipped ({})", rs.size(), skip_reasons.front());
            continue;
        }
        r.quality = score_sum / n;
        r.tokens_per_s = tps_sum / n;
        r.metric = fmt::format("{}", fmt::join(metrics, " / "));
        log_verbose("probe: {} on cluster {}: quality {:.3f} ({}) over {} calls, {:.1f} tok/s, {:.1f} s", label, s.idx,
                    r.quality, r.metric, r.calls, r.tokens_per_s, r.seconds);
    }
    bar.finish();
    return mp;
}

}  // namespace slm::select
