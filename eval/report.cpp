// The eval report as a terminal table, Markdown, and a self-contained HTML page with inline SVG;
// `--fail-under` checks. Everything reads the report JSON (eval_report::to_json or a stored
// run's summary), so a stored run renders the same as a fresh one.
#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/eval.h"

namespace slm::eval {

namespace {

using ojson = nlohmann::ordered_json;

std::string pct(double x) { return fmt::format("{:.1f}%", 100 * x); }

const ojson* variant_of(const ojson& cluster, const std::string& name) {
    if (!cluster.contains("variants")) return nullptr;
    for (const auto& v : cluster["variants"])
        if (v.value("variant", "") == name) return &v;
    return nullptr;
}

std::string cell(const ojson& cluster, const std::string& name) {
    const auto* v = variant_of(cluster, name);
    if (!v) return "-";
    if (v->value("n", 0) == 0) return "skipped";
    return fmt::format("{:.2f} [{:.2f},{:.2f}]", v->value("value", 0.0), v->value("lo", 0.0), v->value("hi", 0.0));
}

// A variant's secondary interval `key` (json_valid, schema_valid, judge) as a table cell.
std::string sub_cell(const ojson& cluster, const std::string& name, const char* key) {
    const auto* v = variant_of(cluster, name);
    if (!v || !v->contains(key)) return "-";
    const auto& x = (*v)[key];
    return fmt::format("{:.2f} [{:.2f},{:.2f}]", x.value("value", 0.0), x.value("lo", 0.0), x.value("hi", 0.0));
}

bool any_variant_has(const ojson& cluster, const char* key) {
    if (!cluster.contains("variants")) return false;
    for (const auto& v : cluster["variants"])
        if (v.contains(key)) return true;
    return false;
}

// How many calls the variants' `key` interval rests on (the largest over variants).
int64_t sub_n(const ojson& cluster, const char* key) {
    int64_t n = 0;
    if (cluster.contains("variants"))
        for (const auto& v : cluster["variants"])
            if (v.contains(key)) n = std::max<int64_t>(n, v[key].value("n", v.value("n", int64_t{0})));
    return n;
}

// Structured-output and judge lines under a cluster: {key, label}.
const std::pair<const char*, const char*> k_sub_metrics[] = {
    {"json_valid", "JSON validity"}, {"schema_valid", "schema validity"}, {"judge", "judge score"}};

std::string html_escape(std::string_view s) {
    std::string o;
    for (char c : s) switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o.push_back(c);
        }
    return o;
}

std::string shorten(const std::string& s, size_t n) {
    if (s.size() <= n) return s;
    size_t cut = n;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
    return s.substr(0, cut) + "…";
}

const char* k_colors[] = {"#8c8c8c", "#e0a030", "#3070c0"};  // base, icl, customized
const char* k_names[] = {"base", "icl", "customized"};

}  // namespace

