// `slmctl collect PATH...` (S1+S2): binds flags to collector::collect_params, runs the collector and
// prints its summary as a table or --json. Exit 130/143 when interrupted (SIGINT/SIGTERM), 1 with
// --strict and quarantines.
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include "cli/cli.h"
#include "collector/collector.h"
#include "common/common.h"
#include "store/store.h"

namespace slm::cli {

namespace {

struct collect_cli {
    collector::collect_params p;
    std::string scrub = "on";
};

collect_cli& opts() {
    static collect_cli o;
    return o;
}

void print_counts(const std::map<std::string, int64_t>& m) {
    for (const auto& [k, v] : m) fmt::print("    {:<24}{:>12}\n", k, v);
}

void print_summary(const collector::collect_summary& s) {
    double mb = static_cast<double>(s.bytes) / 1e6;
    fmt::print("collect run {}: {}, {} file{}, {:.1f} MB, {} lines in {:.2f} s ({:.1f} MB/s, {:.0f} lines/s)\n",
               s.run_id, s.status, s.files, s.files == 1 ? "" : "s", mb, s.lines, s.seconds,
               s.seconds > 0 ? mb / s.seconds : 0.0, s.seconds > 0 ? static_cast<double>(s.lines) / s.seconds : 0.0);
    fmt::print("  {:<26}{:>12}\n", "ingested", s.ingested);
    fmt::print("  {:<26}{:>12}\n", "duplicate", s.duplicate);
    fmt::print("  {:<26}{:>12}", "quarantined", s.quarantined);
    if (s.quarantined) fmt::print("   ({} new)", s.quarantine_new);
    fmt::print("\n");
    print_counts(s.quarantined_by_reason);
    fmt::print("  {:<26}{:>12}\n", "flagged", s.flagged);
    print_counts(s.flags);
    int64_t placeholders = 0;
    for (const auto& [k, v] : s.scrubbed_by_kind) placeholders += v;
    fmt::print("  {:<26}{:>12}\n", "scrubbed (placeholders)", placeholders);
    print_counts(s.scrubbed_by_kind);
    if (s.blank) fmt::print("  {:<26}{:>12}\n", "blank lines", s.blank);
    if (s.skipped_spans) fmt::print("  {:<26}{:>12}\n", "non-LLM spans skipped", s.skipped_spans);
    if (!s.by_format.empty()) {
        fmt::print("  formats\n");
        print_counts(s.by_format);
    }
}

void collect_main() {
    apply_globals();
    auto& g = globals();
    collector::collect_params p = opts().p;
    p.scrub = opts().scrub == "on";
    p.threads = num_threads();
    if (!p.scrub) log_warn("--scrub off: calls are stored with their PII and secrets (recorded in the run's params)");
    collector::collect_summary s;
    {
        auto d = store::db::open(g.db_path, store::open_mode::read_write);
        s = collector::collect(d, p);
    }  // closed: everything read before a signal is committed
    if (g.json)
        print_json(collector::to_json(s));
    else
        print_summary(s);
    if (s.status == "interrupted") {
        // 128 + signal, as a shell reports a command stopped by it; main()'s handler knows only
        // the exit codes 1-3, so this path reports and exits itself
        const int sig = store::stop_signal() ? store::stop_signal() : SIGINT;
        std::fflush(stdout);
        fmt::print(stderr, "error: collect interrupted after {} lines (run {} marked 'interrupted')\n", s.lines, s.run_id);
        fmt::print(stderr, "hint: re-run the same command to finish: calls already stored are skipped\n");
        std::fflush(stderr);
        std::exit(128 + sig);
    }
    if (p.strict && s.quarantined > 0)
        throw user_error(fmt::format("{} record{} quarantined (--strict)", s.quarantined, s.quarantined == 1 ? "" : "s"),
                         fmt::format("see them with: sqlite3 {} \"SELECT source_file, source_line, reason, detail "
                                     "FROM quarantine WHERE run_id = {}\"",
                                     g.db_path, s.run_id));
}

}  // namespace

void set_collect_command(CLI::App& sub) {
    auto& o = opts();
    sub.add_option("paths", o.p.paths, "Log files, directories (recursive: *.jsonl *.ndjson *.json *.log *.gz), or - for stdin")
        ->required()
        ->expected(1, -1);
    sub.add_option("--format", o.p.format, "Record format; auto detects it per line")
        ->check(CLI::IsMember({"auto", "flywheel", "pair", "finetune", "legacy", "otel", "sharegpt", "alpaca"}))
        ->capture_default_str();
    sub.add_option("--workload", o.p.workload, "Workload (agent node) for every call, overriding the records'");
    sub.add_option("--client", o.p.client, "Client id for every call, overriding the records'");
    sub.add_option("--scrub", o.scrub, "Scrub PII and secrets before storing (off must be asked for)")
        ->check(CLI::IsMember({"on", "off"}))
        ->capture_default_str();
    sub.add_flag("--strict", o.p.strict, "Exit 1 when any record was quarantined");
    sub.add_option("--batch", o.p.batch, "Input lines per transaction")->check(CLI::PositiveNumber)->capture_default_str();
    sub.add_option("--max-line-bytes", o.p.max_line_bytes, "Longer lines are quarantined as line_too_long")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    sub.callback(collect_main);
}

}  // namespace slm::cli
