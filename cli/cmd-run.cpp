// `slmctl run [LOGS...] [--config FILE]`: the whole loop (S6) in one command. Reads the config,
// applies the flags over it, shows each stage as it goes and ends with the eval table, the
// comparison with the last cycle and the report paths. The loop is pipeline/.
#include <cstdio>
#include <csignal>

#include "cli/cli.h"
#include "common/common.h"
#include "pipeline/pipeline.h"
#include "store/stages.h"

namespace slm::cli {

namespace {

struct run_args {
    pipeline::run_config c;
    std::string config;
    std::vector<std::string> logs;
    // flags over the config (applied only when given)
    std::string k, embedder, base, kind, html, md;
    int max_steps = 0, max_clusters = 0, max_calls = 0, probe = 0;
    double time_budget = 0;
    bool no_select = false, no_eval = false;
    std::vector<std::string> models;
    std::vector<CLI::Option*> given;
    CLI::App* sub = nullptr;
};
run_args& args() {
    static run_args a;
    return a;
}

bool given(const char* name) {
    auto* o = args().sub->get_option_no_throw(name);
    return o && o->count() > 0;
}

void run_main() {
    apply_globals();
    auto& a = args();
    auto& c = a.c;
    const auto& g = globals();
    if (!a.config.empty()) pipeline::load_config(a.config, c);
    if (!a.logs.empty()) c.collect.paths = a.logs;
    if (given("--k")) c.cluster.k = a.k;
    if (given("--embedder")) c.cluster.embedder = a.embedder;
    if (given("--base")) c.finetune.base = a.base;
    if (given("--max-steps")) c.finetune.train.max_steps = a.max_steps;
    if (given("--clusters")) c.pick.max_clusters = a.max_clusters;
    if (given("--time-budget")) c.time_budget_min = a.time_budget;
    if (given("--max-calls")) c.eval_opts.max_calls = a.max_calls;
    if (given("--kind")) c.eval_opts.kind = a.kind;
    if (given("--probe")) c.select_opts.probe = a.probe;
    if (given("--models")) c.select_opts.model_dirs = a.models;
    if (given("--html")) c.html = a.html;
    if (given("--md")) c.md = a.md;
    if (a.no_select) c.select = false;
    if (a.no_eval) c.eval = false;
    c.finetune.device = g.device;
    c.cluster.device = g.device;
    auto d = store::db::open(g.db_path, store::open_mode::read_write);

    const bool tty = stderr_is_tty() && get_verbosity() >= verbosity::normal && !g.json;
    pipeline::run_hooks h;
    int n = 0;
    h.on_stage_start = [&](const std::string& stage, const std::string& what) {
        ++n;
        log_info("[{}] {}{}", stage, what.empty() ? "" : what + ": ", "...");
    };
    h.on_stage_done = [&](const pipeline::stage_outcome& o) {
        if (tty) fmt::print(stderr, "\r\033[K");
        log_info("[{}] {}{} ({:.1f} s){}", o.stage, o.what.empty() ? "" : o.what + ": ", o.action, o.seconds,
                 o.why.empty() ? "" : " - " + o.why);
    };
    h.on_train_progress = [tty](const finetune::train_progress& p) {
        if (p.step == 0) return;
        if (p.val_loss) {
            if (tty) fmt::print(stderr, "\r\033[K");
            log_info("  step {}/{}: loss {:.4f}, val loss {:.4f}, {:.0f} tok/s", p.step, p.total_steps, p.loss, *p.val_loss,
                     p.tokens_per_s);
        } else if (tty) {
            fmt::print(stderr, "\r\033[K  step {}/{}  loss {:.4f}  {:.0f} tok/s", p.step, p.total_steps, p.loss,
                       p.tokens_per_s);
            std::fflush(stderr);
        }
    };
    auto rep = pipeline::run_pipeline(d, c, h);
    if (!rep.eval.is_null() && !rep.eval.empty()) {
        if (!c.md.empty()) eval::write_report_file(c.md, eval::render_markdown(rep.eval));
        if (!c.html.empty()) eval::write_report_file(c.html, eval::render_html(rep.eval));
    }
    if (g.json) {
        auto j = rep.to_json();
        j["eval"] = rep.eval;
        print_json(j);
    } else {
        int ran = 0, skipped = 0;
        for (const auto& s : rep.stages) {
            ran += s.action == "ran" || s.action == "assigned" || s.action == "resumed";
            skipped += s.action == "skipped" || s.action == "carried";
        }
        fmt::print("run {}: {} stages ran, {} skipped or carried (unchanged inputs), {:.0f} s; clustering run {}\n",
                   rep.run_id, ran, skipped, rep.seconds, rep.cluster_run);
        if (!rep.eval.is_null() && !rep.eval.empty()) fmt::print("\n{}", eval::render_table(rep.eval));
        if (rep.compare.previous_run) {
            fmt::print("\nthis cycle against the last one (run {}):\n", rep.compare.previous_run);
            for (const auto& s : rep.compare.shares)
                fmt::print("  {:<24} replaceable share {:.2f}{}\n", s.value("agent", ""), s.value("share", 0.0),
                           s.contains("previous_share") ? fmt::format(" (was {:.2f})", s["previous_share"].get<double>())
                                                        : " (new)");
            for (const auto& cl : rep.compare.clusters)
                if (cl.contains("previous_replaceable") &&
                    cl["previous_replaceable"].get<bool>() != cl.value("replaceable", false))
                    fmt::print("  cluster {} ({}): {} -> {}\n", cl.value("idx", -1), cl.value("label", ""),
                               cl["previous_replaceable"].get<bool>() ? "replaceable" : "LLM",
                               cl.value("replaceable", false) ? "replaceable" : "LLM");
        }
        if (!c.md.empty()) fmt::print("\nmarkdown report: {}\n", c.md);
        if (!c.html.empty()) fmt::print("HTML report: {}\n", c.html);
    }
    for (const auto& s : rep.stages)
        if (s.action == "interrupted") {
            std::fflush(stdout);
            fmt::print(stderr, "error: run {} interrupted during {} (marked 'interrupted')\n", rep.run_id, s.stage);
            fmt::print(stderr, "hint: run the same command again: finished stages are skipped, a fine-tune resumes "
                               "from its checkpoint\n");
            std::fflush(stderr);
            std::exit(128 + (store::stop_signal() ? store::stop_signal() : SIGINT));
        }
}

}  // namespace

void set_run_command(CLI::App& sub) {
    auto& a = args();
    a.sub = &sub;
    sub.add_option("logs", a.logs, "Log files or directories to collect (override [collect] logs)");
    sub.add_option("--config", a.config, "TOML config (see pipeline/slmctl.example.toml); flags override it")
        ->check(CLI::ExistingFile);
    sub.add_option("--k", a.k, "Clusters: auto or a number ([cluster] k)");
    sub.add_option("--embedder", a.embedder, "tfidf, minilm or model:PATH ([cluster] embedder)");
    sub.add_option("--base", a.base, "Base model for fine-tuning ([finetune] base; default: select's top local pick)");
    sub.add_option("--clusters", a.max_clusters, "Fine-tune at most this many clusters, most suitable first");
    sub.add_option("--max-steps", a.max_steps, "Optimizer steps per adapter ([finetune] max_steps)");
    sub.add_option("--time-budget", a.time_budget, "Minutes per adapter at most ([finetune] time_budget_min)");
    sub.add_option("--models", a.models, "Directories or files with local checkpoints for select (repeatable)");
    sub.add_option("--probe", a.probe, "Calls per cluster each local model answers in select (0: no probe)");
    sub.add_option("--max-calls", a.max_calls, "Test calls per cluster in eval (0: all)");
    sub.add_option("--kind", a.kind, "Eval only test calls whose logged answer is of this kind");
    sub.add_option("--html", a.html, "Write the eval report as one HTML page here");
    sub.add_option("--md", a.md, "Write the eval report as markdown here");
    sub.add_flag("--no-select", a.no_select, "Skip S4 (finetune uses [finetune] base or SmolLM2)");
    sub.add_flag("--no-eval", a.no_eval, "Skip eval");
    sub.callback(run_main);
}

}  // namespace slm::cli
