// `slmctl select [--cluster IDX | --all]`: rank candidate small models per cluster (S4). Parses the
// constraints, calls select::run_select, prints a table per cluster or the report as JSON.
#include "cli/cli.h"
#include "common/common.h"
#include "select/select.h"

namespace slm::cli {

namespace {

struct select_args {
    select::select_options o;
    int cluster = -1;             ///< --cluster: idx in the clustering run
    CLI::Option* cluster_opt = nullptr;
    bool all = false;
    std::string max_params, max_memory, licenses;
    bool no_cache = false;
    int top = 5;                  ///< table rows of ranked models per cluster (0: all)
};
select_args& args() {
    static select_args a;
    return a;
}

std::string human_count(int64_t p) {
    if (p <= 0) return "?";
    if (p >= 999'500'000) return fmt::format("{:.1f}B", p / 1e9);
    return fmt::format("{:.0f}M", p / 1e6);
}

void print_table(const select::select_report& rep, int top) {
    fmt::print("select run {} on clustering run {}; local checkpoints: {}\n", rep.run_id, rep.cluster_run,
               rep.local.empty() ? std::string("none") : fmt::format("{}", fmt::join(rep.local, ", ")));
    for (const auto& c : rep.clusters) {
        const auto& n = c.needs;
        fmt::print("\ncluster {} '{}': {} calls ({:.1f}%), needed context {:.0f} tokens, {:.0f}% tool calls\n", c.idx,
                   c.label, n.size, 100 * n.share, n.needed_context, 100 * n.tool_share);
        fmt::print("  {:>4}  {:<34} {:>6} {:>5}  {}\n", "rank", "model", "params", "score", "why");
        int shown = 0, ranked = 0;
        for (const auto& r : c.candidates) {
            if (r.filtered) continue;
            ++ranked;
            if (top > 0 && shown >= top && r.c.path.empty()) continue;  // local ones always show
            ++shown;
            std::string name = r.c.name + (r.c.path.empty() ? "" : " *");
            fmt::print("  {:>4}  {:<34} {:>6} {:>5.3f}  {}\n", r.rank, name, human_count(r.c.params), r.score, r.why);
        }
        if (ranked > shown) fmt::print("  ({} more ranked; --top 0 lists all, --json gives every factor)\n", ranked - shown);
        if (ranked == 0) fmt::print("  no candidate passes the constraints\n");
        for (const auto& r : c.candidates)
            if (r.filtered)
                fmt::print("  {:>4}  {:<34} {:>6} {:>5}  filtered: {}\n", "-", r.c.name + (r.c.path.empty() ? "" : " *"),
                           human_count(r.c.params), "", r.why);
    }
    fmt::print("\n* on disk here (probed when loadable); finetune --cluster ID takes the best of those by default\n");
}

void select_main() {
    apply_globals();
    auto& a = args();
    auto& o = a.o;
    const auto& g = globals();
    const bool one = a.cluster_opt && a.cluster_opt->count() > 0;
    if (a.all && one)
        throw usage_error("give either --cluster IDX or --all, not both",
                          "without either, select ranks every cluster (as --all)");
    if (one) o.cluster_idx = a.cluster;
    if (!a.max_params.empty()) o.limits.max_params = select::parse_param_count(a.max_params, "--max-params");
    if (!a.max_memory.empty()) o.limits.max_memory_bytes = select::parse_memory_bytes(a.max_memory, "--max-memory");
    if (!a.licenses.empty()) o.limits.licenses = select::parse_license_list(a.licenses, "--license");
    o.model_cache = !a.no_cache;
    o.device = g.device;
    auto d = store::db::open(g.db_path, store::open_mode::read_write);
    auto rep = select::run_select(d, o);
    if (g.json)
        print_json(rep.to_json());
    else
        print_table(rep, a.top);
}

}  // namespace

void set_select_command(CLI::App& sub) {
    auto& a = args();
    auto& o = a.o;
    a.cluster_opt = sub.add_option("--cluster", a.cluster, "One cluster (the id column of `slmctl cluster`)");
    sub.add_flag("--all", a.all, "Every cluster of the clustering run (the default)");
    sub.add_option("--run", o.cluster_run, "Clustering run (default: the latest ok one)");
    sub.add_option("--max-params", a.max_params, "Most parameters: 3B, 1.5B, 500M");
    sub.add_option("--max-memory", a.max_memory, "Most memory at run time (4-bit weights + 20%): 8GB, 512MB, 4GiB");
    sub.add_option("--license", a.licenses, "Allowed licences, comma-separated: apache-2.0,mit,llama3.2");
    sub.add_option("--models,--model", o.model_dirs, "Directory (or file) with local checkpoints: GGUF files, HF directories (repeatable)");
    sub.add_flag("--no-cache", a.no_cache, "Do not look in the model cache ($SLMCTL_MODELS or ~/.cache/slmctl/models)");
    sub.add_option("--probe", o.probe, "Calls per cluster each local model answers zero-shot (0: no probe)")
        ->capture_default_str();
    sub.add_option("--probe-max-tokens", o.probe_max_tokens, "Most new tokens per probed answer")->capture_default_str();
    sub.add_option("--probe-max-prompt", o.probe_max_prompt, "Prompt token budget per probed call")->capture_default_str();
    sub.add_option("--catalog", o.catalog_path, "Candidate catalog JSON (default: the built-in select/catalog.json)");
    sub.add_option("--dtype", o.dtype, "Weights of probed models: auto, fp32, bf16")->capture_default_str();
    sub.add_option("--top", a.top, "Ranked models shown per cluster in the table (0: all)")->capture_default_str();
    sub.callback(select_main);
}

}  // namespace slm::cli
