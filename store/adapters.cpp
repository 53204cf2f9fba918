// The adapters table: what finetune trained (path, base identity, hyper-parameters, loss curve).
#include "common/common.h"
#include "store/stages.h"

namespace slm::store {

namespace {
constexpr const char* k_cols =
    "a.id, a.run_id, a.cluster_id, a.base_model, COALESCE(a.base_model_sha256, ''), a.path, a.rank, a.alpha, "
    "a.params, a.metrics, a.loss_curve, a.created";

adapter_row read_adapter(const stmt& s) {
    adapter_row a;
    a.id = s.get_int(0);
    a.run_id = s.get_int(1);
    if (!s.is_null(2)) a.cluster_id = s.get_int(2);
    a.base_model = s.get_text(3);
    a.base_model_sha256 = s.get_text(4);
    a.path = s.get_text(5);
    a.rank = s.get_int(6);
    a.alpha = s.get_double(7);
    a.params = s.get_text(8);
    a.metrics = s.get_text(9);
    a.loss_curve = s.get_text(10);
    a.created = s.get_text(11);
    return a;
}
}  // namespace

int64_t insert_adapter(db& d, const adapter_row& a) {
    auto s = d.prepare(
        "INSERT INTO adapters (run_id, cluster_id, base_model, base_model_sha256, path, rank, alpha, params, metrics, "
        "loss_curve, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind_all(a.run_id, a.cluster_id, a.base_model, a.base_model_sha256, a.path, a.rank, a.alpha, a.params, a.metrics,
               a.loss_curve, a.created.empty() ? utc_now_iso() : a.created);
    s.run();
    return d.last_insert_rowid();
}

std::optional<adapter_row> get_adapter(db& d, int64_t adapter_id) {
    auto s = d.prepare(std::string("SELECT ") + k_cols + " FROM adapters a WHERE a.id = ?");
    s.bind(1, adapter_id);
    if (!s.step()) return std::nullopt;
    return read_adapter(s);
}

std::vector<adapter_row> adapters_of_cluster(db& d, int64_t cluster_id) {
    auto s = d.prepare(std::string("SELECT ") + k_cols +
                       " FROM adapters a JOIN runs r ON r.id = a.run_id WHERE a.cluster_id = ? AND r.status = 'ok' "
                       "ORDER BY a.id DESC");
    s.bind(1, cluster_id);
    std::vector<adapter_row> out;
    while (s.step()) out.push_back(read_adapter(s));
    return out;
}

}  // namespace slm::store
