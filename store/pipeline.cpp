// pipeline_steps: the per-stage record of `slmctl run` (what it ran or skipped, under which input
// key), and the few cross-stage reads the loop needs.
#include "common/common.h"
#include "store/stages.h"

namespace slm::store {

namespace {

pipeline_step_row step_of(const stmt& s) {
    pipeline_step_row r;
    r.id = s.get_int(0);
    r.run_id = s.get_int(1);
    r.stage = s.get_text(2);
    r.cluster_key = s.get_text(3);
    r.key = s.get_text(4);
    r.stage_run = s.is_null(5) ? 0 : s.get_int(5);
    r.result = s.get_text(6);
    r.created = s.get_text(7);
    return r;
}

constexpr const char* kCols = "p.id, p.run_id, p.stage, p.cluster_key, p.key, p.stage_run, p.result, p.created";

}  // namespace

void insert_pipeline_step(db& d, const pipeline_step_row& r) {
    auto s = d.prepare(
        "INSERT INTO pipeline_steps (run_id, stage, cluster_key, key, stage_run, result, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)");
    s.bind_all(r.run_id, r.stage, r.cluster_key, r.key, r.stage_run ? std::optional<int64_t>(r.stage_run) : std::nullopt,
               r.result, r.created.empty() ? utc_now_iso() : r.created);
    s.run();
}

std::optional<pipeline_step_row> find_pipeline_step(db& d, std::string_view stage, std::string_view key) {
    auto s = d.prepare(fmt::format(
        "SELECT {} FROM pipeline_steps p LEFT JOIN runs r ON r.id = p.stage_run "
        "WHERE p.stage = ? AND p.key = ? AND (p.stage_run IS NULL OR r.status = 'ok') ORDER BY p.id DESC LIMIT 1",
        kCols));
    s.bind_all(stage, key);
    if (!s.step()) return std::nullopt;
    return step_of(s);
}

std::vector<pipeline_step_row> pipeline_steps_of_run(db& d, int64_t run_id) {
    auto s = d.prepare(fmt::format("SELECT {} FROM pipeline_steps p WHERE p.run_id = ? ORDER BY p.id", kCols));
    s.bind(1, run_id);
    std::vector<pipeline_step_row> out;
    while (s.step()) out.push_back(step_of(s));
    return out;
}

std::vector<int64_t> all_call_ids(db& d) {
    auto s = d.prepare("SELECT id FROM calls ORDER BY id");
    std::vector<int64_t> out;
    while (s.step()) out.push_back(s.get_int(0));
    return out;
}

}  // namespace slm::store