std::string render_table(const ojson& r) {
    std::string out;
    out += fmt::format("eval run {} on clustering run {}, base {}\n\n", r.value("run_id", 0), r.value("cluster_run", 0),
                       r.value("base", ""));
    out += fmt::format("{:>4}  {:<28} {:>6} {:>5}  {:<9} {:<19} {:<19} {:<19} {}\n", "id", "cluster", "calls", "test",
                       "kind", "base", "icl", "customized", "verdict");
    for (const auto& c : r["clusters"]) {
        std::string verdict = c.value("replaceable", false) ? "REPLACEABLE (" + c.value("chosen", "") + ")" : "keep LLM";
        if (c.contains("note") && c.value("evaluated", 0) == 0) verdict = c["note"].get<std::string>();
        out += fmt::format("{:>4}  {:<28} {:>6} {:>5}  {:<9} {:<19} {:<19} {:<19} {}\n", c.value("idx", 0),
                           shorten(c.value("label", ""), 28), c.value("volume", 0), c.value("evaluated", 0),
                           c.value("kind", ""), cell(c, "base"), cell(c, "icl"), cell(c, "customized"), verdict);
        // a mixed cluster: each kind of logged answer on its own line
        std::map<std::string, std::map<std::string, std::string>> kinds;  // kind -> variant -> cell
        std::map<std::string, std::pair<int, std::string>> kn;            // kind -> (n, metric)
        if (c.contains("variants"))
            for (const auto& v : c["variants"])
                if (v.contains("by_kind"))
                    for (const auto& [k, x] : v["by_kind"].items()) {
                        kinds[k][v.value("variant", "")] =
                            fmt::format("{:.2f} [{:.2f},{:.2f}]", x.value("value", 0.0), x.value("lo", 0.0), x.value("hi", 0.0));
                        kn[k] = {x.value("n", 0), x.value("metric", "")};
                    }
        for (const auto& [k, cells] : kinds) {
            auto get = [&](const char* v) { auto it = cells.find(v); return it == cells.end() ? std::string("-") : it->second; };
            out += fmt::format("{:>4}  {:<28} {:>6} {:>5}  {:<9} {:<19} {:<19} {:<19} {}\n", "", "  of which " + k, "",
                               kn[k].first, k, get("base"), get("icl"), get("customized"), kn[k].second);
        }
        // JSON validity, schema validity (calls whose request had a schema), the judge's score
        for (const auto& [key, label] : k_sub_metrics)
            if (any_variant_has(c, key))
                out += fmt::format("{:>4}  {:<28} {:>6} {:>5}  {:<9} {:<19} {:<19} {:<19}\n", "", std::string("  ") + label,
                                   "", sub_n(c, key), "", sub_cell(c, "base", key), sub_cell(c, "icl", key),
                                   sub_cell(c, "customized", key));
    }
    out += "\nmain metric per kind: tool_call name+args accuracy, json schema validity where the requests had a "
           "response_format schema (else JSON validity), code/prose chrF (the judge's score with --judge), empty "
           "exact match; [95% interval]\n\n";
    out += fmt::format("{:<16} {:>7} {:>12}  {:<24} {:>12} {:>12}\n", "agent", "calls", "replaceable", "share [95%]",
                       "LLM $", "saving $");
    for (const auto& s : r["shares"]) {
        out += fmt::format("{:<16} {:>7} {:>12}  {:<24} {:>12.4f} {:>12.4f}\n", s.value("agent", ""), s.value("calls", 0),
                           s.value("replaceable_calls", 0),
                           fmt::format("{} [{}, {}]", pct(s["share"].value("value", 0.0)), pct(s["share"].value("lo", 0.0)),
                                       pct(s["share"].value("hi", 0.0))),
                           s["cost"].value("llm_usd", 0.0), s["cost"].value("saving_usd", 0.0));
    }
    if (r.contains("previous") && r["previous"].contains("shares")) {
        for (const auto& s : r["previous"]["shares"])
            if (s.value("agent", "") == "total")
                out += fmt::format("\nprevious eval run {}: total share {}\n", r["previous"].value("run_id", 0),
                                   pct(s["share"].value("value", 0.0)));
    }
    return out;
}

