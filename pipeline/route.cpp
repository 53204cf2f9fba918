// `slmctl route`: a new request goes to the cluster its task text falls in (the clustering run's own
// embedder and cells), and from there to the adapter eval approved for that cluster, the base
// model where eval found it good enough alone, or the LLM, with the similarity and the reason.
#include <cmath>
#include <filesystem>
#include <map>

#include "common/common.h"
#include "pipeline/pipeline.h"
#include "store/stages.h"

namespace fs = std::filesystem;

namespace slm::pipeline {

struct router::impl {
    int64_t cluster_run = 0, eval_run = 0;
    double noise_similarity = -1;
    std::string embedder;
    std::vector<route_target> targets;
    std::map<int, size_t> by_idx;                 ///< idx -> targets index
    std::map<int, std::vector<int>> cells_of;     ///< idx -> the k-means cells it owns
    // the run's cells were fitted on task text that ends with the answer's shape ("response:
    // tool_call:send_email"), which a request does not have yet; so the cluster is chosen among
    // per-(node, cluster) centroids of the run's own calls embedded without that line
    std::unique_ptr<clustering::embedder> emb;
    clustering::text_params text;
    int dim = 0;
    std::vector<float> req_centroids;             ///< n * dim, unit norm
    std::vector<int> req_owner;                   ///< centroid -> cluster idx
    std::vector<std::string> req_workload;        ///< centroid -> workload ("" = any)
    std::vector<float> req_radius;                ///< centroid -> the 2nd percentile of its own calls' cosine
    std::map<int, float> radius_of;               ///< idx -> the smallest radius of its centroids
    std::unique_ptr<collector::normalizer> norm;  ///< scrubs and derives task text as collect did
};

router::router() : p_(std::make_unique<impl>()) {}
router::~router() = default;
router::router(router&&) noexcept = default;
router& router::operator=(router&&) noexcept = default;
const std::vector<route_target>& router::targets() const { return p_->targets; }
int64_t router::cluster_run() const { return p_->cluster_run; }
int64_t router::eval_run() const { return p_->eval_run; }

namespace {

/// Task text as a request has it: without the trailing "response: SHAPE" line.
std::string request_task_text(std::string tt) {
    if (auto p = tt.rfind("response: "); p != std::string::npos && (p == 0 || tt[p - 1] == '\n'))
        tt.erase(p == 0 ? 0 : p - 1);
    return tt;
}

std::string adapter_name(const std::string& path, int idx) {
    fs::path p(path);
    if (p.extension() == ".gguf") p = p.parent_path();
    std::string n = p.filename().string();
    return n.empty() ? fmt::format("cluster-{}", idx) : n;
}

}  // namespace

router router::load(store::db& d, int64_t cluster_run) {
    store::reap_stale_runs(d);
    router r;
    auto& im = *r.p_;
    if (cluster_run == 0) cluster_run = clustering::latest_run(d);
    if (cluster_run == 0)
        throw user_error(fmt::format("{} holds no finished clustering run", d.path()),
                         "run `slmctl run LOGS` (or collect + cluster + finetune + eval) first");
    im.cluster_run = cluster_run;
    auto run = store::require_ok_run(d, cluster_run, "cluster");
    auto params = nlohmann::json::parse(run.params, nullptr, false);
    if (params.is_object()) im.noise_similarity = params.value("noise_similarity", -1.0);
    if (params.is_object() && params.contains("text")) {
        im.text.include_system = params["text"].value("include_system", false);
        im.text.max_chars = params["text"].value("max_chars", im.text.max_chars);
    }
    if (auto m = store::get_cluster_model(d, cluster_run)) {
        im.embedder = m->embedder;
        im.emb = clustering::load_embedder(m->embedder, m->blob);
        im.dim = im.emb->dim();
        auto own = nlohmann::json::parse(m->cell_owner, nullptr, false);
        if (own.is_array())
            for (size_t i = 0; i < own.size(); ++i) im.cells_of[own[i].get<int>()].push_back(static_cast<int>(i));
    }
    // the newest ok eval over this clustering run that evaluated each cluster
    std::map<int, nlohmann::ordered_json> verdict;  // idx -> the cluster's eval entry
    std::map<int, std::string> eval_base;           // idx -> the base model that eval ran
    auto evals = store::list_runs(d, "eval");
    for (auto it = evals.rbegin(); it != evals.rend(); ++it) {
        if (it->status != "ok") continue;
        auto s = nlohmann::ordered_json::parse(it->summary, nullptr, false);
        if (!s.is_object() || s.value("cluster_run", int64_t{0}) != cluster_run) continue;
        if (!im.eval_run) im.eval_run = it->id;
        for (const auto& c : s.value("clusters", nlohmann::ordered_json::array()))
            if (c.value("evaluated", 0) > 0 && !verdict.count(c.value("idx", -1))) {
                verdict.emplace(c.value("idx", -1), c);
                eval_base[c.value("idx", -1)] = s.value("base", "");
            }
    }
    for (const auto& c : store::clusters_of_run(d, cluster_run)) {
        if (c.idx < 0) continue;
        route_target t;
        t.idx = c.idx;
        t.cluster_id = c.id;
        t.label = c.label;
        auto v = verdict.find(c.idx);
        if (v == verdict.end()) {
            t.reason = im.eval_run ? fmt::format("cluster {} was not evaluated: the LLM keeps it", c.idx)
                                   : "no eval over this clustering run yet (`slmctl eval --all`): the LLM keeps it";
        } else {
            const auto& e = v->second;
            const std::string chosen = e.value("chosen", "");
            nlohmann::ordered_json var;
            for (const auto& x : e.value("variants", nlohmann::ordered_json::array()))
                if (x.value("variant", "") == chosen) var = x;
            if (var.is_object())
                t.evidence = {{"eval_run", im.eval_run}, {"variant", chosen}, {"metric", var.value("metric", "")},
                              {"value", var.value("value", 0.0)},   {"lo", var.value("lo", 0.0)},
                              {"hi", var.value("hi", 0.0)},         {"n", var.value("n", 0)}};
            if (!e.value("replaceable", false)) {
                t.reason = fmt::format("eval: not replaceable ({})", e.value("reason", ""));
            } else if (chosen == "customized") {
                const int64_t aid = var.value("adapter_id", int64_t{0});
                auto a = aid ? store::get_adapter(d, aid) : std::nullopt;
                if (!a || !fs::exists(a->path)) {
                    t.reason = fmt::format("eval approved adapter {}, but its files are gone ({}): the LLM keeps it", aid,
                                           a ? a->path : "no adapters row");
                } else {
                    t.target = "adapter";
                    t.adapter_id = aid;
                    t.adapter_path = a->path;
                    t.base_model = a->base_model;
                    t.adapter_name = adapter_name(a->path, c.idx);
                    const fs::path gg = fs::path(a->path) / "adapter.gguf";
                    if (fs::path(a->path).extension() == ".gguf") t.gguf_path = a->path;
                    else if (fs::exists(gg)) t.gguf_path = gg.string();
                    t.reason = fmt::format("eval approved adapter {} ({})", aid, e.value("reason", ""));
                }
            } else {
                t.target = "base";
                t.base_model = eval_base[c.idx];
                t.reason = fmt::format("eval: the base model{} is good enough ({})",
                                       chosen == "icl" ? " with in-context examples" : "", e.value("reason", ""));
            }
        }
        im.by_idx[c.idx] = im.targets.size();
        im.targets.push_back(std::move(t));
    }
    // request-only centroids of the run's calls, per agent node and cluster
    {
        std::map<int64_t, int> idx_of;
        for (const auto& m : store::members_of_run(d, cluster_run))
            if (m.cluster_idx >= 0) idx_of[m.call_id] = m.cluster_idx;
        std::vector<std::string> docs;
        std::vector<std::pair<std::string, int>> key_of;  // per doc: (workload, idx)
        store::call_filter f;
        f.system_prompt = im.text.include_system;
        store::for_each_call_text(d, f, [&](const store::call_text_view& v) {
            auto it = idx_of.find(v.id);
            if (it == idx_of.end()) return;
            clustering::call_text ct{request_task_text(std::string(v.task_text)), std::string(v.workload_id),
                                     std::string(v.system_prompt)};
            docs.push_back(clustering::document(ct, im.text));
            key_of.emplace_back(std::string(v.workload_id), it->second);
        });
        std::vector<std::string_view> views(docs.begin(), docs.end());
        std::vector<float> x(docs.size() * static_cast<size_t>(im.dim));
        if (!docs.empty() && im.emb) im.emb->embed(views, x.data());
        std::map<std::pair<std::string, int>, std::vector<double>> acc;
        for (size_t i = 0; i < docs.size(); ++i) {
            auto& a = acc[key_of[i]];
            a.resize(im.dim, 0.0);
            for (int t = 0; t < im.dim; ++t) a[t] += x[i * im.dim + t];
        }
        std::map<std::pair<std::string, int>, size_t> slot;
        for (const auto& [k, a] : acc) {
            double nn = 0;
            for (double v : a) nn += v * v;
            nn = std::sqrt(nn);
            if (nn <= 0) continue;
            slot[k] = im.req_owner.size();
            for (double v : a) im.req_centroids.push_back(static_cast<float>(v / nn));
            im.req_owner.push_back(k.second);
            im.req_workload.push_back(k.first);
        }
        // each centroid's radius: the cosine that 98% of its own calls reach (a request farther out
        // than the cluster's own calls is not its task)
        std::vector<std::vector<float>> sims(im.req_owner.size());
        for (size_t i = 0; i < docs.size(); ++i) {
            auto it = slot.find(key_of[i]);
            if (it == slot.end()) continue;
            double dot = 0;
            for (int t = 0; t < im.dim; ++t) dot += static_cast<double>(x[i * im.dim + t]) * im.req_centroids[it->second * im.dim + t];
            sims[it->second].push_back(static_cast<float>(dot));
        }
        for (size_t c = 0; c < sims.size(); ++c) {
            auto& v = sims[c];
            std::sort(v.begin(), v.end());
            const float r = v.empty() ? 1.f : v[static_cast<size_t>(0.02 * static_cast<double>(v.size() - 1))];
            im.req_radius.push_back(r);
            auto [it, fresh] = im.radius_of.try_emplace(im.req_owner[c], r);
            if (!fresh) it->second = std::min(it->second, r);
        }
    }
    collector::normalize_options no;
    im.norm = std::make_unique<collector::normalizer>(no);
    return r;
}

route_decision router::route(const std::string& json_text, const std::string& source, const std::string& workload,
                             double min_margin) {
    auto& im = *p_;
    route_decision out;
    out.source = source;
    auto j = nlohmann::json::parse(json_text, nullptr, false);
    if (!j.is_object())
        throw user_error(fmt::format("{}: not a JSON object", source),
                         "route reads one OpenAI chat-completions request (or a logged {request, response}) per line");
    // the record collect would store: the request with an empty answer, so the normalizer derives the
    // task text (last user turn, tools offered, after-tool-result) and scrubs it the same way
    nlohmann::json rec;
    if (j.contains("request") && j["request"].is_object()) {
        rec = j;
    } else if (j.contains("messages")) {
        rec = {{"request", j}};
    } else {
        throw user_error(fmt::format("{}: no \"messages\" (nor a \"request\" holding them)", source),
                         "route reads OpenAI chat-completions requests: {\"model\", \"messages\": [...], \"tools\"?}");
    }
    if (!workload.empty()) rec["workload_id"] = workload;
    const auto& req = rec["request"];
    if (req.contains("metadata") && req["metadata"].is_object() && !rec.contains("workload_id")) {
        const auto& md = req["metadata"];
        if (md.contains("workload_id") && md["workload_id"].is_string()) rec["workload_id"] = md["workload_id"];
    }
    for (const char* k : {"id", "request_id"})
        if (j.contains(k) && j[k].is_string()) out.request_id = j[k].get<std::string>();
    rec["response"] = {{"object", "chat.completion"},
                       {"choices", nlohmann::json::array({{{"index", 0},
                                                           {"message", {{"role", "assistant"}, {"content", ""}}},
                                                           {"finish_reason", "stop"}}})}};
    collector::record_result rr;
    im.norm->process(rec.dump(), source, 0, rr);
    if (rr.calls.empty()) {
        std::string why = rr.quarantined.empty() ? "no call in it"
                                                 : rr.quarantined[0].reason + ": " + rr.quarantined[0].detail;
        throw user_error(fmt::format("{}: cannot read the request ({})", source, why));
    }
    auto& call = rr.calls[0];
    // a gateway routes before the answer exists: the task text without its response line
    clustering::call_text ct{request_task_text(call.task_text), call.workload_id, ""};
    if (auto m = nlohmann::json::parse(call.messages, nullptr, false); m.is_array())
        for (const auto& msg : m)
            if (msg.value("role", "") == "system" && msg.contains("content") && msg["content"].is_string()) {
                ct.system_prompt = msg["content"].get<std::string>();
                break;
            }
    // the nearest request-only centroid of the request's node (any node's when the run never saw it),
    // and whether the request lies within that centroid's radius
    if (im.req_owner.empty()) {
        out.reason = "the clustering run has no clustered calls to route by";
        return out;
    }
    const std::string doc = clustering::document(ct, im.text);
    std::vector<std::string_view> dv = {doc};
    std::vector<float> x(im.dim);
    im.emb->embed(dv, x.data());
    bool known = false;
    for (const auto& w : im.req_workload) known |= !ct.workload_id.empty() && w == ct.workload_id;
    double best = -2, second = -2;  // second: the best centroid of another cluster
    size_t bc = 0;
    int second_idx = -1;
    std::vector<double> dots(im.req_owner.size(), -2);
    for (size_t c = 0; c < im.req_owner.size(); ++c) {
        if (known && im.req_workload[c] != ct.workload_id) continue;
        double dot = 0;
        for (int t = 0; t < im.dim; ++t) dot += static_cast<double>(x[t]) * im.req_centroids[c * im.dim + t];
        dots[c] = dot;
        if (dot > best) best = dot, bc = c;
    }
    for (size_t c = 0; c < im.req_owner.size(); ++c)
        if (im.req_owner[c] != im.req_owner[bc] && dots[c] > second) second = dots[c], second_idx = im.req_owner[c];
    out.margin = second_idx >= 0 ? static_cast<float>(best - second) : 1.f;
    out.runner_up = second_idx;
    out.similarity = static_cast<float>(best);
    struct {
        int cluster;
        float similarity;
    } a{im.req_owner[bc], static_cast<float>(best)};
    if (best < im.req_radius[bc]) {
        out.reason = fmt::format("cosine {:.2f} to the nearest cluster ({}) is below {:.2f}, which 98% of its own calls "
                                 "reach: not one of the recurring tasks",
                                 best, a.cluster, im.req_radius[bc]);
        return out;
    }
    out.idx = a.cluster;
    auto it = im.by_idx.find(a.cluster);
    if (it == im.by_idx.end()) {
        out.reason = fmt::format("cluster {} has no routing entry", a.cluster);
        return out;
    }
    const auto& t = im.targets[it->second];
    if (t.target != "llm" && out.margin < min_margin) {
        out.reason = fmt::format("cluster {} ({}), cosine {:.2f}, but cluster {} is as close ({:.2f}, margin {:.2f} < "
                                 "{:.2f}): ambiguous, the LLM keeps it",
                                 t.idx, t.label, a.similarity, second_idx, second, out.margin, min_margin);
        return out;
    }
    out.target = t.target;
    out.adapter_name = t.adapter_name;
    out.adapter_path = t.adapter_path;
    out.reason = fmt::format("cluster {} ({}), cosine {:.2f}: {}", t.idx, t.label, a.similarity, t.reason);
    return out;
}

nlohmann::json route_decision::to_json() const {
    nlohmann::json j = {{"source", source}, {"cluster", idx}, {"similarity", similarity}, {"target", target}};
    if (runner_up >= 0) j["runner_up"] = {{"cluster", runner_up}, {"margin", margin}};
    if (!request_id.empty()) j["request_id"] = request_id;
    if (!adapter_name.empty()) j["adapter_name"] = adapter_name;
    if (!adapter_path.empty()) j["adapter_path"] = adapter_path;
    j["reason"] = reason;
    return j;
}

nlohmann::json router::table() const {
    const auto& im = *p_;
    nlohmann::json cl = nlohmann::json::array();
    for (const auto& t : im.targets) {
        nlohmann::json e = {{"cluster", t.idx},
                            {"cluster_id", t.cluster_id},
                            {"label", t.label},
                            {"target", t.target},
                            {"reason", t.reason},
                            {"thresholds",
                             {{"min_similarity", im.radius_of.count(t.idx) ? im.radius_of.at(t.idx) : 1.f},
                              {"rule", "cosine of the request (task text without the answer) to the cluster's "
                                       "request centroid; 98% of the cluster's own calls reach it"}}},
                            {"centroid_ref",
                             {{"cluster_run", im.cluster_run}, {"table", "cluster_models"}, {"cells", im.cells_of.count(t.idx) ? im.cells_of.at(t.idx) : std::vector<int>{}}}}};
        if (t.target == "adapter")
            e["adapter"] = {{"name", t.adapter_name}, {"id", t.adapter_id}, {"path", t.adapter_path},
                            {"gguf", t.gguf_path}, {"base_model", t.base_model}};
        if (t.target == "base") e["base_model"] = t.base_model;
        if (!t.evidence.is_null()) e["evidence"] = t.evidence;
        cl.push_back(e);
    }
    return {{"format", "slmctl.routing.v1"},
            {"cluster_run", im.cluster_run},
            {"eval_run", im.eval_run},
            {"embedder", im.embedder},
            {"default_target", "llm"},
            {"clustering_noise_similarity", im.noise_similarity},
            {"clusters", cl}};
}

}  // namespace slm::pipeline
