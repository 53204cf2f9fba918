// The `slmctl run` configuration: a TOML file (toml++) whose sections map onto run_config; every
// key is checked (unknown keys and wrong types name file:line), absent keys keep their value.
#include <filesystem>
#include <set>

#include <toml++/toml.h>

#include "common/common.h"
#include "pipeline/pipeline.h"

namespace slm::pipeline {

namespace {

struct reader {
    const std::string& file;

    std::string where(const toml::node& n, std::string_view key) const {
        return fmt::format("{}:{}: {}", file, n.source().begin.line, key);
    }
    [[noreturn]] void bad(const toml::node& n, std::string_view key, std::string_view want) const {
        throw user_error(fmt::format("{} must be {}", where(n, key), want),
                         "see pipeline/slmctl.example.toml for every key and its type");
    }

    /// Calls `fn(key, node)` for each key of `t`, refusing keys outside `known`.
    template <typename F>
    void each(const toml::table& t, std::string_view section, const std::set<std::string>& known, F&& fn) const {
        for (const auto& [k, v] : t) {
            const std::string key(k.str());
            if (!known.count(key)) {
                std::string list;
                for (const auto& x : known) list += (list.empty() ? "" : ", ") + x;
                throw user_error(fmt::format("{}:{}: unknown key '{}' in [{}]", file, k.source().begin.line, key, section),
                                 fmt::format("[{}] knows {}", section, list));
            }
            fn(key, v);
        }
    }