std::string render_markdown(const ojson& r) {
    std::string out = fmt::format("### slmctl eval (run {}, clustering run {})\n\nBase model: `{}`\n\n", r.value("run_id", 0),
                                  r.value("cluster_run", 0), r.value("base", ""));
    out += "| agent | calls | replaceable | share [95%] | LLM cost $ | saving $ |\n|---|---:|---:|---|---:|---:|\n";
    for (const auto& s : r["shares"])
        out += fmt::format("| {} | {} | {} | {} [{}, {}] | {:.4f} | {:.4f} |\n", s.value("agent", ""), s.value("calls", 0),
                           s.value("replaceable_calls", 0), pct(s["share"].value("value", 0.0)),
                           pct(s["share"].value("lo", 0.0)), pct(s["share"].value("hi", 0.0)),
                           s["cost"].value("llm_usd", 0.0), s["cost"].value("saving_usd", 0.0));
    out += "\n| cluster | calls | test | kind | metric | base | icl | customized | verdict |\n"
           "|---|---:|---:|---|---|---|---|---|---|\n";
    for (const auto& c : r["clusters"]) {
        std::string metric = "-";
        if (c.contains("variants") && !c["variants"].empty()) metric = c["variants"][0].value("metric", "-");
        out += fmt::format("| {} {} | {} | {} | {} | {} | {} | {} | {} | {} |\n", c.value("idx", 0),
                           html_escape(shorten(c.value("label", ""), 40)), c.value("volume", 0), c.value("evaluated", 0),
                           c.value("kind", ""), metric, cell(c, "base"), cell(c, "icl"), cell(c, "customized"),
                           c.value("replaceable", false) ? "**replaceable** (" + c.value("chosen", "") + ")"
                                                         : html_escape(c.value("reason", "")));
    }
    // structured output and judge scores, for the clusters that have them
    std::string extra;
    for (const auto& c : r["clusters"])
        for (const auto& [key, label] : k_sub_metrics)
            if (any_variant_has(c, key))
                extra += fmt::format("| {} {} | {} | {} | {} | {} | {} |\n", c.value("idx", 0),
                                     html_escape(shorten(c.value("label", ""), 40)), label, sub_n(c, key),
                                     sub_cell(c, "base", key), sub_cell(c, "icl", key), sub_cell(c, "customized", key));
    if (!extra.empty())
        out += "\n| cluster | metric | calls | base | icl | customized |\n|---|---|---:|---|---|---|\n" + extra;
    return out;
}

