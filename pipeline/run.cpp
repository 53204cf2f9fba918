// `slmctl run`: collect -> cluster -> select -> finetune -> eval as one recorded `run`. Each stage
// has a key, a BLAKE2b hash of what it reads and its params; a stage whose key a finished stage run
// already has is skipped (a re-run, or a killed run resumed after its last finished stage; a killed
// fine-tune continues from its checkpoint). A new cycle (new logs in a database that holds an
// earlier one) assigns the new calls to the earlier clusters unless drift says re-cluster, and
// re-trains only the clusters whose train / val calls changed.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <unordered_map>

#include "common/common.h"
#include "model/model.h"
#include "pipeline/pipeline.h"
#include "store/stages.h"

namespace fs = std::filesystem;

namespace slm::pipeline {

namespace {

using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

/// A stage key under construction: a domain tag, then length-prefixed fields.
struct key_builder {
    collector::hasher h{16};
    explicit key_builder(std::string_view tag) { add(tag); }
    key_builder& add(std::string_view s) {
        uint64_t n = s.size();
        h.update(&n, sizeof(n));
        h.update(s);
        return *this;
    }
    key_builder& add(int64_t v) {
        h.update(&v, sizeof(v));
        return *this;
    }
    key_builder& add(const std::vector<int64_t>& v) {
        add(static_cast<int64_t>(v.size()));
        if (!v.empty()) h.update(v.data(), v.size() * sizeof(int64_t));
        return *this;
    }
    std::string hex() { return h.hex(); }
};

/// The files `collect` reads for `paths` (directories recursively, sorted), "-" kept as is.
std::vector<std::string> input_files(const std::vector<std::string>& paths) {
    std::vector<std::string> out;
    for (const auto& p : paths) {
        if (p == "-") {
            out.push_back(p);
            continue;
        }
        std::error_code ec;
        if (fs::is_directory(p, ec)) {
            std::vector<std::string> in;
            for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
                 it.increment(ec))
                if (it->is_regular_file(ec)) in.push_back(it->path().string());
            std::sort(in.begin(), in.end());
            out.insert(out.end(), in.begin(), in.end());
        } else {
            if (!fs::exists(p, ec))
                throw user_error(fmt::format("log path {} does not exist", p), "check [collect] logs or the paths given");
            out.push_back(p);
        }
    }
    return out;
}

/// BLAKE2b of a file's bytes.
std::string file_digest(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot read {}", path));
    collector::hasher h(16);
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (f.gcount() > 0) h.update(buf.data(), static_cast<size_t>(f.gcount()));
    }
    return h.hex();
}

/// A model's identity for a key: a file's sha256 (cached per path, size and mtime within the
/// process), a directory's weight files' digests.
std::string model_identity(const std::string& path) {
    static std::map<std::string, std::string> cache;
    std::error_code ec;
    std::string stamp = fmt::format("{}|{}", path,
                                    fs::is_regular_file(path, ec) ? static_cast<int64_t>(fs::file_size(path, ec)) : -1);
    if (auto it = cache.find(stamp); it != cache.end()) return it->second;
    std::string id;
    if (fs::is_regular_file(path, ec)) {
        id = finetune::file_sha256(path);
    } else if (fs::is_directory(path, ec)) {
        std::vector<std::string> files;
        for (const auto& e : fs::directory_iterator(path, ec))
            if (e.is_regular_file(ec)) files.push_back(e.path().string());
        std::sort(files.begin(), files.end());
        key_builder k("model-dir");
        for (const auto& f : files) k.add(fs::path(f).filename().string()).add(file_digest(f));
        id = k.hex();
    } else {
        throw user_error(fmt::format("base model {} does not exist", path),
                         "give a GGUF file or an HF directory ([finetune] base), or run scripts/fetch-models.sh");
    }
    cache[stamp] = id;
    return id;
}

