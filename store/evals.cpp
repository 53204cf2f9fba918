// The eval_results table: one row per held-out call and variant of an eval run.
#include "store/stages.h"

namespace slm::store {

void insert_eval_results(db& d, const std::vector<eval_result_row>& rows) {
    txn t(d);
    auto s = d.prepare(
        "INSERT INTO eval_results (run_id, adapter_id, call_id, cluster_id, variant, model, score, passed, output, "
        "details, judge_score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& r : rows) {
        std::optional<int64_t> passed;
        if (r.passed) passed = *r.passed ? 1 : 0;
        s.bind_all(r.run_id, r.adapter_id, r.call_id, r.cluster_id, r.variant, r.model, r.score, passed, r.output,
                   r.details, r.judge_score);
        s.run();
        s.reset();
    }
    t.commit();
}

std::vector<eval_result_row> eval_results_of_run(db& d, int64_t run_id) {
    auto s = d.prepare(
        "SELECT id, run_id, call_id, COALESCE(cluster_id, 0), adapter_id, variant, model, score, passed, "
        "COALESCE(output, ''), details, judge_score FROM eval_results WHERE run_id = ? ORDER BY cluster_id, variant, call_id");
    s.bind(1, run_id);
    std::vector<eval_result_row> out;
    while (s.step()) {
        eval_result_row r;
        r.id = s.get_int(0);
        r.run_id = s.get_int(1);
        r.call_id = s.get_int(2);
        r.cluster_id = s.get_int(3);
        if (!s.is_null(4)) r.adapter_id = s.get_int(4);
        r.variant = s.get_text(5);
        r.model = s.get_text(6);
        if (!s.is_null(7)) r.score = s.get_double(7);
        if (!s.is_null(8)) r.passed = s.get_int(8) != 0;
        r.output = s.get_text(9);
        r.details = s.get_text(10);
        if (!s.is_null(11)) r.judge_score = s.get_double(11);
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace slm::store