std::string render_html(const ojson& r) {
    std::string h;
    h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>slmctl eval report</title>\n<style>"
         "body{font-family:system-ui,sans-serif;margin:24px;color:#222}h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
         "td.n{text-align:right}.ok{color:#176b2c;font-weight:600}.no{color:#8a1c1c}svg text{font-size:11px}"
         "</style></head><body>\n";
    h += fmt::format("<h1>slmctl eval — run {} (clustering run {})</h1>\n<p>Base model: <code>{}</code>. Held-out "
                     "test calls only; the reference is the logged LLM answer. Bars: main metric per variant with "
                     "its 95% interval.</p>\n",
                     r.value("run_id", 0), r.value("cluster_run", 0), html_escape(r.value("base", "")));

    // replaceable share per agent
    const auto& shares = r["shares"];
    {
        const int row = 26, left = 150, width = 420;
        const int hgt = static_cast<int>(shares.size()) * row + 30;
        h += "<h2>Replaceable share of calls per agent</h2>\n";
        h += fmt::format("<svg id=\"share-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\n",
                         left + width + 260, hgt);
        int y = 10;
        for (const auto& s : shares) {
            const double v = s["share"].value("value", 0.0), lo = s["share"].value("lo", 0.0), hi = s["share"].value("hi", 0.0);
            h += fmt::format("<text x=\"0\" y=\"{}\">{}</text>", y + 14, html_escape(s.value("agent", "")));
            h += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"16\" fill=\"#eee\"/>", left, y, width);
            h += fmt::format("<rect class=\"share\" data-agent=\"{}\" data-value=\"{:.4f}\" x=\"{}\" y=\"{}\" width=\"{:.1f}\" "
                             "height=\"16\" fill=\"#2e8b57\"/>",
                             html_escape(s.value("agent", "")), v, left, y, width * v);
            h += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\"/>", left + width * lo,
                             left + width * hi, y + 8, y + 8);
            h += fmt::format("<text x=\"{}\" y=\"{}\">{} [{}, {}] of {} calls</text>\n", left + width + 6, y + 13, pct(v),
                             pct(lo), pct(hi), s.value("calls", 0));
            y += row;
        }
        h += "</svg>\n";
    }
    h += "<table><tr><th>agent</th><th>calls</th><th>replaceable</th><th>share [95%]</th><th>LLM cost $</th><th>"
         "saving $</th><th>unpriced calls</th></tr>\n";
    for (const auto& s : shares)
        h += fmt::format("<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{} [{}, {}]</td><td class=n>{:.4f}</td>"
                         "<td class=n>{:.4f}</td><td class=n>{}</td></tr>\n",
                         html_escape(s.value("agent", "")), s.value("calls", 0), s.value("replaceable_calls", 0),
                         pct(s["share"].value("value", 0.0)), pct(s["share"].value("lo", 0.0)),
                         pct(s["share"].value("hi", 0.0)), s["cost"].value("llm_usd", 0.0),
                         s["cost"].value("saving_usd", 0.0), s.value("unpriced_calls", 0));
    h += "</table>\n";

    // per-cluster metric bars
    h += "<h2>Clusters: base / icl / customized</h2>\n<p>";
    for (int i = 0; i < 3; ++i)
        h += fmt::format("<span style=\"display:inline-block;width:12px;height:12px;background:{}\"></span> {} &nbsp;",
                         k_colors[i], k_names[i]);
    h += "</p>\n";
    const auto& clusters = r["clusters"];
    {
        const int bar = 9, group = 3 * bar + 14, left = 260, width = 400;
        const int hgt = static_cast<int>(clusters.size()) * group + 30;
        h += fmt::format("<svg id=\"cluster-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">\n",
                         left + width + 60, hgt);
        for (int t = 0; t <= 4; ++t)
            h += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"0\" y2=\"{1}\" stroke=\"#ddd\"/><text x=\"{0}\" y=\"{2}\">{3:.2f}</text>",
                             left + width * t / 4, hgt - 18, hgt - 4, t / 4.0);
        int y = 4;
        for (const auto& c : clusters) {
            h += fmt::format("<text x=\"0\" y=\"{}\">{} {} ({})</text>", y + 16, c.value("idx", 0),
                             html_escape(shorten(c.value("label", ""), 30)), html_escape(c.value("kind", "")));
            for (int i = 0; i < 3; ++i) {
                const auto* v = variant_of(c, k_names[i]);
                if (!v || v->value("n", 0) == 0) continue;
                const double val = v->value("value", 0.0), lo = v->value("lo", 0.0), hi = v->value("hi", 0.0);
                const int yy = y + i * bar;
                h += fmt::format("<rect class=\"metric\" data-cluster=\"{}\" data-variant=\"{}\" data-value=\"{:.4f}\" "
                                 "x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\"/>",
                                 c.value("idx", 0), k_names[i], val, left, yy, width * val, bar - 1, k_colors[i]);
                h += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\"/>", left + width * lo,
                                 left + width * hi, yy + bar / 2, yy + bar / 2);
            }
            if (c.value("replaceable", false))
                h += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#176b2c\">✓</text>", left + width + 8, y + 16);
            h += "\n";
            y += group;
        }
        h += "</svg>\n";
    }
    h += "<table><tr><th>id</th><th>cluster</th><th>calls</th><th>test</th><th>kind</th><th>metric</th><th>base</th>"
         "<th>icl</th><th>customized</th><th>SLM ms/call</th><th>LLM ms/call</th><th>verdict</th></tr>\n";
    for (const auto& c : clusters) {
        std::string metric = "-", ms = "-";
        if (c.contains("variants") && !c["variants"].empty()) {
            metric = c["variants"][0].value("metric", "-");
            ms = fmt::format("{:.0f}", c["variants"].back().value("ms_per_call", 0.0));
        }
        std::string llm_ms = c.contains("llm_latency_ms") ? fmt::format("{:.0f}", c["llm_latency_ms"].get<double>()) : "-";
        const bool ok = c.value("replaceable", false);
        h += fmt::format("<tr><td class=n>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td><td>{}</td>"
                         "<td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=\"{}\">{}</td></tr>\n",
                         c.value("idx", 0), html_escape(c.value("label", "")), c.value("volume", 0), c.value("evaluated", 0),
                         c.value("kind", ""), metric, cell(c, "base"), cell(c, "icl"), cell(c, "customized"), ms, llm_ms,
                         ok ? "ok" : "no", html_escape(ok ? "replaceable: " + c.value("reason", "") : c.value("reason", "")));
    }
    h += "</table>\n";

    // structured output (JSON validity, schema validity) and judge scores
    {
        std::string rows;
        for (const auto& c : clusters)
            for (const auto& [key, label] : k_sub_metrics) {
                if (!any_variant_has(c, key)) continue;
                rows += fmt::format("<tr><td class=n>{}</td><td>{}</td><td>{}</td><td class=n>{}</td>", c.value("idx", 0),
                                    html_escape(shorten(c.value("label", ""), 40)), label, sub_n(c, key));
                for (const char* vn : k_names) {
                    const auto* v = variant_of(c, vn);
                    if (!v || !v->contains(key)) {
                        rows += "<td>-</td>";
                        continue;
                    }
                    rows += fmt::format("<td class=\"sub\" data-cluster=\"{}\" data-metric=\"{}\" data-variant=\"{}\" "
                                        "data-value=\"{:.4f}\">{}</td>",
                                        c.value("idx", 0), key, vn, (*v)[key].value("value", 0.0), sub_cell(c, vn, key));
                }
                rows += "</tr>\n";
            }
        if (!rows.empty())
            h += "<h2>Structured output and judge scores</h2>\n<p>Schema validity counts only the calls whose "
                 "request carried a response_format JSON schema; the judge scores prose answers (0..1).</p>\n"
                 "<table><tr><th>id</th><th>cluster</th><th>metric</th><th>calls</th><th>base</th><th>icl</th>"
                 "<th>customized</th></tr>\n" +
                 rows + "</table>\n";
    }

    // loss curves of the evaluated adapters
    bool any_curve = false;
    for (const auto& c : clusters)
        if (c.contains("loss_curve") && c["loss_curve"].is_array() && c["loss_curve"].size() > 1) any_curve = true;
    if (any_curve) {
        h += "<h2>Fine-tuning loss curves (train: thin, validation: dots)</h2>\n";
        for (const auto& c : clusters) {
            if (!c.contains("loss_curve") || !c["loss_curve"].is_array() || c["loss_curve"].size() < 2) continue;
            const auto& curve = c["loss_curve"];
            double max_loss = 0;
            int max_step = 1;
            for (const auto& p : curve) {
                max_step = std::max(max_step, p.value("step", 0));
                if (p.value("step", 0) > 0) max_loss = std::max(max_loss, p.value("train_loss", 0.0));
                if (p.contains("val_loss") && p["val_loss"].is_number()) max_loss = std::max(max_loss, p["val_loss"].get<double>());
            }
            if (max_loss <= 0) max_loss = 1;
            const int w = 360, hh = 140, pad = 30;
            h += fmt::format("<figure style=\"display:inline-block;margin:6px\"><svg class=\"loss-curve\" data-cluster=\"{}\" "
                             "xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\">",
                             c.value("idx", 0), w + pad, hh + pad);
            h += fmt::format("<line x1=\"{0}\" y1=\"0\" x2=\"{0}\" y2=\"{1}\" stroke=\"#999\"/><line x1=\"{0}\" y1=\"{1}\" "
                             "x2=\"{2}\" y2=\"{1}\" stroke=\"#999\"/>",
                             pad, hh, w + pad);
            h += fmt::format("<text x=\"0\" y=\"10\">{:.2f}</text><text x=\"{}\" y=\"{}\">step {}</text>", max_loss, w - 20,
                             hh + 20, max_step);
            std::string pts;
            for (const auto& p : curve) {
                if (p.value("step", 0) == 0) continue;
                pts += fmt::format("{:.1f},{:.1f} ", pad + w * p.value("step", 0) / double(max_step),
                                   hh - hh * p.value("train_loss", 0.0) / max_loss);
            }
            h += fmt::format("<polyline fill=\"none\" stroke=\"#3070c0\" stroke-width=\"1\" points=\"{}\"/>", pts);
            for (const auto& p : curve)
                if (p.contains("val_loss") && p["val_loss"].is_number())
                    h += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"#c03030\"/>",
                                     pad + w * p.value("step", 0) / double(max_step),
                                     hh - hh * p["val_loss"].get<double>() / max_loss);
            h += fmt::format("</svg><figcaption>cluster {} {}</figcaption></figure>\n", c.value("idx", 0),
                             html_escape(shorten(c.value("label", ""), 40)));
        }
    }
    if (r.contains("previous") && r["previous"].contains("shares"))
        for (const auto& s : r["previous"]["shares"])
            if (s.value("agent", "") == "total")
                h += fmt::format("<p>Previous eval run {} on the same clustering run: total share {}.</p>\n",
                                 r["previous"].value("run_id", 0), pct(s["share"].value("value", 0.0)));
    h += "</body></html>\n";
    return h;
}