std::string slug(const std::string& s, size_t max) {
    std::string out;
    for (char ch : s) {
        const unsigned char u = static_cast<unsigned char>(ch);
        if (std::isalnum(u)) out.push_back(static_cast<char>(std::tolower(u)));
        else if (!out.empty() && out.back() != '-') out.push_back('-');
        if (out.size() >= max) break;
    }
    while (!out.empty() && out.back() == '-') out.pop_back();
    return out.empty() ? "cluster" : out;
}

// FNV-1a 64 then a splitmix finaliser (stable across platforms)
uint64_t stable_hash(std::string_view s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 30, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 27, h *= 0x94D049BB133111EBull, h ^= h >> 31;
    return h;
}

/// The split of an extended clustering run: the earlier run's calls keep their side (an adapter
/// trained then never meets its training calls in a later test split); a new call joins the side
/// of an earlier call with the same last user message (near-duplicates stay together), else goes
/// to test / val / train by a stable hash of that message (10 / 10 / 80).
void extend_split(store::db& d, const clustering::drift_report& dr, int64_t new_run, int64_t seed) {
    auto old_rows = finetune::ensure_split(d, dr.run_id, seed);
    std::unordered_map<int64_t, std::string> side;
    for (const auto& r : old_rows) side[r.call_id] = r.split;
    std::unordered_map<std::string, std::string> group_side;  // group -> side, per earlier calls
    for (const auto& r : old_rows)
        if (auto c = store::get_call(d, r.call_id)) group_side.try_emplace(finetune::call_group(*c), r.split);
    std::vector<store::split_row> rows = old_rows;
    for (int64_t id : dr.new_ids) {
        auto c = store::get_call(d, id);
        if (!c) continue;
        const std::string g = finetune::call_group(*c);
        std::string s;
        if (auto it = group_side.find(g); it != group_side.end()) {
            s = it->second;
        } else {
            const uint64_t h = stable_hash(g, static_cast<uint64_t>(seed)) % 10;
            s = h == 0 ? "test" : h == 1 ? "val" : "train";
            group_side.emplace(g, s);
        }
        rows.push_back({id, s});
    }
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.call_id < b.call_id; });
    store::write_splits(d, new_run, seed, rows);
}

nlohmann::json parse_or_object(const std::string& s) {
    auto j = nlohmann::json::parse(s, nullptr, false);
    return j.is_object() ? j : nlohmann::json::object();
}

}  // namespace

nlohmann::json stage_outcome::to_json() const {
    nlohmann::json j = {{"stage", stage}, {"action", action}, {"seconds", seconds}};
    if (!what.empty()) j["what"] = what;
    if (!why.empty()) j["why"] = why;
    if (stage_run) j["stage_run"] = stage_run;
    if (!result.empty()) j["result"] = result;
    return j;
}

nlohmann::json run_report::to_json() const {
    nlohmann::json st = nlohmann::json::array();
    for (const auto& s : stages) st.push_back(s.to_json());
    nlohmann::json j = {{"run_id", run_id}, {"cluster_run", cluster_run}, {"eval_run", eval_run}, {"stages", st},
                        {"seconds", seconds}};
    if (!drift.is_null()) j["drift"] = drift;
    if (compare.previous_run)
        j["previous_cycle"] = {{"run_id", compare.previous_run}, {"shares", compare.shares}, {"clusters", compare.clusters}};
    return j;
}

