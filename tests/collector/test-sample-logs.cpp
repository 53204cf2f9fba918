// collect on sample_logs/: every good record of every file stored (checked against labels.jsonl),
// 0 quarantines in the main files, and each malformed line of bad/malformed.jsonl handled as its
// documented defect demands (quarantined with its line number, or stored with a flag).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "collector/collector.h"
#include "store/store.h"
#include "../test-util.h"

using namespace slm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// The committed set, or (while it is not committed yet) a fresh one from the generator.
std::string sample_dir(test::temp_dir& t) {
    std::string committed = test::source_dir("sample_logs");
    if (fs::exists(committed + "/README.md") && fs::exists(committed + "/bad/malformed.jsonl")) return committed;
    std::string gen = test::source_dir("sample_logs/gen/generate.py");
    REQUIRE_MESSAGE(fs::exists(gen), "neither sample_logs/ nor its generator is there");
    std::string out = t / "sample_logs";
    std::string cmd = "python3 '" + gen + "' --out '" + out + "' >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
    return out;
}

const char* const k_main_files[] = {"software_company.jsonl", "workflow_operator.jsonl", "gui_controller.jsonl",
                                    "legacy_functions.jsonl", "finetune_form.jsonl"};

// What collect does with each documented defect: a quarantine reason, "flag:<flag>" (stored, flagged),
// "stored" (stored, nothing flagged) or "blank" (not a record).
const std::map<std::string, std::string> k_defect_outcome = {
    {"truncated_json", "invalid_json"},       {"missing_response", "no_response"},
    {"empty_line", "blank"},                  {"whitespace_only", "blank"},
    {"non_object_string", "not_an_object"},   {"non_object_null", "not_an_object"},
    {"non_object_array", "not_an_object"},    {"messages_is_string", "bad_field"},
    {"latency_is_string", "flag:latency_not_number"},
    {"invalid_utf8", "invalid_utf8"},         {"content_wrong_type", "bad_field"},
    {"timestamp_is_number", "stored"},  // epoch seconds: converted, not a defect
    {"python_repr", "invalid_json"},          {"missing_request", "no_request"},
    {"tool_args_invalid_json", "flag:tool_args_not_json"},
    {"message_missing_role", "bad_field"},    {"tool_args_not_string", "flag:tool_args_not_string"},
    {"choices_not_list", "bad_field"},        {"two_records_one_line", "invalid_json"},
    {"trailing_comma", "invalid_json"},
};

// "| 4 | `truncated_json` | ... |" rows of the README's malformed-lines table
std::map<int64_t, std::string> read_defects(const std::string& readme) {
    std::map<int64_t, std::string> out;
    std::istringstream in(test::read_file(readme));
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("| ", 0) != 0) continue;
        size_t a = line.find('`'), b = a == std::string::npos ? a : line.find('`', a + 1);
        if (b == std::string::npos) continue;
        std::string num = line.substr(2, line.find('|', 2) - 2);
        try {
            size_t used = 0;
            int64_t n = std::stoll(num, &used);
            if (num.find_first_not_of(" 0123456789") != std::string::npos) continue;
            out[n] = line.substr(a + 1, b - a - 1);
        } catch (...) {
        }
    }
    return out;
}

}  // namespace

