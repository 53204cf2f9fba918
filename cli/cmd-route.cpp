// `slmctl route [FILES...]`: each request (one JSON object per line, files or stdin) goes to its
// cluster's approved adapter or the LLM, with the similarity and the reason; --export writes the
// routing table. The routing is pipeline/route.cpp.
#include <fstream>
#include <iostream>

#include "cli/cli.h"
#include "common/common.h"
#include "eval/eval.h"
#include "pipeline/pipeline.h"
#include "store/stages.h"

namespace slm::cli {

namespace {

struct route_args {
    std::vector<std::string> inputs;
    int64_t run = 0;
    std::string workload, export_file;
    double min_margin = 0.05;
};
route_args& args() {
    static route_args a;
    return a;
}

void route_main() {
    apply_globals();
    auto& a = args();
    const auto& g = globals();
    auto d = store::db::open(g.db_path, store::open_mode::read_only);
    auto r = pipeline::router::load(d, a.run);
    if (!a.export_file.empty()) {
        eval::write_report_file(a.export_file, r.table().dump(2) + "\n");
        log_info("routing table of clustering run {} (eval run {}) written to {}", r.cluster_run(), r.eval_run(),
                 a.export_file);
    }
    if (a.inputs.empty() && !a.export_file.empty()) return;
    if (a.inputs.empty()) a.inputs.push_back("-");
    nlohmann::json all = nlohmann::json::array();
    std::map<std::string, int64_t> counts;
    for (const auto& in : a.inputs) {
        std::ifstream f;
        if (in != "-") {
            f.open(in);
            if (!f) throw user_error(fmt::format("cannot read {}", in));
        }
        std::istream& is = in == "-" ? std::cin : f;
        std::string line;
        int64_t ln = 0;
        while (std::getline(is, line)) {
            ++ln;
            if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
            auto dec = r.route(line, fmt::format("{}:{}", in == "-" ? "stdin" : in, ln), a.workload, a.min_margin);
            ++counts[dec.target];
            if (g.json) {
                all.push_back(dec.to_json());
            } else {
                fmt::print("{}\t{}\t{:.2f}\t{}\t{}\n", dec.source, dec.idx, dec.similarity,
                           dec.target == "adapter" ? "adapter:" + dec.adapter_name : dec.target, dec.reason);
            }
        }
    }
    if (g.json) {
        print_json(all);
    } else {
        std::string s;
        for (const auto& [t, n] : counts) s += fmt::format("{}{} {}", s.empty() ? "" : ", ", n, t);
        log_info("routed: {}", s.empty() ? "nothing" : s);
    }
}

}  // namespace

void set_route_command(CLI::App& sub) {
    auto& a = args();
    sub.add_option("inputs", a.inputs, "Files of requests, one JSON object per line ('-' or none: stdin)");
    sub.add_option("--run", a.run, "Clustering run to route with (default: the latest ok one)");
    sub.add_option("--workload", a.workload, "The agent node of requests that do not name one (workload_id)");
    sub.add_option("--min-margin", a.min_margin,
                   "Send to an adapter only when its cluster is this much closer (cosine) than the next one")
        ->capture_default_str();
    sub.add_option("--export", a.export_file, "Write the routing table (cluster -> target, adapter, thresholds) as JSON");
    sub.callback(route_main);
}

}  // namespace slm::cli