run_report run_pipeline(store::db& d, const run_config& cfg, const run_hooks& hooks) {
    run_config c = cfg;
    const auto t_start = clock_type::now();
    store::reap_stale_runs(d);
    if (c.collect.paths.empty() && store::all_call_ids(d).empty())
        throw user_error(fmt::format("no logs to collect and no calls in {}", d.path()),
                         "give log files or directories (`slmctl run LOGS...` or [collect] logs)");
    if (c.pick.max_clusters < 0) throw user_error("[finetune] max_clusters must be at least 0");
    if (c.pick.max_prompt_tokens < 0)
        throw user_error("[finetune] max_prompt_tokens must be at least 0", "0 means no limit");
    c.eval_opts.split_seed = c.finetune.split_seed;
    c.eval_opts.device = c.finetune.device;
    c.select_opts.device = c.finetune.device;
    const fs::path db_dir = fs::path(d.path()).has_parent_path() ? fs::path(d.path()).parent_path() : fs::path(".");
    const std::string adapters_dir = c.adapters_dir.empty() ? (db_dir / "adapters").string() : c.adapters_dir;

    store::run_scope scope(d, "run", c.to_json().dump(), store::on_signal::stop);
    const int64_t run_id = scope.id();
    return scope.guard([&]() -> run_report {
        run_report rep;
        rep.run_id = run_id;
        auto start = [&](const std::string& stage, const std::string& what) {
            if (hooks.on_stage_start) hooks.on_stage_start(stage, what);
        };
        auto record = [&](stage_outcome o, const std::string& key, const std::string& cluster_key, clock_type::time_point t) {
            o.seconds = seconds_since(t);
            store::pipeline_step_row row;
            row.run_id = run_id;
            row.stage = o.stage;
            row.cluster_key = cluster_key;
            row.key = key;
            row.stage_run = o.stage_run;
            row.result = o.result.dump();
            static const std::set<std::string> done = {"ran", "skipped", "assigned", "carried", "resumed"};
            if (done.count(o.action)) store::insert_pipeline_step(d, row);
            if (hooks.on_stage_done) hooks.on_stage_done(o);
            rep.stages.push_back(std::move(o));
        };
        auto stopped = [&]() {
            if (!store::stop_requested()) return false;
            rep.seconds = seconds_since(t_start);
            scope.interrupted(rep.to_json().dump());
            return true;
        };

        // ---- S1+S2 collect -------------------------------------------------------------------
        if (!c.collect.paths.empty()) {
            auto t = clock_type::now();
            start("collect", "");
            auto files = input_files(c.collect.paths);
            key_builder k("collect.v1");
            nlohmann::json params = slm::collector::to_json(c.collect);
            params.erase("paths");
            params.erase("threads");
            params.erase("batch");
            k.add(params.dump());
            bool from_stdin = false;
            int64_t bytes = 0;
            for (const auto& f : files) {
                if (f == "-") {
                    from_stdin = true;
                    continue;
                }
                std::error_code ec;
                bytes += static_cast<int64_t>(fs::file_size(f, ec));
                k.add(fs::absolute(f).lexically_normal().string()).add(file_digest(f));
            }
            const std::string key = k.hex();
            stage_outcome o{"collect", fmt::format("{} files, {:.1f} MB", files.size(), bytes / 1e6)};
            auto prev = from_stdin ? std::nullopt : store::find_pipeline_step(d, "collect", key);
            if (prev) {
                o.action = "skipped";
                o.stage_run = prev->stage_run;
                o.why = fmt::format("the same files (content hash {}) were collected by run {}", key.substr(0, 12),
                                    prev->stage_run);
                o.result = parse_or_object(prev->result);
            } else {
                auto s = collector::collect(d, c.collect);
                o.action = "ran";
                o.stage_run = s.run_id;
                o.result = {{"ingested", s.ingested}, {"duplicate", s.duplicate}, {"quarantined", s.quarantined},
                            {"flagged", s.flagged}};
                if (s.status != "ok") {
                    o.action = s.status;
                    record(o, "", "", t);
                    if (stopped()) return rep;
                    throw user_error(fmt::format("collect run {} ended '{}'", s.run_id, s.status));
                }
            }
            record(o, from_stdin ? key_builder("stdin").add(utc_now_iso()).hex() : key, "", t);
            if (stopped()) return rep;
        }

        // ---- S3 cluster --------------------------------------------------------------------------
        {
            auto t = clock_type::now();
            start("cluster", "");
            const auto ids = store::all_call_ids(d);
            nlohmann::json params = clustering::to_json(c.cluster);
            const std::string params_key = key_builder("cluster-params.v1").add(params.dump()).hex();
            const std::string key = key_builder("cluster.v1")
                                        .add(params.dump())
                                        .add(std::to_string(c.drift.max_unassigned_share))
                                        .add(std::to_string(c.drift.max_growth))
                                        .add(ids)
                                        .hex();
            stage_outcome o{"cluster", fmt::format("{} calls", ids.size())};
            if (auto prev = store::find_pipeline_step(d, "cluster", key)) {
                o.action = "skipped";
                o.result = parse_or_object(prev->result);
                rep.cluster_run = o.result.value("cluster_run", int64_t{0});
                o.stage_run = rep.cluster_run;
                o.why = fmt::format("the same {} calls and params were clustered by run {}", ids.size(), rep.cluster_run);
            } else {
                // the previous cycle: the newest cluster step of an earlier `run` with the same params
                int64_t prev_run = 0;
                auto runs = store::list_runs(d, "run");
                for (auto it = runs.rbegin(); it != runs.rend() && !prev_run; ++it) {
                    if (it->id == run_id) continue;
                    for (const auto& s : store::pipeline_steps_of_run(d, it->id)) {
                        if (s.stage != "cluster") continue;
                        auto r = parse_or_object(s.result);
                        const int64_t cr = r.value("cluster_run", int64_t{0});
                        auto row = cr ? store::get_run(d, cr) : std::nullopt;
                        if (r.value("params_key", std::string()) == params_key && row && row->status == "ok") prev_run = cr;
                    }
                }
                if (prev_run) {
                    auto dr = clustering::measure_drift(d, prev_run, c.drift);
                    rep.drift = dr.to_json();
                    if (dr.new_calls == 0) {
                        o.action = "skipped";
                        rep.cluster_run = prev_run;
                        o.why = fmt::format("no calls beyond those run {} clustered", prev_run);
                    } else if (!dr.recluster) {
                        auto res = clustering::extend_run(d, dr);
                        extend_split(d, dr, res.run_id, c.finetune.split_seed);
                        o.action = "assigned";
                        rep.cluster_run = res.run_id;
                        o.why = dr.reason;
                    } else {
                        auto res = clustering::run(d, c.cluster);
                        o.action = "ran";
                        rep.cluster_run = res.run_id;
                        o.why = "re-clustered: " + dr.reason;
                    }
                } else {
                    auto res = clustering::run(d, c.cluster);
                    o.action = "ran";
                    rep.cluster_run = res.run_id;
                }
                o.stage_run = rep.cluster_run;
                o.result = {{"cluster_run", rep.cluster_run}, {"params_key", params_key}};
                if (!rep.drift.is_null()) o.result["drift"] = rep.drift;
            }
            record(o, key, "", t);
            if (stopped()) return rep;
        }
        const auto clusters = clustering::load_run(d, rep.cluster_run).clusters;
        finetune::ensure_split(d, rep.cluster_run, c.finetune.split_seed);

        // ---- S4 select ---------------------------------------------------------------------------
        if (c.select) {
            auto t = clock_type::now();
            start("select", "");
            auto opts = c.select_opts;
            opts.cluster_run = rep.cluster_run;
            opts.cluster_idx.reset();
            key_builder k("select.v1");
            k.add(rep.cluster_run).add(opts.to_json().dump());
            for (const auto& m : select::find_local_models(opts.model_dirs, opts.model_cache)) k.add(m).add(model_identity(m));
            const std::string key = k.hex();
            stage_outcome o{"select", fmt::format("{} clusters", clusters.size())};
            if (auto prev = store::find_pipeline_step(d, "select", key)) {
                o.action = "skipped";
                o.stage_run = prev->stage_run;
                o.why = fmt::format("clustering run {} was ranked with the same models and params by run {}",
                                    rep.cluster_run, prev->stage_run);
            } else {
                auto s = select::run_select(d, opts);
                o.action = "ran";
                o.stage_run = s.run_id;
                o.result = {{"local_models", s.local}};
            }
            record(o, key, "", t);
            if (stopped()) return rep;
        }

        // ---- S5 finetune -------------------------------------------------------------------------
        std::vector<const clustering::cluster_info*> picked;
        {
            std::vector<const clustering::cluster_info*> cand;
            for (const auto& cl : clusters) {
                if (cl.idx < 0) continue;
                if (!c.pick.clusters.empty()) {
                    if (std::find(c.pick.clusters.begin(), c.pick.clusters.end(), cl.idx) != c.pick.clusters.end())
                        cand.push_back(&cl);
                    continue;
                }
                const double tool_share = cl.stats.is_object() ? cl.stats.value("tool_call_share", 0.0) : 0.0;
                const double suit = std::isnan(cl.suitability) ? 0 : cl.suitability;
                // the logged prompt_tokens' p90 (the LLM's tokenizer: a size class, not our count)
                const double p90_prompt = cl.stats.is_object() && cl.stats.contains("prompt_tokens") &&
                                                  cl.stats["prompt_tokens"].is_object()
                                              ? cl.stats["prompt_tokens"].value("p90", 0.0)
                                              : 0.0;
                if (cl.size >= c.pick.min_size && cl.size >= c.finetune.min_calls && suit >= c.pick.min_suitability &&
                    tool_share >= c.pick.min_tool_call_share &&
                    (c.pick.max_prompt_tokens <= 0 || p90_prompt <= static_cast<double>(c.pick.max_prompt_tokens)))
                    cand.push_back(&cl);
            }
            std::stable_sort(cand.begin(), cand.end(), [](const auto* a, const auto* b) {
                const double sa = std::isnan(a->suitability) ? 0 : a->suitability;
                const double sb = std::isnan(b->suitability) ? 0 : b->suitability;
                return sa > sb;
            });
            if (cand.size() > static_cast<size_t>(c.pick.max_clusters)) cand.resize(c.pick.max_clusters);
            picked = cand;
            if (picked.empty()) {
                stage_outcome o{"finetune", ""};
                o.action = "none";
                o.why = c.pick.max_clusters == 0
                            ? "[finetune] max_clusters = 0"
                            : fmt::format("no cluster has at least {} calls, suitability >= {}, tool-call share >= {}{}",
                                          std::max<int64_t>(c.pick.min_size, c.finetune.min_calls), c.pick.min_suitability,
                                          c.pick.min_tool_call_share,
                                          c.pick.max_prompt_tokens > 0
                                              ? fmt::format(" and p90 prompt tokens <= {}", c.pick.max_prompt_tokens)
                                              : std::string());
                if (hooks.on_stage_done) hooks.on_stage_done(o);
                rep.stages.push_back(o);
            }
        }
        const auto split = store::get_splits(d, rep.cluster_run, c.finetune.split_seed);
        std::unordered_map<int64_t, std::string> side;
        for (const auto& r : split) side[r.call_id] = r.split;
        const auto members = store::members_of_run(d, rep.cluster_run);
        std::map<int64_t, int64_t> adapter_of;  // cluster_id -> adapter evaluated
        for (const auto* cl : picked) {
            auto t = clock_type::now();
            const std::string what = fmt::format("cluster {} ({})", cl->idx, cl->label);
            start("finetune", what);
            auto o = c.finetune;
            o.cluster_id = cl->id;
            o.device = c.finetune.device;
            if (o.base.empty()) o.base = select::top_local_pick(d, cl->id);
            if (o.base.empty()) o.base = model::default_smollm2_path();
            o.train.lora.targets = model::lora_config::parse_targets(c.targets);
            o.train.time_budget_s = c.time_budget_min * 60;
            o.train.on_progress = hooks.on_train_progress;
            std::vector<int64_t> train_ids, val_ids;
            for (const auto& m : members) {
                if (m.cluster_id != cl->id) continue;
                auto it = side.find(m.call_id);
                if (it == side.end()) continue;
                if (it->second == "train") train_ids.push_back(m.call_id);
                if (it->second == "val") val_ids.push_back(m.call_id);
            }
            nlohmann::json fp = c.to_json()["finetune"];
            fp.erase("pick");
            fp.erase("adapters_dir");
            fp["base"] = model_identity(o.base);
            const std::string key = key_builder("finetune.v1").add(fp.dump()).add(train_ids).add(val_ids).hex();
            stage_outcome so{"finetune", what};
            const std::string cluster_key = std::to_string(cl->id);
            if (auto prev = store::find_pipeline_step(d, "finetune", key)) {
                auto r = parse_or_object(prev->result);
                const int64_t aid = r.value("adapter_id", int64_t{0});
                auto a = aid ? store::get_adapter(d, aid) : std::nullopt;
                if (a && fs::exists(a->path)) {
                    so.stage_run = prev->stage_run;
                    if (a->cluster_id && *a->cluster_id == cl->id) {
                        so.action = "skipped";
                        so.why = fmt::format("adapter {} was trained on these {} train / {} val calls by run {}", aid,
                                             train_ids.size(), val_ids.size(), prev->stage_run);
                        so.result = r;
                    } else {
                        // the cluster's train and val calls did not change across clustering runs:
                        // the same adapter serves it, recorded for the new cluster row
                        auto copy = *a;
                        copy.cluster_id = cl->id;
                        auto p = parse_or_object(copy.params);
                        p["carried_from"] = {{"adapter_id", aid}, {"cluster_id", a->cluster_id.value_or(0)},
                                             {"pipeline_run", run_id}};
                        copy.params = p.dump();
                        copy.created.clear();
                        const int64_t nid = store::insert_adapter(d, copy);
                        so.action = "carried";
                        so.why = fmt::format("its {} train / {} val calls are those adapter {} was trained on (run {}): "
                                             "not retrained",
                                             train_ids.size(), val_ids.size(), aid, prev->stage_run);
                        so.result = r;
                        so.result["adapter_id"] = nid;
                        so.result["cluster_id"] = cl->id;
                    }
                    adapter_of[cl->id] = so.result.value("adapter_id", int64_t{0});
                    record(so, key, cluster_key, t);
                    continue;
                }
            }
            o.out = (fs::path(adapters_dir) / fmt::format("c{}-{}-{}", cl->idx, slug(cl->label, 32), key.substr(0, 8))).string();
            std::error_code ec;
            const bool resume = fs::exists(o.out + ".checkpoint", ec);
            o.train.resume = resume;
            auto fr = finetune::finetune_cluster(d, o);
            so.stage_run = fr.run_id;
            so.action = resume ? "resumed" : "ran";
            so.result = {{"adapter_id", fr.adapter_id}, {"cluster_id", cl->id}, {"out", fr.out}, {"gguf", fr.gguf},
                         {"base", fr.base}, {"steps", fr.result.steps}, {"stop_reason", fr.result.stop_reason},
                         {"n_train", fr.n_train}, {"n_val", fr.n_val}};
            if (fr.result.val_first) so.result["val_first"] = *fr.result.val_first;
            if (fr.result.val_best) so.result["val_best"] = *fr.result.val_best;
            if (fr.result.stop_reason == "interrupted") {
                so.action = "interrupted";
                so.why = fmt::format("checkpoint kept at {}.checkpoint; the next `slmctl run` resumes from it", fr.out);
                so.seconds = seconds_since(t);
                if (hooks.on_stage_done) hooks.on_stage_done(so);
                rep.stages.push_back(so);
                stopped();
                return rep;
            }
            adapter_of[cl->id] = fr.adapter_id;
            record(so, key, cluster_key, t);
            if (stopped()) return rep;
        }

        // ---- eval --------------------------------------------------------------------------------
        if (c.eval) {
            auto t = clock_type::now();
            auto opts = c.eval_opts;
            opts.cluster_run = rep.cluster_run;
            opts.cluster_idx.reset();
            opts.cluster_list.clear();
            if (c.eval_clusters == "finetuned") {
                for (const auto* cl : picked) opts.cluster_list.push_back(cl->idx);
                if (opts.cluster_list.empty()) opts.cluster_list.push_back(-2);  // none: nothing to evaluate
            }
            start("eval", "");
            key_builder k("eval.v1");
            k.add(rep.cluster_run).add(opts.to_json().dump());
            for (const auto& cl : clusters) {
                if (cl.idx < 0) continue;
                auto as = store::adapters_of_cluster(d, cl.id);
                k.add(cl.id).add(as.empty() ? int64_t{0} : as.front().id);
            }
            const std::string key = k.hex();
            stage_outcome o{"eval", fmt::format("{} clusters", c.eval_clusters == "finetuned" ? picked.size()
                                                                                               : clusters.size())};
            if (auto prev = store::find_pipeline_step(d, "eval", key)) {
                o.action = "skipped";
                o.stage_run = prev->stage_run;
                o.why = fmt::format("clustering run {} and its adapters were evaluated with the same params by run {}",
                                    rep.cluster_run, prev->stage_run);
                rep.eval = eval::load_report(d, prev->stage_run);
            } else {
                auto er = eval::run_eval(d, opts);
                o.action = "ran";
                o.stage_run = er.run_id;
                rep.eval = er.to_json();
                if (store::stop_requested()) {
                    o.action = "interrupted";
                    if (hooks.on_stage_done) hooks.on_stage_done(o);
                    rep.stages.push_back(o);
                    stopped();
                    return rep;
                }
            }
            rep.eval_run = o.stage_run;
            record(o, key, "", t);
        }

        // ---- this cycle against the last one -----------------------------------------------------
        {
            auto runs = store::list_runs(d, "run");
            for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
                if (it->id >= run_id || it->status != "ok") continue;
                auto s = parse_or_object(it->summary);
                const int64_t prev_eval = s.value("eval_run", int64_t{0});
                if (!prev_eval || prev_eval == rep.eval_run || rep.eval.is_null()) continue;
                nlohmann::ordered_json pe;
                try {
                    pe = eval::load_report(d, prev_eval);
                } catch (const user_error&) {
                    continue;
                }
                rep.compare.previous_run = it->id;
                rep.compare.shares = nlohmann::json::array();
                std::map<std::string, double> before;
                for (const auto& sh : pe.value("shares", nlohmann::ordered_json::array()))
                    before[sh.value("agent", "")] = sh["share"].value("value", 0.0);
                for (const auto& sh : rep.eval.value("shares", nlohmann::ordered_json::array())) {
                    nlohmann::json row = {{"agent", sh.value("agent", "")}, {"share", sh["share"].value("value", 0.0)}};
                    if (auto b = before.find(sh.value("agent", "")); b != before.end()) row["previous_share"] = b->second;
                    rep.compare.shares.push_back(row);
                }
                std::map<std::string, bool> was;
                for (const auto& cl : pe.value("clusters", nlohmann::ordered_json::array()))
                    was[cl.value("label", "")] = cl.value("replaceable", false);
                rep.compare.clusters = nlohmann::json::array();
                for (const auto& cl : rep.eval.value("clusters", nlohmann::ordered_json::array())) {
                    nlohmann::json row = {{"idx", cl.value("idx", -1)},
                                          {"label", cl.value("label", "")},
                                          {"replaceable", cl.value("replaceable", false)}};
                    if (auto w = was.find(cl.value("label", "")); w != was.end()) row["previous_replaceable"] = w->second;
                    rep.compare.clusters.push_back(row);
                }
                break;
            }
        }
        rep.seconds = seconds_since(t_start);
        scope.finish(rep.to_json().dump());
        return rep;
    });
}

}  // namespace slm::pipeline