std::vector<std::string> check_fail_under(const ojson& r, const std::string& spec) {
    std::string key = "share", val = spec;
    if (auto eq = spec.find('='); eq != std::string::npos) {
        key = spec.substr(0, eq);
        val = spec.substr(eq + 1);
    }
    double x = 0;
    try {
        size_t used = 0;
        x = std::stod(val, &used);
        if (used != val.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
        throw user_error(fmt::format("--fail-under '{}': '{}' is not a number", spec, val),
                         "use --fail-under 0.4, share=0.4, AGENT=0.5 or base|icl|customized=0.8");
    }
    if (x < 0 || x > 1) throw user_error(fmt::format("--fail-under '{}': {} is outside 0..1", spec, x));
    std::vector<std::string> fails;
    if (key == "base" || key == "icl" || key == "customized") {
        int seen = 0;
        for (const auto& c : r["clusters"]) {
            const auto* v = variant_of(c, key);
            if (!v || v->value("n", 0) == 0) continue;
            ++seen;
            if (v->value("value", 0.0) < x)
                fails.push_back(fmt::format("cluster {} '{}': {} {} {:.3f} < {}", c.value("idx", 0), c.value("label", ""),
                                            key, v->value("metric", ""), v->value("value", 0.0), x));
        }
        if (seen == 0) fails.push_back(fmt::format("no cluster was evaluated with the {} variant", key));
        return fails;
    }
    const std::string agent = key == "share" ? "total" : key;
    for (const auto& s : r["shares"])
        if (s.value("agent", "") == agent) {
            const double v = s["share"].value("value", 0.0);
            if (v < x) fails.push_back(fmt::format("{} replaceable share {} < {}", agent, pct(v), pct(x)));
            return fails;
        }
    std::string known;
    for (const auto& s : r["shares"]) known += (known.empty() ? "" : ", ") + s.value("agent", "");
    throw user_error(fmt::format("--fail-under '{}': no agent '{}' in the report (it has {})", spec, agent, known),
                     "use share=X, an agent name, or base|icl|customized=X");
}

}  // namespace slm::eval

