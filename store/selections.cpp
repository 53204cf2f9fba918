// The selections table: what select ranked per cluster (one row per candidate and cluster of a
// select run), and the newest ranking of a cluster, which finetune reads for its default base.
#include "common/common.h"
#include "store/stages.h"

namespace slm::store {

void insert_selections(db& d, const std::vector<selection_row>& rows) {
    txn t(d);
    auto s = d.prepare("INSERT INTO selections (run_id, cluster_id, model, rank, score, details) VALUES (?, ?, ?, ?, ?, ?)");
    for (const auto& r : rows) {
        s.bind_all(r.run_id, r.cluster_id, r.model, r.rank, r.score, r.details);
        s.run();
    }
    t.commit();
}

std::vector<selection_row> latest_selections(db& d, int64_t cluster_id) {
    // the newest 'ok' select run with rows for this cluster; ranked rows by rank, filtered (0) last
    auto s = d.prepare(
        "SELECT s.id, s.run_id, s.cluster_id, s.model, s.rank, s.score, s.details FROM selections s "
        "WHERE s.cluster_id = ?1 AND s.run_id = (SELECT MAX(s2.run_id) FROM selections s2 JOIN runs r ON r.id = s2.run_id "
        "WHERE s2.cluster_id = ?1 AND r.command = 'select' AND r.status = 'ok') "
        "ORDER BY s.rank = 0, s.rank, s.id");
    s.bind(1, cluster_id);
    std::vector<selection_row> out;
    while (s.step()) {
        selection_row r;
        r.id = s.get_int(0);
        r.run_id = s.get_int(1);
        r.cluster_id = s.get_int(2);
        r.model = s.get_text(3);
        r.rank = s.get_int(4);
        r.score = s.get_double(5);
        r.details = s.get_text(6);
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace slm::store
