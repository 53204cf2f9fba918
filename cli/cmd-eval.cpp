// `slmctl eval [--cluster IDX | --all]`: replay held-out calls through the small model (base, icl,
// customized) against the logged LLM answers; table, --json, --md, --html, --fail-under. The
// stage is eval/.
#include <cstdio>

#include "cli/cli.h"
#include "common/common.h"
#include "eval/eval.h"
#include "store/stages.h"

namespace slm::cli {

namespace {

struct eval_args {
    eval::eval_options o;
    int cluster = -1;
    bool all = false, latest = false;
    std::string variants = "base,icl,customized";
    std::vector<std::string> thresholds;
    std::string md, html, fail_under;
    int64_t report = -1;  ///< --report [RUN]: render a stored run (0: the latest)
};
eval_args& args() {
    static eval_args a;
    return a;
}

std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    size_t p = 0;
    while (p <= s.size()) {
        auto q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        auto item = s.substr(p, q - p);
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        while (!item.empty() && item.back() == ' ') item.pop_back();
        if (!item.empty()) out.push_back(item);
        p = q + 1;
    }
    return out;
}

void eval_main() {
    apply_globals();
    auto& a = args();
    auto& o = a.o;
    const auto& g = globals();
    o.device = g.device;
    auto d = store::db::open(g.db_path, a.report >= 0 ? store::open_mode::read_only : store::open_mode::read_write);
    nlohmann::ordered_json report;
    if (a.report >= 0) {
        report = eval::load_report(d, a.report);
    } else {
        if (a.cluster >= 0 && a.all) throw usage_error("--cluster and --all exclude each other", "pick one");
        if (a.cluster >= 0) o.cluster_idx = a.cluster;
        o.variants = split_list(a.variants);
        for (const auto& t : a.thresholds) eval::set_threshold(o.replay.verdicts, t);
        report = eval::run_eval(d, o).to_json();
    }
    if (!a.md.empty()) eval::write_report_file(a.md, eval::render_markdown(report));
    if (!a.html.empty()) eval::write_report_file(a.html, eval::render_html(report));
    if (g.json)
        print_json(report);
    else
        fmt::print("{}", eval::render_table(report));
    if (!a.html.empty() && !g.json) fmt::print("\nHTML report: {}\n", a.html);
    if (!a.fail_under.empty()) {
        auto fails = eval::check_fail_under(report, a.fail_under);
        if (!fails.empty()) {
            std::fflush(stdout);
            for (const auto& f : fails) fmt::print(stderr, "fail-under: {}\n", f);
            std::fflush(stderr);
            std::exit(1);
        }
    }
}

}  // namespace

void set_eval_command(CLI::App& sub) {
    auto& a = args();
    auto& o = a.o;
    auto& r = o.replay;
    sub.add_option("--cluster", a.cluster, "Evaluate one cluster (the id column of `slmctl cluster`)");
    sub.add_flag("--all", a.all, "Evaluate every cluster (the default)");
    sub.add_option("--run", o.cluster_run, "Clustering run (default: the latest ok one)");
    sub.add_option("--base", o.base, "Base model: GGUF file or HF directory (default: the adapters' base, else SmolLM2)");
    sub.add_option("--adapter", o.adapter, "Adapter for --cluster: PEFT dir or LoRA GGUF (default: the newest)");
    sub.add_flag("--latest", a.latest, "Use each cluster's newest adapter (the default)");
    sub.add_option("--variants", a.variants, "Which of base, icl, customized to run")->capture_default_str();
    sub.add_option("--max-calls", o.max_calls, "At most this many test calls per cluster (0: all; a seeded sample)")
        ->capture_default_str();
    sub.add_option("--min-calls", o.min_calls, "Clusters with fewer test calls are listed, not evaluated")
        ->capture_default_str();
    sub.add_option("--kind", o.kind, "Only test calls whose logged answer is a tool_call, json, code, prose or empty");
    sub.add_option("--icl-k", o.icl_k, "In-context examples for the icl variant (1-3)")->capture_default_str();
    sub.add_option("--max-new-tokens", r.max_new_tokens, "At most this many new tokens per answer")->capture_default_str();
    sub.add_flag("!--no-reference-cap", r.cap_by_reference,
                 "Do not cap new tokens at 1.5x the longest logged answer of the batch + 16");
    sub.add_option("--max-prompt-tokens", r.max_prompt_tokens, "Prompt budget per call (oldest history cut first)")
        ->capture_default_str();
    sub.add_option("--batch-size", r.batch_size, "Prompts per generation batch")->capture_default_str();
    sub.add_flag("!--no-share-prefixes", r.prefix.enabled,
                 "Prefill every prompt whole (default: a prompt prefix the calls share is prefilled once)");
    sub.add_option("--min-shared-tokens", r.prefix.min_tokens, "Shortest prompt prefix worth prefilling once")
        ->capture_default_str();
    sub.add_option("--prefix-cache-mb", r.prefix.cache_mb, "Memory for prefix KV caches kept across batches (0: none)")
        ->capture_default_str();
    sub.add_option("--split-seed", o.split_seed, "Seed of the train/val/test split")->capture_default_str();
    sub.add_option("--threshold", a.thresholds,
                   "Verdict threshold on the lower 95% bound: KIND=X for tool_call, json, code, prose, empty, "
                   "judge (prose under --judge); min_calls=N (repeatable)");
    sub.add_option("--prices", o.prices_path, "Price table JSON overlaid on the built-in one (eval/prices.json format)");
    sub.add_option("--llm-model", o.llm_model, "Price the LLM side as this model (default: each call's logged model)");
    sub.add_option("--md", a.md, "Also write the report as Markdown (for a pull-request comment)");
    sub.add_option("--html", a.html, "Also write a self-contained HTML report with charts");
    sub.add_option("--fail-under", a.fail_under,
                   "Exit 1 when below: X or share=X (total share), AGENT=X, or base|icl|customized=X (main metric, "
                   "every cluster)");
    sub.add_option("--report", a.report, "Render a stored eval run instead of running one (0: the latest)")
        ->expected(0, 1)
        ->default_str("0");
    sub.add_option("--dump-prompts", r.dump_prompts,
                   "Append each generation batch (prompt ids, token limit) as JSON lines (bench/eval)");
    sub.add_option("--dtype", o.dtype, "Base weights: auto, fp32, bf16")->capture_default_str();
    sub.add_option("--judge", o.judge.url,
                   "LLM judge for prose answers: an OpenAI-compatible chat-completions server over http:// "
                   "(http://HOST:PORT, .../v1 or .../v1/chat/completions; off by default)");
    sub.add_option("--judge-model", o.judge.model, "The judge request's model name")->capture_default_str();
    sub.add_option("--judge-key", o.judge.key_env,
                   "Name of an environment variable holding the judge's bearer key (none sent by default)");
    sub.add_option("--judge-timeout", o.judge.timeout_s, "Seconds per judgement")->capture_default_str();
    sub.callback(eval_main);
}

}  // namespace slm::cli