    void get(const toml::node& n, std::string_view key, std::string& out) const {
        if (auto v = n.value<std::string>(); v && n.is_string()) out = *v;
        else bad(n, key, "a string");
    }
    void get(const toml::node& n, std::string_view key, bool& out) const {
        if (!n.is_boolean()) bad(n, key, "true or false");
        out = *n.value<bool>();
    }
    template <typename I> void get_int(const toml::node& n, std::string_view key, I& out) const {
        if (!n.is_integer()) bad(n, key, "an integer");
        out = static_cast<I>(*n.value<int64_t>());
    }
    void get(const toml::node& n, std::string_view key, int& out) const { get_int(n, key, out); }
    void get(const toml::node& n, std::string_view key, int64_t& out) const { get_int(n, key, out); }
    void get(const toml::node& n, std::string_view key, uint64_t& out) const { get_int(n, key, out); }
    void get(const toml::node& n, std::string_view key, double& out) const {
        if (!n.is_number()) bad(n, key, "a number");
        out = *n.value<double>();
    }
    void get(const toml::node& n, std::string_view key, std::vector<std::string>& out) const {
        const auto* a = n.as_array();
        if (!a) bad(n, key, "an array of strings");
        out.clear();
        for (const auto& e : *a) {
            if (!e.is_string()) bad(e, key, "an array of strings");
            out.push_back(*e.value<std::string>());
        }
    }
    void get(const toml::node& n, std::string_view key, std::vector<int>& out) const {
        const auto* a = n.as_array();
        if (!a) bad(n, key, "an array of integers");
        out.clear();
        for (const auto& e : *a) {
            if (!e.is_integer()) bad(e, key, "an array of integers");
            out.push_back(static_cast<int>(*e.value<int64_t>()));
        }
    }
};

}  // namespace

void load_config(const std::string& path, run_config& c) {
    toml::table root;
    try {
        root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        throw user_error(fmt::format("{}:{}:{}: {}", path, e.source().begin.line, e.source().begin.column, e.description()),
                         "fix the TOML syntax; pipeline/slmctl.example.toml is a valid example");
    }
    reader r{path};
    // paths in the file are relative to the file's directory
    const std::filesystem::path base_dir = std::filesystem::path(path).parent_path();
    auto rel = [&](std::string& p) {
        if (!p.empty() && p != "-" && std::filesystem::path(p).is_relative()) p = (base_dir / p).lexically_normal().string();
    };
    auto section = [&](std::string_view name, const toml::node& n) -> const toml::table& {
        if (!n.is_table()) r.bad(n, name, "a [section]");
        return *n.as_table();
    };
    r.each(root, "top level", {"collect", "cluster", "drift", "select", "finetune", "eval"}, [&](const std::string& sec,
                                                                                                 const toml::node& n) {
        const auto& t = section(sec, n);
        if (sec == "collect") {
            auto& o = c.collect;
            r.each(t, sec, {"logs", "format", "workload", "client", "scrub", "strict", "threads"},
                   [&](const std::string& k, const toml::node& v) {
                       if (k == "logs") {
                           r.get(v, k, o.paths);
                           for (auto& p : o.paths) rel(p);
                       }
                       if (k == "format") r.get(v, k, o.format);
                       if (k == "workload") r.get(v, k, o.workload);
                       if (k == "client") r.get(v, k, o.client);
                       if (k == "scrub") r.get(v, k, o.scrub);
                       if (k == "strict") r.get(v, k, o.strict);
                       if (k == "threads") r.get(v, k, o.threads);
                   });
        } else if (sec == "cluster") {
            auto& o = c.cluster;
            r.each(t, sec,
                   {"k", "k_min", "k_max", "embedder", "workload", "by_workload", "seed", "min_cluster_size",
                    "noise_similarity", "include_system"},
                   [&](const std::string& k, const toml::node& v) {
                       if (k == "k") {
                           if (v.is_integer()) o.k = std::to_string(*v.value<int64_t>());
                           else r.get(v, k, o.k);
                       }
                       if (k == "k_min") r.get(v, k, o.k_min);
                       if (k == "k_max") r.get(v, k, o.k_max);
                       if (k == "embedder") r.get(v, k, o.embedder);
                       if (k == "workload") r.get(v, k, o.workload);
                       if (k == "by_workload") r.get(v, k, o.by_workload);
                       if (k == "seed") r.get(v, k, o.seed);
                       if (k == "min_cluster_size") r.get(v, k, o.min_cluster_size);
                       if (k == "noise_similarity") r.get(v, k, o.noise_similarity);
                       if (k == "include_system") r.get(v, k, o.text.include_system);
                   });
        } else if (sec == "drift") {
            r.each(t, sec, {"max_unassigned_share", "max_growth"}, [&](const std::string& k, const toml::node& v) {
                if (k == "max_unassigned_share") r.get(v, k, c.drift.max_unassigned_share);
                if (k == "max_growth") r.get(v, k, c.drift.max_growth);
            });
        } else if (sec == "select") {
            auto& o = c.select_opts;
            r.each(t, sec,
                   {"enabled", "models", "model_cache", "probe", "probe_max_tokens", "probe_max_prompt", "catalog",
                    "max_params", "max_memory", "licenses"},
                   [&](const std::string& k, const toml::node& v) {
                       std::string s;
                       if (k == "enabled") r.get(v, k, c.select);
                       if (k == "models") {
                           r.get(v, k, o.model_dirs);
                           for (auto& p : o.model_dirs) rel(p);
                       }
                       if (k == "model_cache") r.get(v, k, o.model_cache);
                       if (k == "probe") r.get(v, k, o.probe);
                       if (k == "probe_max_tokens") r.get(v, k, o.probe_max_tokens);
                       if (k == "probe_max_prompt") r.get(v, k, o.probe_max_prompt);
                       if (k == "catalog") r.get(v, k, o.catalog_path), rel(o.catalog_path);
                       if (k == "max_params") r.get(v, k, s), o.limits.max_params = select::parse_param_count(s, r.where(v, k));
                       if (k == "max_memory")
                           r.get(v, k, s), o.limits.max_memory_bytes = select::parse_memory_bytes(s, r.where(v, k));
                       if (k == "licenses") {
                           std::vector<std::string> l;
                           r.get(v, k, l);
                           o.limits.licenses = l;
                       }
                   });
        } else if (sec == "finetune") {
            auto& o = c.finetune;
            auto& tr = o.train;
            r.each(t, sec,
                   {"base", "clusters", "max_clusters", "min_size", "min_suitability", "min_tool_call_share", "max_prompt_tokens", "format",
                    "targets", "rank", "alpha", "dropout", "rslora", "lr", "batch_size", "grad_accum", "max_steps", "epochs",
                    "eval_every", "val_max", "patience", "checkpoint_every", "time_budget_min", "seed", "split_seed",
                    "max_tokens", "max_train", "min_calls", "dtype", "adapters_dir"},
                   [&](const std::string& k, const toml::node& v) {
                       if (k == "base") r.get(v, k, o.base), rel(o.base);
                       if (k == "clusters") r.get(v, k, c.pick.clusters);
                       if (k == "max_clusters") r.get(v, k, c.pick.max_clusters);
                       if (k == "min_size") r.get(v, k, c.pick.min_size);
                       if (k == "min_suitability") r.get(v, k, c.pick.min_suitability);
                       if (k == "min_tool_call_share") r.get(v, k, c.pick.min_tool_call_share);
                       if (k == "max_prompt_tokens") r.get(v, k, c.pick.max_prompt_tokens);
                       if (k == "format") r.get(v, k, o.format);
                       if (k == "targets") r.get(v, k, c.targets);
                       if (k == "rank") r.get(v, k, tr.lora.rank);
                       if (k == "alpha") r.get(v, k, tr.lora.alpha);
                       if (k == "dropout") r.get(v, k, tr.lora.dropout);
                       if (k == "rslora") r.get(v, k, tr.lora.rslora);
                       if (k == "lr") r.get(v, k, tr.lr);
                       if (k == "batch_size") r.get(v, k, tr.batch_size);
                       if (k == "grad_accum") r.get(v, k, tr.grad_accum);
                       if (k == "max_steps") r.get(v, k, tr.max_steps);
                       if (k == "epochs") r.get(v, k, tr.epochs);
                       if (k == "eval_every") r.get(v, k, tr.eval_every);
                       if (k == "val_max") r.get(v, k, tr.val_max);
                       if (k == "patience") r.get(v, k, tr.patience);
                       if (k == "checkpoint_every") r.get(v, k, tr.checkpoint_every);
                       if (k == "time_budget_min") r.get(v, k, c.time_budget_min);
                       if (k == "seed") r.get(v, k, tr.seed);
                       if (k == "split_seed") r.get(v, k, o.split_seed);
                       if (k == "max_tokens") r.get(v, k, o.max_tokens);
                       if (k == "max_train") r.get(v, k, o.max_train);
                       if (k == "min_calls") r.get(v, k, o.min_calls);
                       if (k == "dtype") r.get(v, k, o.dtype);
                       if (k == "adapters_dir") r.get(v, k, c.adapters_dir), rel(c.adapters_dir);
                   });
        } else if (sec == "eval") {
            auto& o = c.eval_opts;
            r.each(t, sec,
                   {"enabled", "clusters", "variants", "max_calls", "min_calls", "icl_k", "kind", "max_new_tokens",
                    "max_prompt_tokens", "batch_size", "thresholds", "prices", "llm_model", "html", "md"},
                   [&](const std::string& k, const toml::node& v) {
                       if (k == "enabled") r.get(v, k, c.eval);
                       if (k == "clusters") {
                           r.get(v, k, c.eval_clusters);
                           if (c.eval_clusters != "all" && c.eval_clusters != "finetuned") r.bad(v, k, "\"all\" or \"finetuned\"");
                       }
                       if (k == "variants") r.get(v, k, o.variants);
                       if (k == "max_calls") r.get(v, k, o.max_calls);
                       if (k == "min_calls") r.get(v, k, o.min_calls);
                       if (k == "icl_k") r.get(v, k, o.icl_k);
                       if (k == "kind") r.get(v, k, o.kind);
                       if (k == "max_new_tokens") r.get(v, k, o.replay.max_new_tokens);
                       if (k == "max_prompt_tokens") r.get(v, k, o.replay.max_prompt_tokens);
                       if (k == "batch_size") r.get(v, k, o.replay.batch_size);
                       if (k == "thresholds") {
                           std::vector<std::string> l;
                           r.get(v, k, l);
                           for (const auto& s : l) eval::set_threshold(o.replay.verdicts, s);
                       }
                       if (k == "prices") r.get(v, k, o.prices_path), rel(o.prices_path);
                       if (k == "llm_model") r.get(v, k, o.llm_model);
                       if (k == "html") r.get(v, k, c.html), rel(c.html);
                       if (k == "md") r.get(v, k, c.md), rel(c.md);
                   });
        }
    });
}

nlohmann::json run_config::to_json() const {
    nlohmann::json j;
    j["collect"] = slm::collector::to_json(collect);
    j["cluster"] = clustering::to_json(cluster);
    j["drift"] = {{"max_unassigned_share", drift.max_unassigned_share}, {"max_growth", drift.max_growth}};
    j["select"] = select ? select_opts.to_json() : nlohmann::json{{"enabled", false}};
    j["finetune"] = {{"base", finetune.base},
                     {"pick",
                      {{"max_clusters", pick.max_clusters},
                       {"min_size", pick.min_size},
                       {"min_suitability", pick.min_suitability},
                       {"min_tool_call_share", pick.min_tool_call_share},
                       {"max_prompt_tokens", pick.max_prompt_tokens},
                       {"clusters", pick.clusters}}},
                     {"format", finetune.format},
                     {"targets", targets},
                     {"lora", finetune.train.lora.to_json()},
                     {"lr", finetune.train.lr},
                     {"batch_size", finetune.train.batch_size},
                     {"grad_accum", finetune.train.grad_accum},
                     {"max_steps", finetune.train.max_steps},
                     {"epochs", finetune.train.epochs},
                     {"eval_every", finetune.train.eval_every},
                     {"val_max", finetune.train.val_max},
                     {"patience", finetune.train.patience},
                     {"time_budget_min", time_budget_min},
                     {"seed", finetune.train.seed},
                     {"split_seed", finetune.split_seed},
                     {"max_tokens", finetune.max_tokens},
                     {"max_train", finetune.max_train},
                     {"min_calls", finetune.min_calls},
                     {"dtype", finetune.dtype},
                     {"adapters_dir", adapters_dir}};
    j["eval"] = eval ? eval_opts.to_json() : nlohmann::json{{"enabled", false}};
    if (eval) {
        j["eval"]["clusters"] = eval_clusters;
        j["eval"]["html"] = html;
        j["eval"]["md"] = md;
    }
    return j;
}

}  // namespace slm::pipeline
