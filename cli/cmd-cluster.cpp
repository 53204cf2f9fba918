// `slmctl cluster`: cluster the stored calls into recurring tasks (S3) and print the table, or
// show / export a stored run (--show ID, --run R, --members FILE). Parsing and printing only.
#include <cmath>
#include <fstream>
#include <map>

#include "cli/cli.h"
#include "clustering/clustering.h"
#include "common/common.h"
#include "store/stages.h"

namespace slm::cli {

namespace {

struct cluster_options {
    clustering::cluster_params params;
    int show = -2;             ///< --show ID (-1 = the noise group); -2 = not asked
    int64_t run = 0;           ///< --run R: a stored run instead of a new one
    std::string members_file;  ///< --members FILE
    int samples = 5;           ///< sample calls printed by --show
};

cluster_options& opts() {
    static cluster_options o;
    return o;
}

std::string one_line(std::string s, size_t max) {
    for (auto& ch : s)
        if (ch == '\n' || ch == '\r' || ch == '\t') ch = ' ';
    if (s.size() > max) {
        size_t e = max;
        while (e > 0 && (static_cast<unsigned char>(s[e]) & 0xC0) == 0x80) --e;
        s = s.substr(0, e) + "...";
    }
    return s;
}

std::string terms_of(const nlohmann::json& stats, size_t n) {
    std::string out;
    if (!stats.is_object() || !stats.contains("top_terms")) return out;
    size_t i = 0;
    for (const auto& t : stats["top_terms"]) {
        if (i++ >= n) break;
        out += (out.empty() ? "" : ", ") + t.value("term", std::string());
    }
    return out;
}

/// "+struct +repet -short-out": the factors in order of influence, abbreviated.
std::string why_of(const nlohmann::json& reasons) {
    static const std::map<std::string, std::string> abbrev = {{"structured", "struct"},
                                                              {"repetitive", "repet"},
                                                              {"bounded_output", "short-out"},
                                                              {"bounded_context", "short-ctx"}};
    std::string out;
    if (!reasons.is_array()) return out;
    for (const auto& r : reasons) {
        std::string f = r.value("factor", std::string());
        if (f == "noise") return "noise";
        auto it = abbrev.find(f);
        out += (out.empty() ? "" : " ") + r.value("effect", std::string("?")) + (it != abbrev.end() ? it->second : f);
    }
    return out;
}

nlohmann::json cluster_json(const clustering::cluster_info& c) {
    return {{"id", c.idx},
            {"cluster_row", c.id},
            {"label", c.label},
            {"size", c.size},
            {"share", c.share},
            {"suitability", std::isnan(c.suitability) ? nlohmann::json(nullptr) : nlohmann::json(c.suitability)},
            {"reasons", c.reasons},
            {"stats", c.stats}};
}

void print_table(const clustering::run_result& r) {
    auto& g = globals();
    if (g.json) {
        nlohmann::json cl = nlohmann::json::array();
        for (const auto& c : r.clusters) cl.push_back(cluster_json(c));
        print_json({{"run_id", r.run_id}, {"summary", r.summary}, {"clusters", cl}});
        return;
    }
    fmt::print("run {}: {} calls in {} clusters, {} noise ({} embedder)\n", r.run_id, r.calls, r.k, r.noise,
               r.embedder.empty() ? "?" : r.embedder);
    fmt::print("{:>4}  {:<40} {:>7} {:>6} {:>5}  {:<34} {}\n", "id", "label", "size", "share", "suit", "why",
               "top terms");
    for (const auto& c : r.clusters) {
        std::string suit = std::isnan(c.suitability) ? "-" : fmt::format("{:.2f}", c.suitability);
        fmt::print("{:>4}  {:<40} {:>7} {:>5.1f}% {:>5}  {:<34} {}\n", c.idx, one_line(c.label, 40), c.size,
                   100 * c.share, suit, why_of(c.reasons), terms_of(c.stats, 6));
    }
}

void print_show(store::db& d, const clustering::run_result& r, int idx, int samples) {
    auto& g = globals();
    const clustering::cluster_info* c = nullptr;
    for (const auto& x : r.clusters)
        if (x.idx == idx) c = &x;
    if (!c) {
        std::string ids;
        for (const auto& x : r.clusters) ids += (ids.empty() ? "" : ", ") + std::to_string(x.idx);
        throw user_error(fmt::format("run {} has no cluster {}", r.run_id, idx), fmt::format("its clusters are {}", ids));
    }
    auto calls = clustering::cluster_samples(d, r.run_id, idx, samples);
    if (g.json) {
        nlohmann::json j = cluster_json(*c);
        j["run_id"] = r.run_id;
        j["samples"] = nlohmann::json::array();
        for (const auto& s : calls)
            j["samples"].push_back({{"call_id", s.call_id},
                                    {"workload_id", s.workload_id},
                                    {"similarity", s.similarity},
                                    {"task_text", s.task_text},
                                    {"response", s.response}});
        print_json(j);
        return;
    }
    const auto& st = c->stats;
    fmt::print("cluster {} of run {}: {}\n", c->idx, r.run_id, c->label);
    fmt::print("  size          {} calls ({:.1f}% of traffic)\n", c->size, 100 * c->share);
    if (!std::isnan(c->suitability)) fmt::print("  suitability   {:.2f}\n", c->suitability);
    if (c->reasons.is_array())
        for (const auto& x : c->reasons)
            fmt::print("    {} {:<16} {:.2f} x {:.2f}  {}\n", x.value("effect", "?"), x.value("factor", ""),
                       x.value("score", 0.0), x.value("weight", 0.0), x.value("evidence", ""));
    if (st.is_object()) {
        fmt::print("  top terms     {}\n", terms_of(st, 8));
        std::string wl;
        const auto workloads = st.value("workloads", nlohmann::json::array());
        for (const auto& w : workloads)
            wl += fmt::format("{}{} {:.0f}%", wl.empty() ? "" : ", ", w.value("workload_id", ""), 100 * w.value("share", 0.0));
        fmt::print("  workloads     {}\n", wl);
        std::string kinds;
        const auto kind_share = st.value("response_kinds", nlohmann::json::object());
        for (const auto& [k, v] : kind_share.items())
            kinds += fmt::format("{}{} {:.0f}%", kinds.empty() ? "" : ", ", k, 100 * v.get<double>());
        fmt::print("  responses     {}\n", kinds);
        auto pt = st.value("prompt_tokens", nlohmann::json::object()), ct = st.value("completion_tokens", nlohmann::json::object());
        fmt::print("  prompt tok    p50 {:.0f}  p90 {:.0f}  p99 {:.0f}\n", pt.value("p50", 0.0), pt.value("p90", 0.0), pt.value("p99", 0.0));
        fmt::print("  output tok    p50 {:.0f}  p90 {:.0f}  p99 {:.0f}\n", ct.value("p50", 0.0), ct.value("p90", 0.0), ct.value("p99", 0.0));
        fmt::print("  repetitive    {:.2f} (mean pairwise similarity of responses)\n", st.value("repetitiveness", 0.0));
    }
    fmt::print("  sample calls (closest to the centroid first):\n");
    for (const auto& s : calls) {
        fmt::print("  - call {} [{}] sim {:.2f}\n", s.call_id, s.workload_id, s.similarity);
        fmt::print("      task:     {}\n", one_line(s.task_text, 160));
        fmt::print("      response: {}\n", one_line(s.response, 160));
    }
}

/// One JSON line per call; from the run just made, or read back for a stored run.
void write_members(store::db& d, const clustering::run_result& r, const std::string& path) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw user_error(fmt::format("cannot write {}", path), "check the directory exists and is writable");
    std::vector<clustering::member> stored;
    const auto& members = r.members.empty() ? (stored = clustering::load_members(d, r.run_id)) : r.members;
    auto str = [](const std::string& s) { return s.empty() ? std::string("null") : nlohmann::json(s).dump(); };
    std::string buf;
    for (const auto& m : members) {
        fmt::format_to(std::back_inserter(buf), "{{\"call_id\":{},\"response_id\":{},\"workload_id\":{},\"cluster\":{}}}\n",
                       m.call_id, str(m.response_id), str(m.workload_id), m.cluster);
        if (buf.size() > (1 << 20)) {
            f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
            buf.clear();
        }
    }
    f.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    f.close();
    if (!f) throw user_error(fmt::format("writing {} failed", path), "check free disk space");
    log_verbose("wrote {} members to {}", members.size(), path);
}

void cluster_main() {
    apply_globals();
    auto& g = globals();
    auto& o = opts();
    const bool stored = o.run > 0 || o.show != -2;
    auto d = store::db::open(g.db_path, stored ? store::open_mode::read_only : store::open_mode::read_write);
    clustering::run_result r;
    if (stored) {
        int64_t id = o.run > 0 ? o.run : clustering::latest_run(d);
        if (id == 0) {
            // only 'ok' runs are shown: say so when the others did not finish
            auto runs = store::list_runs(d, "cluster");
            throw user_error(fmt::format("no finished clustering run in {}", g.db_path),
                             runs.empty() ? "run `slmctl cluster` first"
                                          : fmt::format("{} cluster run{} failed or did not finish (see `slmctl db info`): "
                                                        "run `slmctl cluster` again",
                                                        runs.size(), runs.size() == 1 ? "" : "s"));
        }
        r = clustering::load_run(d, id);
    } else {
        o.params.device = g.device;
        r = clustering::run(d, o.params);
    }
    if (!o.members_file.empty()) write_members(d, r, o.members_file);
    if (o.show != -2)
        print_show(d, r, o.show, o.samples);
    else
        print_table(r);
}

}  // namespace

