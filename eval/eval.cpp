// run_eval(): the eval stage over the store. Clustering run -> its split (finetune's, made once
// per seed) -> each cluster's test calls -> base / icl / customized replays -> per-call scores in
// eval_results -> per-cluster intervals and verdicts -> per-agent replaceable share and cost.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <numeric>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "clustering/clustering.h"
#include "common/common.h"
#include "common/text.h"
#include "common/timing.h"
#include "eval/eval.h"
#include "finetune/finetune.h"
#include "model/adapter.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/response-codec.h"

namespace fs = std::filesystem;

namespace slm::eval {

namespace {

nlohmann::ordered_json iv_json(const interval& iv) { return {{"value", iv.value}, {"lo", iv.lo}, {"hi", iv.hi}}; }

// The agent system a workload belongs to: "metagpt.engineer" -> "metagpt".
std::string agent_of(const std::string& workload) {
    if (workload.empty()) return "(no workload)";
    auto dot = workload.find('.');
    return dot == std::string::npos ? workload : workload.substr(0, dot);
}

// task_text without its last "response: ..." line: that line describes the logged answer, which a
// held-out call must not use to pick its examples.
std::string request_text(const std::string& task_text) {
    auto p = task_text.rfind("response: ");
    if (p != std::string::npos && (p == 0 || task_text[p - 1] == '\n')) return task_text.substr(0, p);
    return task_text;
}

uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

const std::vector<std::string> k_variants = {"base", "icl", "customized"};

variant_summary summarize(const std::string& variant, response_kind kind, const std::vector<replay_result>& rs,
                          const verdict_params& vp, double wall_s, bool judging) {
    variant_summary v;
    v.variant = variant;
    std::vector<double> chrf_v, rouge_v, judge_v;
    int64_t names = 0, json_ok = 0, schema_ok = 0, json_calls = 0;
    double lat = 0, tps = 0;
    for (const auto& r : rs) {
        if (r.skipped) {
            ++v.skipped;
            continue;
        }
        ++v.n;
        if (!r.s.parsed) ++v.unparsed;
        v.scores.push_back(r.s.score);
        lat += r.latency_ms;
        tps += r.tokens_per_s;
        const auto& d = r.s.details;
        if (d.contains("name_ok") && d["name_ok"].get<bool>()) ++names;
        if (d.contains("failure") && d["failure"] != "none") ++v.failures[d["failure"].get<std::string>()];
        if (d.contains("json_ok") && d["json_ok"].get<bool>()) ++json_ok;
        if (r.s.kind == response_kind::json) ++json_calls;
        if (d.value("schema_checked", false)) {
            ++v.schema_checked;
            if (d.value("schema_ok", false)) ++schema_ok;
        }
        if (d.contains("chrf")) chrf_v.push_back(d["chrf"].get<double>());
        if (d.contains("rouge_l")) rouge_v.push_back(d["rouge_l"].get<double>());
        if (r.judge_score) judge_v.push_back(*r.judge_score);
        else if (d.contains("judge")) ++v.judge_failed;
    }
    v.judged = static_cast<int64_t>(judge_v.size());
    {
        std::map<response_kind, std::vector<double>> per;
        for (const auto& r : rs)
            if (!r.skipped) per[r.s.kind].push_back(r.s.score);
        for (const auto& [k, xs] : per) {
            interval iv;
            if (binary_metric(k)) {
                int64_t ok = 0;
                for (double x : xs) ok += x >= 0.5;
                iv = wilson(ok, static_cast<int64_t>(xs.size()));
            } else {
                iv = bootstrap_mean(xs, 1000, 3);
            }
            std::string metric = main_metric(k);
            if (k == response_kind::json) {
                int64_t with_schema = 0;
                for (const auto& r : rs)
                    if (!r.skipped && r.s.kind == k && r.s.details.value("schema_checked", false)) ++with_schema;
                metric = json_metric(with_schema, static_cast<int64_t>(xs.size()));
            }
            nlohmann::ordered_json kj = {{"n", xs.size()}, {"metric", metric}, {"value", iv.value}, {"lo", iv.lo},
                                         {"hi", iv.hi}};
            if (k == response_kind::tool_call) {
                int64_t names = 0;
                for (const auto& r : rs)
                    if (!r.skipped && r.s.kind == k && r.s.details.value("name_ok", false)) ++names;
                kj["name_accuracy"] = iv_json(wilson(names, static_cast<int64_t>(xs.size())));
            }
            v.by_kind[response_kind_name(k)] = kj;
        }
    }
    v.main.kind = kind;
    v.main.metric = kind == response_kind::json ? json_metric(v.schema_checked, json_calls) : main_metric(kind);
    v.main.n = v.n;
    if (v.n > 0) {
        if (binary_metric(kind)) {
            int64_t ok = 0;
            for (double s : v.scores) ok += s >= 0.5;
            v.main.iv = wilson(ok, v.n);
        } else {
            v.main.iv = bootstrap_mean(v.scores, 1000, 0);
        }
        if (kind == response_kind::tool_call) v.name_accuracy = wilson(names, v.n);
        if (kind == response_kind::json) v.json_valid = wilson(json_ok, v.n);
        if (v.schema_checked > 0) v.schema_valid = wilson(schema_ok, v.schema_checked);
        if (!chrf_v.empty()) v.chrf = bootstrap_mean(chrf_v, 1000, 1);
        if (!rouge_v.empty()) v.rouge_l = bootstrap_mean(rouge_v, 1000, 2);
        if (!judge_v.empty()) v.judge = bootstrap_mean(judge_v, 1000, 4);
        // a prose cluster under --judge rests on the judge's scores (of the calls it scored)
        if (judging && kind == response_kind::prose && !judge_v.empty()) {
            v.main.metric = "judge score";
            v.main.judged = true;
            v.main.iv = *v.judge;
            v.main.n = v.judged;
            v.scores = judge_v;
        }
        v.ms_per_call = lat / v.n;
        v.tokens_per_s = tps / v.n;
        v.calls_per_s = wall_s > 0 ? v.n / wall_s : 0;
        v.v = decide(v.main, vp);
    } else {
        v.main.iv = {0, 0, 1};
        v.v.replaceable = false;
        v.v.reason = rs.empty() ? "no test calls" : fmt::format("all {} test calls skipped", rs.size());
    }
    return v;
}

// --judge: the judge grades each prose answer of a variant against the logged one; the score (or
// why there is none, with the reply) goes into the answer's details.
void judge_answers(const judge_client& judge, const std::vector<replay_item>& items, std::vector<replay_result>& rs,
                   const std::string& label) {
    int64_t todo = 0;
    for (const auto& r : rs) todo += !r.skipped && r.s.kind == response_kind::prose;
    if (todo == 0) return;
    progress bar(label, static_cast<uint64_t>(todo), "answers");
    int64_t done = 0, failed = 0, unanswered_in_a_row = 0;
    std::string first_error;
    for (size_t i = 0; i < rs.size(); ++i) {
        auto& r = rs[i];
        if (r.skipped || r.s.kind != response_kind::prose) continue;
        if (store::stop_requested()) break;
        if (unanswered_in_a_row >= 3) {  // the server went away: do not wait out a timeout per answer
            ++failed;
            r.s.details["judge"] = {{"error", "not asked: the judge did not answer 3 times in a row"}};
            continue;
        }
        const auto& c = *items[i].call;
        const auto j = judge.judge(request_text(c.task_text), c.response_text.value_or(""), r.output);
        unanswered_in_a_row = j.answered ? 0 : unanswered_in_a_row + 1;
        nlohmann::ordered_json jd;
        if (j.score) {
            jd["score"] = j.score->normalized;
            jd["raw"] = j.score->raw;
            jd["scale"] = j.score->scale;
            r.judge_score = j.score->normalized;
        } else {
            ++failed;
            jd["error"] = j.error;
            if (first_error.empty()) first_error = j.error;
        }
        if (j.answered) jd["reply"] = std::string(utf8_cut(j.reply, 600));
        jd["seconds"] = j.seconds;
        r.s.details["judge"] = jd;
        bar.set(static_cast<uint64_t>(++done));
    }
    bar.finish();
    if (failed > 0) log_warn("{}: {} of {} answers got no score (first: {})", trim_space(label), failed, done, first_error);
}

// Prices: the logged model's list price when the table knows it (or --llm-model's).
struct pricer {
    const price_table& t;
    const model_price* slm = nullptr;
    std::string override_model;
    const model_price* llm(const std::string& logged) const {
        return t.find(override_model.empty() ? logged : override_model);
    }
};

}  // namespace

nlohmann::json eval_options::to_json() const {
    return {{"cluster_run", cluster_run},
            {"cluster_idx", cluster_idx ? nlohmann::json(*cluster_idx) : nlohmann::json()},
            {"cluster_list", cluster_list},
            {"variants", variants},
            {"base", base},
            {"adapter", adapter},
            {"split_seed", split_seed},
            {"max_calls", max_calls},
            {"min_calls", min_calls},
            {"icl_k", icl_k},
            {"kind", kind},
            {"max_new_tokens", replay.max_new_tokens},
            {"cap_by_reference", replay.cap_by_reference},
            {"max_prompt_tokens", replay.max_prompt_tokens},
            {"batch_size", replay.batch_size},
            {"share_prefixes", replay.prefix.enabled},
            {"min_shared_tokens", replay.prefix.min_tokens},
            {"prefix_cache_mb", replay.prefix.cache_mb},
            {"thresholds",
             {{"tool_call", replay.verdicts.tool_call},
              {"json", replay.verdicts.json},
              {"code", replay.verdicts.code},
              {"prose", replay.verdicts.prose},
              {"empty", replay.verdicts.empty},
              {"judge", replay.verdicts.judge},
              {"min_calls", replay.verdicts.min_calls}}},
            {"judge", judge.url.empty() ? nlohmann::json() : judge.to_json()},
            {"prices", prices_path},
            {"llm_model", llm_model},
            {"device", device},
            {"dtype", dtype}};
}

nlohmann::ordered_json variant_summary::to_json() const {
    nlohmann::ordered_json j = {{"variant", variant},
                                {"n", n},
                                {"skipped", skipped},
                                {"unparsed", unparsed},
                                {"metric", main.metric},
                                {"value", main.iv.value},
                                {"lo", main.iv.lo},
                                {"hi", main.iv.hi},
                                {"replaceable", v.replaceable},
                                {"reason", v.reason}};
    if (name_accuracy) j["name_accuracy"] = iv_json(*name_accuracy);
    if (json_valid) j["json_valid"] = iv_json(*json_valid);
    if (schema_valid) {
        j["schema_valid"] = iv_json(*schema_valid);
        j["schema_valid"]["n"] = schema_checked;
    }
    if (chrf) j["chrf"] = iv_json(*chrf);
    if (rouge_l) j["rouge_l"] = iv_json(*rouge_l);
    if (judge) {
        j["judge"] = iv_json(*judge);
        j["judge"]["n"] = judged;
    }
    if (judged || judge_failed) j["judge_failed"] = judge_failed;
    if (main.judged) j["judged"] = true;
    if (!failures.empty()) j["failures"] = failures;
    if (by_kind.size() > 1) j["by_kind"] = by_kind;
    j["ms_per_call"] = ms_per_call;
    j["calls_per_s"] = calls_per_s;
    j["tokens_per_s"] = tokens_per_s;
    j["tokens"] = tokens.to_json();
    if (adapter_id) j["adapter_id"] = adapter_id;
    if (!adapter_path.empty()) j["adapter"] = adapter_path;
    return j;
}

nlohmann::ordered_json cluster_eval::to_json() const {
    nlohmann::ordered_json j = {{"cluster_id", cluster_id}, {"idx", idx},          {"label", label},
                                {"volume", volume},         {"kind", response_kind_name(kind)},
                                {"test_calls", test_calls}, {"evaluated", evaluated}};
    j["volume_by_agent"] = volume_by_agent;
    if (llm_latency_ms) j["llm_latency_ms"] = *llm_latency_ms;
    j["input_tokens"] = input_tokens;
    j["output_tokens"] = output_tokens;
    auto vs = nlohmann::ordered_json::array();
    for (const auto& v : variants) vs.push_back(v.to_json());
    j["variants"] = vs;
    j["chosen"] = chosen;
    j["replaceable"] = replaceable;
    j["reason"] = reason;
    if (!note.empty()) j["note"] = note;
    if (!loss_curve.is_null()) j["loss_curve"] = loss_curve;
    return j;
}

nlohmann::ordered_json share_row::to_json() const {
    return {{"agent", agent},
            {"calls", calls},
            {"replaceable_calls", replaceable_calls},
            {"share", iv_json(share)},
            {"cost",
             {{"llm_usd", cost.llm_usd},
              {"slm_usd", cost.slm_usd},
              {"saving_usd", cost.saving_usd},
              {"saving_share", cost.saving_share}}},
            {"unpriced_calls", unpriced_calls}};
}

nlohmann::ordered_json eval_report::to_json() const {
    nlohmann::ordered_json j = {{"run_id", run_id}, {"cluster_run", cluster_run}, {"base", base}};
    auto cs = nlohmann::ordered_json::array();
    for (const auto& c : clusters) cs.push_back(c.to_json());
    j["clusters"] = cs;
    auto ss = nlohmann::ordered_json::array();
    for (const auto& s : shares) ss.push_back(s.to_json());
    j["shares"] = ss;
    j["prices"] = prices;
    j["tokens"] = tokens.to_json();
    if (previous_run) {
        j["previous_run"] = *previous_run;
        j["previous"] = previous;
    }
    j["seconds"] = seconds;
    return j;
}

eval_report run_eval(store::db& d, const eval_options& o) {
    store::reap_stale_runs(d);
    // ---- inputs: check everything before any model loads
    for (const auto& v : o.variants)
        if (std::find(k_variants.begin(), k_variants.end(), v) == k_variants.end())
            throw user_error(fmt::format("--variants: '{}' is not one of base, icl, customized", v),
                             "use e.g. --variants base,icl,customized");
    if (o.variants.empty()) throw user_error("--variants is empty", "use e.g. --variants base,customized");
    const auto has = [&](const char* v) { return std::find(o.variants.begin(), o.variants.end(), v) != o.variants.end(); };
    if (has("icl") && (o.icl_k < 1 || o.icl_k > 3))
        throw user_error(fmt::format("--icl-k {} is outside 1..3", o.icl_k), "use --icl-k 1, 2 or 3");
    if (o.replay.max_new_tokens < 1) throw user_error("--max-new-tokens must be at least 1");
    if (!o.kind.empty() && o.kind != "tool_call" && o.kind != "json" && o.kind != "code" && o.kind != "prose" &&
        o.kind != "empty")
        throw user_error(fmt::format("--kind '{}' is not one of tool_call, json, code, prose, empty", o.kind));
    if (!o.adapter.empty() && !o.cluster_idx)
        throw user_error("--adapter needs --cluster: an adapter belongs to one cluster", "add --cluster IDX");
    eval_report rep;
    rep.cluster_run = o.cluster_run;
    if (rep.cluster_run == 0) {
        rep.cluster_run = store::latest_ok_run(d, "cluster");
        if (rep.cluster_run == 0)
            throw user_error(fmt::format("{} holds no finished clustering run", d.path()), "run slmctl cluster first");
    } else {
        store::require_ok_run(d, rep.cluster_run, "cluster");
    }
    auto all_clusters = store::clusters_of_run(d, rep.cluster_run);
    std::vector<store::cluster_row> chosen;
    for (const auto& c : all_clusters)
        if (c.idx >= 0 && (o.cluster_idx ? c.idx == *o.cluster_idx
                                         : o.cluster_list.empty() || std::find(o.cluster_list.begin(), o.cluster_list.end(),
                                                                               c.idx) != o.cluster_list.end()))
            chosen.push_back(c);
    if (o.cluster_idx && chosen.empty()) {
        std::string known;
        for (const auto& c : all_clusters)
            if (c.idx >= 0) known += fmt::format("{}{}", known.empty() ? "" : ", ", c.idx);
        throw user_error(fmt::format("clustering run {} has no cluster {} (it has {})", rep.cluster_run, *o.cluster_idx,
                                     known.empty() ? "none" : known),
                         "pick one from the id column of: slmctl cluster --show");
    }
    price_table prices = o.prices_path.empty() ? default_prices() : load_prices(o.prices_path);
    pricer pr{prices, prices.find(prices.slm), o.llm_model};
    if (!pr.slm)
        throw user_error(fmt::format("the price table has no entry '{}' for the SLM side", prices.slm),
                         "add it to the --prices file or set \"slm\" to one of its entries");
    if (!o.llm_model.empty() && !prices.find(o.llm_model))
        throw user_error(fmt::format("--llm-model {}: no price for it in the table", o.llm_model),
                         "add it to a --prices file (see eval/prices.json for the format)");

    // adapters per cluster; the base model they were trained on
    std::map<int64_t, store::adapter_row> adapters;
    if (has("customized")) {
        for (const auto& c : chosen) {
            if (!o.adapter.empty()) {
                store::adapter_row a;
                a.path = o.adapter;
                for (const auto& r : store::adapters_of_cluster(d, c.id))
                    if (fs::exists(r.path) && fs::equivalent(r.path, o.adapter)) a = r;
                if (!fs::exists(o.adapter))
                    throw user_error(fmt::format("--adapter {} does not exist", o.adapter), "pass a PEFT dir or a LoRA GGUF");
                adapters[c.id] = a;
            } else {
                auto rows = store::adapters_of_cluster(d, c.id);
                if (!rows.empty()) adapters[c.id] = rows.front();
            }
        }
    }
    rep.base = o.base;
    if (rep.base.empty()) {
        std::set<std::string> bases;
        for (const auto& [id, a] : adapters)
            if (!a.base_model.empty()) bases.insert(a.base_model);
        rep.base = bases.size() == 1 ? *bases.begin() : model::default_smollm2_path();
        if (bases.size() > 1)
            log_warn("the adapters were trained on {} different base models; evaluating on {} (--base picks one)",
                     bases.size(), rep.base);
    }

    // the judge answers before any model loads: a wrong URL is an error now, not after the replays
    std::optional<judge_client> judge;
    if (!o.judge.url.empty()) {
        judge.emplace(o.judge);
        judge->check();
    }

    auto params = o.to_json();
    params["cluster_run"] = rep.cluster_run;
    params["base"] = rep.base;
    store::run_scope run(d, "eval", params.dump(), store::on_signal::stop);
    return run.guard([&] {
        rep.run_id = run.id();
        const auto t0 = std::chrono::steady_clock::now();
        auto split = finetune::ensure_split(d, rep.cluster_run, o.split_seed);
        std::unordered_map<int64_t, std::string> which;
        for (const auto& r : split) which[r.call_id] = r.split;

        model::load_options lo;
        lo.dtype = o.dtype;
        lo.device = o.device;
        auto lm = model::load_model(rep.base, lo);
        if (!lm->has_chat_template())
            throw user_error(fmt::format("{} has no chat template: eval renders the logged calls as chats", rep.base),
                             "use an instruct model (--base)");
        run.set_device(nlohmann::json({{"device", lm->info().device},
                                       {"dtype", lm->info().dtype},
                                       {"int4_decode", lm->info().int4_decode},
                                       {"dtype_choice", lm->info().dtype_choice}})
                           .dump());
        const std::string base_sha = finetune::file_sha256(rep.base);
        // one LRU of prompt-prefix KV caches for the whole run: clusters of one agent node share
        // its system prompt and tools (an adapter loaded or removed empties it)
        model::prefix_cache prefixes(o.replay.prefix);
        const std::string base_abs = fs::absolute(rep.base).string();

        std::unique_ptr<clustering::embedder> emb;
        if (has("icl")) {
            auto cm = store::get_cluster_model(d, rep.cluster_run);
            if (!cm)
                throw user_error(fmt::format("clustering run {} stored no embedder: the icl variant picks its "
                                             "examples with it", rep.cluster_run),
                                 "re-run slmctl cluster, or leave icl out (--variants base,customized)");
            emb = clustering::load_embedder(cm->embedder, cm->blob, o.device);
        }

        std::vector<store::eval_result_row> rows;
        // per agent: volume, tokens; filled for every call of the scope (chosen clusters, and noise with --all)
        struct agent_acc {
            int64_t calls = 0, replaceable_calls = 0, unpriced = 0;
            double llm_usd = 0, after_usd = 0;
            std::vector<cluster_outcome> outcomes;
            std::vector<verdict_rule> rules;
        };
        std::map<std::string, agent_acc> agents;
        agent_acc total;
        auto account = [&](const store::call_row& c, bool replaceable) {
            for (auto* acc : {&agents[agent_of(c.workload_id)], &total}) {
                ++acc->calls;
                if (replaceable) ++acc->replaceable_calls;
                const auto* lp = pr.llm(c.model);
                if (!lp || !c.prompt_tokens || !c.completion_tokens) {
                    ++acc->unpriced;
                    continue;
                }
                auto cost = cost_saving(*lp, *pr.slm, *c.prompt_tokens, *c.completion_tokens);
                acc->llm_usd += cost.llm_usd;
                acc->after_usd += replaceable ? cost.slm_usd : cost.llm_usd;
            }
        };

        const int64_t total_test = [&] {
            int64_t n = 0;
            for (const auto& r : split) n += r.split == "test";
            return n;
        }();
        log_info("eval: clustering run {}, {} cluster{}, {} test calls in the split, base {}", rep.cluster_run,
                 chosen.size(), chosen.size() == 1 ? "" : "s", total_test, rep.base);

        for (const auto& cl : chosen) {
            if (store::stop_requested()) break;
            cluster_eval ce;
            ce.cluster_id = cl.id;
            ce.idx = cl.idx;
            ce.label = cl.label;
            auto calls = store::calls_of_cluster(d, cl.id);
            ce.volume = static_cast<int64_t>(calls.size());
            std::vector<const store::call_row*> test, train;
            std::map<response_kind, int64_t> kinds;
            for (const auto& c : calls) {
                ++ce.volume_by_agent[agent_of(c.workload_id)];
                if (c.prompt_tokens) ce.input_tokens += *c.prompt_tokens;
                if (c.completion_tokens) ce.output_tokens += *c.completion_tokens;
                auto it = which.find(c.id);
                if (it == which.end()) continue;
                if (it->second == "test" &&
                    (o.kind.empty() ||
                     o.kind == response_kind_name(classify_response(c.response_text.value_or(""), c.response_tool_calls))))
                    test.push_back(&c);
                if (it->second == "train") train.push_back(&c);
            }
            ce.test_calls = static_cast<int64_t>(test.size());
            if (o.max_calls > 0 && static_cast<int64_t>(test.size()) > o.max_calls) {
                std::sort(test.begin(), test.end(), [&](auto* a, auto* b) {
                    return mix(static_cast<uint64_t>(a->id) ^ mix(static_cast<uint64_t>(o.split_seed))) <
                           mix(static_cast<uint64_t>(b->id) ^ mix(static_cast<uint64_t>(o.split_seed)));
                });
                test.resize(o.max_calls);
                std::sort(test.begin(), test.end(), [](auto* a, auto* b) { return a->id < b->id; });
            }
            for (const auto* c : test) ++kinds[classify_response(c->response_text.value_or(""), c->response_tool_calls)];
            if (!kinds.empty())
                ce.kind = std::max_element(kinds.begin(), kinds.end(),
                                           [](const auto& a, const auto& b) { return a.second < b.second; })
                              ->first;
            double lat_sum = 0;
            int64_t lat_n = 0;
            for (const auto* c : test)
                if (c->latency_ms) lat_sum += *c->latency_ms, ++lat_n;
            if (lat_n) ce.llm_latency_ms = lat_sum / lat_n;

            if (static_cast<int64_t>(test.size()) < std::max(1, o.min_calls)) {
                ce.note = fmt::format("{} test call{} (fewer than {}): not evaluated", test.size(),
                                      test.size() == 1 ? "" : "s", std::max(1, o.min_calls));
                ce.reason = ce.note;
            } else {
                log_info("cluster {} '{}': {} test calls ({} in the split), kind {}", cl.idx, cl.label, test.size(),
                         ce.test_calls, response_kind_name(ce.kind));
                // icl examples: the nearest train calls by the run's embedder, on the request text only
                std::vector<std::vector<const store::call_row*>> examples(test.size());
                if (emb && !train.empty()) {
                    std::vector<std::string> docs;
                    for (const auto* c : train) docs.push_back(request_text(c->task_text));
                    for (const auto* c : test) docs.push_back(request_text(c->task_text));
                    std::vector<std::string_view> views(docs.begin(), docs.end());
                    const int dim = emb->dim();
                    std::vector<float> x(docs.size() * static_cast<size_t>(dim));
                    emb->embed(views, x.data());
                    for (size_t i = 0; i < test.size(); ++i) {
                        const float* q = &x[(train.size() + i) * dim];
                        std::vector<std::pair<float, size_t>> sims;
                        for (size_t t = 0; t < train.size(); ++t) {
                            const float* v = &x[t * dim];
                            float s = 0;
                            for (int k = 0; k < dim; ++k) s += q[k] * v[k];
                            sims.push_back({s, t});
                        }
                        const size_t k = std::min<size_t>(static_cast<size_t>(o.icl_k), sims.size());
                        std::partial_sort(sims.begin(), sims.begin() + k, sims.end(), [&](const auto& a, const auto& b) {
                            return a.first != b.first ? a.first > b.first : train[a.second]->id < train[b.second]->id;
                        });
                        for (size_t j = 0; j < k; ++j) examples[i].push_back(train[sims[j].second]);
                    }
                }
                for (const auto& variant : o.variants) {
                    std::vector<replay_item> items;
                    for (size_t i = 0; i < test.size(); ++i) {
                        replay_item it;
                        it.call = test[i];
                        if (variant == "icl") it.examples = examples[i];
                        items.push_back(std::move(it));
                    }
                    std::optional<int64_t> adapter_id;
                    std::string adapter_path;
                    if (variant == "customized") {
                        auto a = adapters.find(cl.id);
                        if (a == adapters.end()) {
                            log_info("  customized: cluster {} has no adapter (slmctl finetune --cluster {})", cl.idx, cl.idx);
                            continue;
                        }
                        if (!a->second.base_model_sha256.empty() && a->second.base_model_sha256 != base_sha) {
                            ce.note = fmt::format("adapter {} was trained on {}, not on {}: customized not evaluated",
                                                  a->second.id, a->second.base_model, rep.base);
                            log_warn("  {}", ce.note);
                            continue;
                        }
                        adapter_path = a->second.path;
                        if (a->second.id) adapter_id = a->second.id;
                        model::load_adapter(lm->decoder(), adapter_path);
                        if (!a->second.loss_curve.empty()) ce.loss_curve = nlohmann::json::parse(a->second.loss_curve, nullptr, false);
                    } else if (variant == "icl" && !emb) {
                        continue;
                    }
                    progress bar(fmt::format("  {} {}", cl.idx, variant), items.size(), "calls");
                    const auto tv = std::chrono::steady_clock::now();
                    std::vector<replay_result> rs;
                    replay_stats rstats;
                    replay_options ro = o.replay;
                    ro.prefix_cache = &prefixes;
                    try {
                        rs = replay(*lm, items, ro, [&](int64_t done, int64_t) { bar.set(static_cast<uint64_t>(done)); },
                                    &rstats);
                    } catch (...) {
                        if (variant == "customized") model::remove_lora(lm->decoder());
                        throw;
                    }
                    bar.finish();
                    const double wall = seconds_since(tv);
                    if (variant == "customized") model::remove_lora(lm->decoder());
                    if (judge) judge_answers(*judge, items, rs, fmt::format("  {} {} judge", cl.idx, variant));
                    auto vs = summarize(variant, ce.kind, rs, o.replay.verdicts, wall, judge.has_value());
                    if (adapter_id) vs.adapter_id = *adapter_id;
                    vs.adapter_path = adapter_path;
                    vs.tokens = rstats;
                    rep.tokens.add(rstats);
                    log_info("  {:<10} {} {:.3f} [{:.3f}, {:.3f}] over {} calls ({} skipped), {:.0f} ms/call", variant,
                             vs.main.metric, vs.main.iv.value, vs.main.iv.lo, vs.main.iv.hi, vs.n, vs.skipped, vs.ms_per_call);
                    for (const auto& r : rs) {
                        store::eval_result_row row;
                        row.run_id = run.id();
                        row.call_id = r.s.call_id;
                        row.cluster_id = cl.id;
                        row.adapter_id = adapter_id;
                        row.variant = variant;
                        row.model = base_abs;
                        nlohmann::ordered_json det = r.s.details;
                        det["kind"] = response_kind_name(r.s.kind);
                        if (r.skipped) {
                            det["skipped"] = r.skip_reason;
                        } else {
                            row.score = r.s.score;
                            row.passed = r.s.passed;
                            det["prompt_tokens"] = r.prompt_tokens;
                            det["output_tokens"] = r.output_tokens;
                            det["cut_turns"] = r.cut_turns;
                            if (variant == "icl") det["examples"] = r.examples;
                            det["latency_ms"] = r.latency_ms;
                            det["tokens_per_s"] = r.tokens_per_s;
                        }
                        row.judge_score = r.judge_score;
                        row.output = r.output;
                        row.details = det.dump();
                        rows.push_back(std::move(row));
                    }
                    ce.variants.push_back(std::move(vs));
                }
                ce.evaluated = static_cast<int64_t>(test.size());
                // the verdict rests on the variant with the best lower bound (ties: the simpler one)
                const variant_summary* best = nullptr;
                for (const auto& v : ce.variants)
                    if (v.n > 0 && (!best || v.main.iv.lo > best->main.iv.lo + 1e-12)) best = &v;
                if (best) {
                    ce.chosen = best->variant;
                    ce.replaceable = best->v.replaceable;
                    ce.reason = fmt::format("{}: {}", best->variant, best->v.reason);
                } else {
                    ce.reason = "no variant could be evaluated";
                }
            }
            // share bookkeeping: this cluster's calls per agent
            const variant_summary* cv = nullptr;
            for (const auto& v : ce.variants)
                if (v.variant == ce.chosen) cv = &v;
            const bool judged = cv && cv->main.judged;
            const double thr = o.replay.verdicts.threshold(ce.kind, judged);
            const auto rule = make_verdict_rule(thr, !judged && binary_metric(ce.kind), o.replay.verdicts.min_calls);
            for (const auto& [agent, n] : ce.volume_by_agent) {
                agents[agent].outcomes.push_back({static_cast<double>(n), cv ? cv->scores : std::vector<double>{}});
                agents[agent].rules.push_back(rule);
            }
            total.outcomes.push_back({static_cast<double>(ce.volume), cv ? cv->scores : std::vector<double>{}});
            total.rules.push_back(rule);
            for (const auto& c : calls) account(c, ce.replaceable);
            rep.clusters.push_back(std::move(ce));
        }
        // with --all the noise calls count too (never replaceable: no task cluster serves them); with a
        // cluster list, so do the clusters left out (not evaluated: they stay with the LLM)
        if (!o.cluster_idx)
            for (const auto& c : all_clusters)
                if (c.idx < 0 || (!o.cluster_list.empty() && std::find(o.cluster_list.begin(), o.cluster_list.end(),
                                                                        c.idx) == o.cluster_list.end())) {
                    auto calls = store::calls_of_cluster(d, c.id);
                    std::map<std::string, int64_t> by_agent;
                    for (const auto& call : calls) {
                        ++by_agent[agent_of(call.workload_id)];
                        account(call, false);
                    }
                    const auto never = make_verdict_rule(1.0, true, std::numeric_limits<int64_t>::max());
                    for (const auto& [agent, n] : by_agent) {
                        agents[agent].outcomes.push_back({static_cast<double>(n), {}});
                        agents[agent].rules.push_back(never);
                    }
                    total.outcomes.push_back({static_cast<double>(calls.size()), {}});
                    total.rules.push_back(never);
                }
        auto share_of = [&](const std::string& name, const agent_acc& a) {
            share_row s;
            s.agent = name;
            s.calls = a.calls;
            s.replaceable_calls = a.replaceable_calls;
            s.share = replaceable_share(a.outcomes, a.rules, 1000, 0);
            s.cost.llm_usd = a.llm_usd;
            s.cost.slm_usd = a.after_usd;
            s.cost.saving_usd = a.llm_usd - a.after_usd;
            s.cost.saving_share = a.llm_usd > 0 ? s.cost.saving_usd / a.llm_usd : 0;
            s.unpriced_calls = a.unpriced;
            return s;
        };
        for (const auto& [name, a] : agents) rep.shares.push_back(share_of(name, a));
        rep.shares.push_back(share_of("total", total));
        rep.prices = {{"slm", prices.slm}, {"slm_price", pr.slm->model}, {"llm_model", o.llm_model}};

        // the previous eval of the same clustering run, for comparison
        for (const auto& r : store::list_runs(d, "eval")) {
            if (r.id >= run.id() || r.status != "ok") continue;
            auto p = nlohmann::json::parse(r.params, nullptr, false);
            if (!p.is_object() || p.value("cluster_run", int64_t{0}) != rep.cluster_run) continue;
            auto s = nlohmann::ordered_json::parse(r.summary, nullptr, false);
            if (!s.is_object()) continue;
            rep.previous_run = r.id;
            nlohmann::ordered_json prev = {{"run_id", r.id}, {"finished", r.finished}};
            if (s.contains("shares")) prev["shares"] = s["shares"];
            nlohmann::ordered_json verdicts = nlohmann::ordered_json::object();
            if (s.contains("clusters"))
                for (const auto& c : s["clusters"])
                    verdicts[std::to_string(c.value("idx", -1))] = {{"replaceable", c.value("replaceable", false)},
                                                                    {"chosen", c.value("chosen", "")}};
            prev["verdicts"] = verdicts;
            rep.previous = prev;
        }
        rep.seconds = seconds_since(t0);
        if (rep.tokens.calls > 0)
            log_info("prompt tokens computed: {} of {} ({:.2f}x; {} from the prefix cache); with the {} generated, {:.2f}x "
                     "of what a per-call engine runs",
                     rep.tokens.prefill_tokens, rep.tokens.prompt_tokens,
                     double(rep.tokens.prefill_tokens) / std::max<int64_t>(1, rep.tokens.prompt_tokens),
                     rep.tokens.cached_tokens, rep.tokens.generated_tokens,
                     double(rep.tokens.processed_tokens()) / std::max<int64_t>(1, rep.tokens.per_call_tokens()));
        store::insert_eval_results(d, rows);
        auto summary = rep.to_json();
        if (store::stop_requested()) {
            run.interrupted(summary.dump());
            return rep;
        }
        run.finish(summary.dump());
        return rep;
    });
}

nlohmann::ordered_json load_report(store::db& d, int64_t run_id) {
    store::reap_stale_runs(d);
    if (run_id == 0) {
        run_id = store::latest_ok_run(d, "eval");
        if (run_id == 0) throw user_error(fmt::format("{} holds no finished eval run", d.path()), "run slmctl eval first");
    }
    auto r = store::require_ok_run(d, run_id, "eval");
    auto j = nlohmann::ordered_json::parse(r.summary, nullptr, false);
    if (!j.is_object()) throw internal_error(fmt::format("eval run {}: summary is not JSON", run_id));
    return j;
}

}  // namespace slm::eval