TEST_CASE("sample_logs: all good records stored, 0 unexpected quarantines, the bad file's defects handled") {
    test::temp_dir t;
    std::string dir = sample_dir(t);
    auto d = store::db::open(t / "a.db");

    // the five main files: nothing quarantined
    std::vector<std::string> mains;
    for (const char* f : k_main_files) mains.push_back(dir + "/" + f);
    collector::collect_params p;
    p.paths = mains;
    auto s = collector::collect(d, p);
    CHECK(s.quarantined == 0);
    CHECK(s.by_format["legacy_functions"] > 0);
    CHECK(s.by_format["finetune"] > 0);
    CHECK(s.by_format["flywheel"] > 0);
    CHECK(s.scrubbed_by_kind["email"] > 0);
    CHECK(s.scrubbed_by_kind["card"] > 0);
    CHECK(s.scrubbed_by_kind["api_key"] + s.scrubbed_by_kind["aws_key"] + s.scrubbed_by_kind["github_token"] > 0);

    // the bad file
    auto defects = read_defects(dir + "/README.md");
    REQUIRE(defects.size() >= 10);
    p.paths = {dir + "/bad/malformed.jsonl"};
    auto sb = collector::collect(d, p);
    std::string bad_abs = fs::absolute(dir + "/bad/malformed.jsonl").lexically_normal().string();
    std::map<int64_t, std::string> quarantined;
    {
        auto q = d.prepare("SELECT source_line, reason FROM quarantine WHERE source_file = ?");
        q.bind(1, bad_abs);
        while (q.step()) quarantined[q.get_int(0)] = q.get_text(1);
    }
    std::map<int64_t, std::string> stored_flags;
    {
        auto c = d.prepare("SELECT source_line, flags FROM calls WHERE source_file = ?");
        c.bind(1, bad_abs);
        while (c.step()) stored_flags[c.get_int(0)] = c.get_text(1);
    }
    int64_t n_lines = 0;
    {
        std::ifstream in(bad_abs, std::ios::binary);
        std::string l;
        while (std::getline(in, l)) ++n_lines;
    }
    CHECK(sb.lines == n_lines);
    int64_t expect_quarantined = 0, expect_blank = 0;
    for (const auto& [line, defect] : defects) {
        auto it = k_defect_outcome.find(defect);
        REQUIRE_MESSAGE(it != k_defect_outcome.end(), "undocumented defect kind ", defect, " on line ", line);
        const std::string& want = it->second;
        if (want == "blank") {
            ++expect_blank;
            CHECK_MESSAGE(!quarantined.count(line), "line ", line);
            CHECK_MESSAGE(!stored_flags.count(line), "line ", line);
        } else if (want == "stored") {
            REQUIRE_MESSAGE(stored_flags.count(line), "line ", line, " (", defect, ") should be stored");
            CHECK_MESSAGE(stored_flags[line].find("timestamp_not_iso") == std::string::npos, "line ", line, " flags ",
                          stored_flags[line]);
        } else if (want.rfind("flag:", 0) == 0) {
            REQUIRE_MESSAGE(stored_flags.count(line), "line ", line, " (", defect, ") should be stored");
            CHECK_MESSAGE(json::parse(stored_flags[line]).dump().find(want.substr(5)) != std::string::npos, "line ", line,
                          " flags ", stored_flags[line]);
        } else {
            ++expect_quarantined;
            CHECK_MESSAGE(quarantined[line] == want, "line ", line, " (", defect, ")");
        }
    }
    CHECK(sb.quarantined == expect_quarantined);
    CHECK(static_cast<int64_t>(quarantined.size()) == expect_quarantined);
    CHECK(sb.blank == expect_blank);
    // every line not in the table is a good record and stored
    for (int64_t l = 1; l <= n_lines; ++l) {
        if (defects.count(l)) continue;
        CHECK_MESSAGE(stored_flags.count(l), "good line ", l, " of the bad file was not stored");
        CHECK_MESSAGE(!quarantined.count(l), "good line ", l);
    }

    // labels.jsonl: every labelled record's content is in `calls` (templated task types repeat
    // exactly now and then: those calls are stored once and counted as duplicates)
    std::set<std::string> stored;
    {
        auto c = d.prepare("SELECT content_id FROM calls");
        while (c.step()) stored.insert(c.get_text(0));
    }
    std::map<std::string, std::string> content_of;  // "file:line" -> content id
    std::set<std::string> seen;
    int64_t expect_dups = 0;
    collector::normalizer norm({});
    for (const std::string rel : {"software_company.jsonl", "workflow_operator.jsonl", "gui_controller.jsonl",
                                  "legacy_functions.jsonl", "finetune_form.jsonl", "bad/malformed.jsonl"}) {
        std::ifstream in(dir + "/" + rel, std::ios::binary);
        std::string l;
        int64_t no = 0;
        while (std::getline(in, l)) {
            collector::record_result r;
            norm.process(l, rel, ++no, r);
            if (r.calls.size() != 1) continue;
            content_of[rel + ":" + std::to_string(no)] = r.calls[0].content_id;
            if (rel != "bad/malformed.jsonl" && !seen.insert(r.calls[0].content_id).second) ++expect_dups;
        }
    }
    CHECK(s.duplicate == expect_dups);
    std::ifstream labels(dir + "/labels.jsonl");
    REQUIRE(labels.good());
    std::string line;
    int64_t labelled = 0, missing = 0;
    while (std::getline(labels, line)) {
        auto j = json::parse(line);
        ++labelled;
        std::string key = j["file"].get<std::string>() + ":" + std::to_string(j["line"].get<int64_t>());
        auto it = content_of.find(key);
        if (it == content_of.end() || !stored.count(it->second)) {
            ++missing;
            if (missing < 5) MESSAGE("labelled record not stored: ", line);
        }
    }
    CHECK(labelled > 3000);
    CHECK(missing == 0);
}