void set_cluster_command(CLI::App& sub) {
    auto& o = opts();
    auto& p = o.params;
    sub.add_option("--k", p.k, "Number of clusters, or `auto`: the fewest in --k-min..--k-max within 0.01 of the best silhouette")->capture_default_str();
    sub.add_option("--k-min", p.k_min, "Smallest k tried by --k auto")->capture_default_str();
    sub.add_option("--k-max", p.k_max, "Largest k tried by --k auto")->capture_default_str();
    sub.add_option("--embedder", p.embedder, "tfidf | minilm | model:PATH")->capture_default_str();
    sub.add_option("--workload", p.workload, "Only cluster the calls of this workload (agent node)");
    sub.add_option("--seed", p.seed, "Seed for k-means and samples (same seed, same clusters)")->capture_default_str();
    sub.add_option("--min-cluster-size", p.min_cluster_size,
                   "Smaller clusters are dissolved into their neighbours or noise (0: max(5, 0.2% of calls))")
        ->capture_default_str();
    sub.add_option("--noise-similarity", p.noise_similarity,
                   "Calls below this cosine to every cell of their node are noise (cluster -1)")
        ->capture_default_str();
    sub.add_flag_callback("--ignore-workload", [&p] { p.by_workload = false; },
                          "Let calls of different workloads (agent nodes) share a cluster (default: never)");
    sub.add_option("--tfidf-dim", p.tfidf.dim, "tfidf: embedding dimension (PCA output)")->capture_default_str();
    sub.add_option("--tfidf-char-weight", p.tfidf.char_weight,
                   "tfidf: share of character 4-grams in the text's weight (0 = words only, about 2x faster)")
        ->capture_default_str();
    sub.add_flag("--include-system", p.text.include_system,
                 "Also embed each call's system prompt (off by default: it names the agent node, not the task)");
    sub.add_option("--show", o.show, "Show one cluster of the latest run (or --run) with sample calls; -1 = noise");
    sub.add_option("--samples", o.samples, "Sample calls printed by --show")->capture_default_str();
    sub.add_option("--run", o.run, "Print or export this stored clustering run instead of clustering again");
    sub.add_option("--members", o.members_file,
                   "Write one JSON line per call: {call_id, response_id, workload_id, cluster}");
    sub.callback(cluster_main);
}

}  // namespace slm::cli
