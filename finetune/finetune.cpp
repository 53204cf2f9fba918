// finetune_cluster(): the S5 recipe over the store. load the cluster's calls -> split (once per
// clustering run and seed) -> conversations -> encode with the base model's template (loss on the
// logged response only) -> LoRA set-up -> train -> save (PEFT dir, GGUF adapter, merged model) ->
// record in `adapters` -> clean up the checkpoint.
#include <torch/torch.h>

#include <filesystem>

#include <fmt/format.h>

#include "common/common.h"
#include "common/sha256.h"
#include "common/timing.h"
#include "finetune/finetune.h"
#include "model/conversation.h"
#include "model/adapter.h"
#include "model/llama.h"
#include "model/model.h"

namespace fs = std::filesystem;

namespace slm::finetune {

std::string file_sha256(const std::string& path) {
    if (fs::is_directory(path)) {
        // an HF directory: its weights and config identify it
        sha256 h;
        std::vector<fs::path> files;
        for (const auto& e : fs::directory_iterator(path))
            if (e.is_regular_file() && (e.path().extension() == ".safetensors" || e.path().filename() == "config.json"))
                files.push_back(e.path());
        std::sort(files.begin(), files.end());
        for (const auto& f : files) h.update(f.filename().string() + ":" + sha256_file(f.string()) + "\n");
        return h.hex();
    }
    return sha256_file(path);
}

nlohmann::json finetune_report::to_json() const {
    return {{"run_id", run_id},
            {"adapter_id", adapter_id},
            {"out", out},
            {"gguf", gguf},
            {"merged", merged},
            {"base", base},
            {"base_sha256", base_sha256},
            {"n_train", n_train},
            {"n_val", n_val},
            {"n_test", n_test},
            {"skipped_too_long", skipped_too_long},
            {"cut_examples", cut_examples},
            {"cut_turns", cut_turns},
            {"train", result.to_json()}};
}

std::vector<store::split_row> ensure_split(store::db& d, int64_t cluster_run, int64_t seed) {
    auto rows = store::get_splits(d, cluster_run, seed);
    if (!rows.empty()) return rows;
    std::vector<split_item> items;
    for (const auto& m : store::members_of_run(d, cluster_run)) {
        auto c = store::get_call(d, m.call_id);
        if (!c) continue;
        items.push_back({m.call_id, fmt::format("{}/{}", m.cluster_idx, call_stratum(*c)), call_group(*c)});
    }
    rows = make_split(items, static_cast<uint64_t>(seed));
    store::write_splits(d, cluster_run, seed, rows);
    log_verbose("split of clustering run {} (seed {}) written: {} calls", cluster_run, seed, rows.size());
    return rows;
}

namespace {

std::string default_out(const store::db& d, int64_t cluster_id) {
    fs::path db_path(d.path());
    fs::path dir = db_path.has_parent_path() ? db_path.parent_path() : fs::path(".");
    return (dir / "adapters" / fmt::format("cluster-{}", cluster_id)).string();
}

}  // namespace

int64_t resolve_cluster(store::db& d, int64_t run, int idx) {
    store::reap_stale_runs(d);
    if (run == 0) {
        run = store::latest_ok_run(d, "cluster");
        if (run == 0)
            throw user_error(fmt::format("{} holds no finished clustering run", d.path()),
                             "run slmctl cluster first");
    } else {
        store::require_ok_run(d, run, "cluster");
    }
    std::string known;
    for (const auto& c : store::clusters_of_run(d, run)) {
        if (c.idx == idx) return c.id;
        if (c.idx >= 0) known += fmt::format("{}{}", known.empty() ? "" : ", ", c.idx);
    }
    throw user_error(fmt::format("clustering run {} has no cluster {} (it has {})", run, idx, known.empty() ? "none" : known),
                     "pick one from the id column of: slmctl cluster --run " + std::to_string(run));
}

finetune_report finetune_cluster(store::db& d, const finetune_options& o) {
    store::reap_stale_runs(d);
    auto ref = store::get_cluster(d, o.cluster_id);
    if (!ref)
        throw user_error(fmt::format("no cluster with id {} in {}", o.cluster_id, d.path()),
                         "list clusters with: slmctl cluster --show (the id column)");
    const auto cluster_run = store::get_run(d, ref->run_id);
    if (!cluster_run || cluster_run->status != "ok")
        throw user_error(fmt::format("cluster {} belongs to clustering run {}, which is {}", o.cluster_id, ref->run_id,
                                     cluster_run ? cluster_run->status : "missing"),
                         "re-run slmctl cluster and fine-tune a cluster of an 'ok' run");
    if (ref->cluster.idx < 0)
        throw user_error(fmt::format("cluster {} is the noise group of run {}, not a task cluster", o.cluster_id, ref->run_id),
                         "pick a cluster with idx >= 0 (slmctl cluster --show)");
    if (o.format != "peft" && o.format != "gguf" && o.format != "both")
        throw user_error(fmt::format("--format {} is not one of peft, gguf, both", o.format), "use --format peft|gguf|both");
    o.train.lora.validate();
    auto calls = store::calls_of_cluster(d, o.cluster_id);
    if (static_cast<int64_t>(calls.size()) < o.min_calls)
        throw user_error(fmt::format("cluster {} ('{}') has {} calls; fine-tuning needs at least {}", o.cluster_id,
                                     ref->cluster.label, calls.size(), o.min_calls),
                         "collect more calls for this task, merge it into a larger cluster (cluster --k), "
                         "or lower --min-calls");

    finetune_report rep;
    rep.base = o.base.empty() ? model::default_smollm2_path() : o.base;
    rep.out = o.out.empty() ? default_out(d, o.cluster_id) : o.out;
    const std::string ckpt = rep.out + ".checkpoint";
    nlohmann::json params = {{"cluster_id", o.cluster_id},
                             {"cluster_run", ref->run_id},
                             {"base", rep.base},
                             {"out", rep.out},
                             {"format", o.format},
                             {"dtype", o.dtype},
                             {"max_tokens", o.max_tokens},
                             {"split_seed", o.split_seed},
                             {"max_train", o.max_train},
                             {"lora", o.train.lora.to_json()},
                             {"lr", o.train.lr},
                             {"weight_decay", o.train.weight_decay},
                             {"batch_size", o.train.batch_size},
                             {"grad_accum", o.train.grad_accum},
                             {"clip", o.train.clip},
                             {"max_steps", o.train.max_steps},
                             {"epochs", o.train.epochs},
                             {"eval_every", o.train.eval_every},
                             {"patience", o.train.patience},
                             {"seed", o.train.seed},
                             {"time_budget_s", o.train.time_budget_s},
                             {"share_prefixes", o.train.prefix.enabled},
                             {"min_shared_tokens", o.train.prefix.min_tokens}};
    store::run_scope run(d, "finetune", params.dump(), store::on_signal::stop);
    return run.guard([&] {
        rep.run_id = run.id();
        const auto t0 = std::chrono::steady_clock::now();
        // ---- data: split, conversations
        auto split = ensure_split(d, ref->run_id, o.split_seed);
        std::unordered_map<int64_t, std::string> which;
        for (const auto& r : split) which[r.call_id] = r.split;
        std::vector<model::conversation> train_c, val_c;
        int64_t bad = 0;
        for (const auto& c : calls) {
            auto it = which.find(c.id);
            if (it == which.end())
                throw internal_error(fmt::format("call {} of cluster {} is not in the split of run {}", c.id,
                                                 o.cluster_id, ref->run_id));
            if (it->second == "test") {
                ++rep.n_test;
                continue;
            }
            model::logged_call lc;
            lc.messages_json = c.messages;
            lc.tools_json = c.tools;
            if (c.response_text) lc.response_text = *c.response_text;
            lc.response_tool_calls_json = c.response_tool_calls;
            try {
                (it->second == "train" ? train_c : val_c).push_back(model::conversation_from_call(lc));
            } catch (const user_error& e) {
                ++bad;
                log_warn("call {}: not usable for training: {}", c.id, e.what());
            }
        }
        if (o.max_train > 0 && static_cast<int64_t>(train_c.size()) > o.max_train) train_c.resize(o.max_train);

        // ---- base model, encoding with its template
        model::load_options lo;
        lo.dtype = o.dtype;
        lo.device = o.device;
        lo.int4_decode = "off";  // training reads the dense weights
        auto lm = model::load_model(rep.base, lo);
        if (!lm->has_chat_template())
            throw user_error(fmt::format("{} has no chat template: fine-tuning renders calls as chats", rep.base),
                             "use an instruct model (GGUF with tokenizer.chat_template, or an HF dir with "
                             "tokenizer_config.json)");
        rep.base_sha256 = file_sha256(rep.base);
        run.set_device(nlohmann::json({{"device", lm->info().device},
                                       {"dtype", lm->info().dtype},
                                       {"dtype_choice", lm->info().dtype_choice}})
                           .dump());
        model::encode_options eo;
        eo.max_tokens = std::min<int64_t>(o.max_tokens, lm->info().context_length);
        auto encode_all = [&](const std::vector<model::conversation>& cs) {
            std::vector<example> xs;
            for (const auto& c : cs) {
                model::encoded_example e;
                try {
                    e = model::encode_conversation(lm->tok(), lm->chat(), c, eo);
                } catch (const user_error& err) {  // a conversation this template cannot express
                    ++bad;
                    log_warn("a call is not usable with {}'s chat template: {}", rep.base, err.what());
                    continue;
                }
                if (!e.fits) {
                    ++rep.skipped_too_long;
                    continue;
                }
                if (e.cut_turns > 0) ++rep.cut_examples, rep.cut_turns += e.cut_turns;
                xs.push_back({std::move(e.ids), e.prompt_len});
            }
            return xs;
        };
        auto train_x = encode_all(train_c);
        auto val_x = encode_all(val_c);
        rep.n_train = train_x.size();
        rep.n_val = val_x.size();
        if (rep.skipped_too_long)
            log_warn("{} call{} longer than {} tokens even without history: skipped (raise --max-tokens)",
                     rep.skipped_too_long, rep.skipped_too_long == 1 ? "" : "s", eo.max_tokens);
        if (rep.cut_examples)
            log_info("{} call{} cut to {} tokens ({} oldest history turn{} dropped)", rep.cut_examples,
                     rep.cut_examples == 1 ? "" : "s", eo.max_tokens, rep.cut_turns, rep.cut_turns == 1 ? "" : "s");
        if (train_x.empty())
            throw user_error(fmt::format("cluster {} has no usable training call ({} unusable, {} too long)", o.cluster_id,
                                         bad, rep.skipped_too_long),
                             "check the calls with slmctl cluster --show, or raise --max-tokens");

        // ---- train
        auto to = o.train;
        to.checkpoint_dir = ckpt;
        to.should_stop = [] { return store::stop_requested(); };
        to.fingerprint = {{"base_sha256", rep.base_sha256},
                          {"cluster_id", o.cluster_id},
                          {"cluster_run", ref->run_id},
                          {"max_tokens", eo.max_tokens},
                          {"split_seed", o.split_seed},
                          {"dtype", lm->info().dtype}};
        if (to.resume && !fs::exists(fs::path(ckpt) / "state.json"))
            throw user_error(fmt::format("--resume: no checkpoint at {}", ckpt),
                             "resume with the same --out (and cluster) as the interrupted run, or drop --resume");
        rep.result = train_lora(lm->decoder(), train_x, val_x, to);
        nlohmann::json summary = rep.to_json();
        if (rep.result.stop_reason == "interrupted") {
            summary["checkpoint"] = ckpt;
            run.interrupted(summary.dump());
            return rep;
        }

        // ---- save: PEFT dir (temp + rename inside), GGUF adapter, merged model
        const auto& cfg = o.train.lora;
        if (o.format == "peft" || o.format == "both") {
            model::save_peft_adapter(lm->decoder(), cfg, rep.out, rep.base);
        } else {
            std::error_code ec;
            fs::create_directories(rep.out, ec);
        }
        if (o.format == "gguf" || o.format == "both") {
            rep.gguf = (fs::path(rep.out) / "adapter.gguf").string();
            model::save_gguf_adapter(lm->decoder(), cfg, rep.gguf);
        }
        if (!o.merge_dir.empty()) {
            model::merge_lora(lm->decoder());
            model::save_merged_hf(*lm, o.merge_dir);
            rep.merged = o.merge_dir;
        }

        // ---- record, clean up
        store::adapter_row a;
        a.run_id = run.id();
        a.cluster_id = o.cluster_id;
        a.base_model = fs::absolute(rep.base).string();
        a.base_model_sha256 = rep.base_sha256;
        a.path = fs::absolute(rep.out).string();
        a.rank = cfg.rank;
        a.alpha = cfg.alpha;
        a.params = params.dump();
        nlohmann::json metrics = rep.result.to_json();
        metrics.erase("curve");
        metrics["n_train"] = rep.n_train;
        metrics["n_val"] = rep.n_val;
        metrics["n_test"] = rep.n_test;
        metrics["skipped_too_long"] = rep.skipped_too_long;
        metrics["cut_examples"] = rep.cut_examples;
        metrics["cut_turns"] = rep.cut_turns;
        metrics["unusable_calls"] = bad;
        metrics["gguf"] = rep.gguf;
        metrics["merged"] = rep.merged;
        metrics["seconds"] = seconds_since(t0);
        a.metrics = metrics.dump();
        nlohmann::json curve = nlohmann::json::array();
        for (const auto& p : rep.result.curve) curve.push_back(p.to_json());
        a.loss_curve = curve.dump();
        store::txn t(d);
        rep.adapter_id = store::insert_adapter(d, a);
        summary = rep.to_json();
        summary["train"].erase("curve");
        run.finish(summary.dump());
        t.commit();
        std::error_code ec;
        fs::remove_all(ckpt, ec);
        return rep;
    });
}

}  // namespace slm::finetune