namespace slm::eval {

void set_threshold(verdict_params& p, const std::string& spec) {
    auto eq = spec.find('=');
    if (eq == std::string::npos)
        throw user_error(fmt::format("--threshold '{}' is not KIND=X", spec), "e.g. --threshold tool_call=0.8");
    const std::string k = spec.substr(0, eq), v = spec.substr(eq + 1);
    double x = 0;
    try {
        size_t used = 0;
        x = std::stod(v, &used);
        if (used != v.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
        throw user_error(fmt::format("--threshold '{}': '{}' is not a number", spec, v));
    }
    if (k == "min_calls") {
        if (x < 1 || x != std::floor(x)) throw user_error(fmt::format("--threshold '{}': min_calls must be a positive integer", spec));
        p.min_calls = static_cast<int64_t>(x);
        return;
    }
    if (x < 0 || x > 1) throw user_error(fmt::format("--threshold '{}': {} is outside 0..1", spec, x));
    if (k == "tool_call") p.tool_call = x;
    else if (k == "json") p.json = x;
    else if (k == "code") p.code = x;
    else if (k == "prose") p.prose = x;
    else if (k == "empty") p.empty = x;
    else if (k == "judge") p.judge = x;
    else
        throw user_error(fmt::format("--threshold '{}': unknown kind '{}'", spec, k),
                         "kinds: tool_call, json, code, prose, empty, judge, min_calls");
}

void write_report_file(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    {
        std::FILE* f = std::fopen(tmp.c_str(), "wb");
        if (!f) throw user_error(fmt::format("cannot write {}", tmp), "check the directory exists and is writable");
        const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
        if (std::fclose(f) != 0 || !ok) {
            std::remove(tmp.c_str());
            throw user_error(fmt::format("writing {} failed (disk full?)", tmp));
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw user_error(fmt::format("cannot rename {} to {}", tmp, path));
    }
}

}  // namespace slm::eval
