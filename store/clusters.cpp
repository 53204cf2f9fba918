// The tables of a clustering run (clusters, cluster_members, cluster_models) and the splits made
// from it: writes by `slmctl cluster`, reads by cluster --show, route, finetune and eval.
#include <cstring>

#include "common/common.h"
#include "store/stages.h"

namespace slm::store {

std::optional<cluster_ref> get_cluster(db& d, int64_t cluster_id) {
    auto s = d.prepare("SELECT id, idx, label, size, share, suitability, stats, reasons, run_id FROM clusters WHERE id = ?");
    s.bind(1, cluster_id);
    if (!s.step()) return std::nullopt;
    cluster_ref r;
    auto& c = r.cluster;
    c.id = s.get_int(0);
    c.idx = static_cast<int>(s.get_int(1));
    c.label = s.get_text(2);
    c.size = s.get_int(3);
    c.share = s.get_double(4);
    if (!s.is_null(5)) c.suitability = s.get_double(5);
    c.stats = s.get_text(6);
    c.reasons = s.get_text(7);
    r.run_id = s.get_int(8);
    return r;
}

std::vector<cluster_row> clusters_of_run(db& d, int64_t run_id) {
    auto s = d.prepare(
        "SELECT id, idx, label, size, share, suitability, stats, reasons FROM clusters WHERE run_id = ? "
        "ORDER BY idx < 0, idx");
    s.bind(1, run_id);
    std::vector<cluster_row> out;
    while (s.step()) {
        cluster_row c;
        c.id = s.get_int(0);
        c.idx = static_cast<int>(s.get_int(1));
        c.label = s.get_text(2);
        c.size = s.get_int(3);
        c.share = s.get_double(4);
        if (!s.is_null(5)) c.suitability = s.get_double(5);
        c.stats = s.get_text(6);
        c.reasons = s.get_text(7);
        out.push_back(std::move(c));
    }
    return out;
}

std::vector<member_row> members_of_run(db& d, int64_t run_id) {
    auto s = d.prepare(
        "SELECT m.call_id, COALESCE(c.response_id, ''), COALESCE(c.workload_id, ''), cl.idx, m.cluster_id, m.distance "
        "FROM cluster_members m JOIN calls c ON c.id = m.call_id JOIN clusters cl ON cl.id = m.cluster_id "
        "WHERE m.run_id = ? ORDER BY m.call_id");
    s.bind(1, run_id);
    std::vector<member_row> out;
    while (s.step()) {
        member_row m;
        m.call_id = s.get_int(0);
        m.response_id = s.get_text(1);
        m.workload_id = s.get_text(2);
        m.cluster_idx = static_cast<int>(s.get_int(3));
        m.cluster_id = s.get_int(4);
        if (!s.is_null(5)) m.distance = s.get_double(5);
        out.push_back(std::move(m));
    }
    return out;
}

std::vector<cluster_call> nearest_calls(db& d, int64_t run_id, int idx, int limit) {
    auto s = d.prepare(
        "SELECT c.id, COALESCE(c.workload_id, ''), c.task_text, "
        "CASE WHEN c.response_tool_calls IS NOT NULL AND c.response_tool_calls NOT IN ('', '[]') "
        "THEN c.response_tool_calls ELSE COALESCE(c.response_text, '') END, m.distance "
        "FROM cluster_members m JOIN clusters cl ON cl.id = m.cluster_id JOIN calls c ON c.id = m.call_id "
        "WHERE m.run_id = ? AND cl.idx = ? ORDER BY m.distance, c.id LIMIT ?");
    s.bind_all(run_id, idx, limit);
    std::vector<cluster_call> out;
    while (s.step()) {
        cluster_call c;
        c.call_id = s.get_int(0);
        c.workload_id = s.get_text(1);
        c.task_text = s.get_text(2);
        c.response = s.get_text(3);
        if (!s.is_null(4)) c.distance = s.get_double(4);
        out.push_back(std::move(c));
    }
    return out;
}

int64_t insert_cluster(db& d, int64_t run_id, const cluster_insert& c) {
    auto s = d.prepare(
        "INSERT INTO clusters (run_id, idx, label, size, share, suitability, stats, reasons, centroid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind_all(run_id, c.idx, c.label, c.size, c.share, c.suitability, c.stats, c.reasons);
    if (c.centroid)
        s.bind_blob(9, c.centroid, sizeof(float) * static_cast<size_t>(c.dim));
    else
        s.bind_null(9);
    s.run();
    return d.last_insert_rowid();
}

void insert_members(db& d, int64_t run_id, const std::vector<member_insert>& members) {
    auto s = d.prepare("INSERT INTO cluster_members (run_id, call_id, cluster_id, distance) VALUES (?, ?, ?, ?)");
    for (const auto& m : members) {
        s.bind_all(run_id, m.call_id, m.cluster_id, m.distance);
        s.run();
    }
}

void insert_cluster_model(db& d, int64_t run_id, const cluster_model& m) {
    auto s = d.prepare(
        "INSERT INTO cluster_models (run_id, embedder, dim, params, blob, cells, cell_owner, cell_workload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    s.bind_all(run_id, m.embedder, m.dim, m.params);
    s.bind_blob(5, m.blob.data(), m.blob.size());
    s.bind_blob(6, m.cells.data(), m.cells.size() * sizeof(float));
    s.bind(7, m.cell_owner);
    s.bind(8, m.cell_workload);
    s.run();
}

std::optional<cluster_model> get_cluster_model(db& d, int64_t run_id) {
    auto s = d.prepare(
        "SELECT embedder, dim, params, blob, cells, cell_owner, cell_workload FROM cluster_models WHERE run_id = ?");
    s.bind(1, run_id);
    if (!s.step()) return std::nullopt;
    cluster_model m;
    m.embedder = s.get_text(0);
    m.dim = static_cast<int>(s.get_int(1));
    m.params = s.get_text(2);
    m.blob = s.get_blob(3);
    m.cells.resize(s.blob_size(4) / sizeof(float));
    if (!m.cells.empty()) std::memcpy(m.cells.data(), s.blob_data(4), m.cells.size() * sizeof(float));
    m.cell_owner = s.get_text(5);
    m.cell_workload = s.get_text(6);
    return m;
}

// ---- splits -----------------------------------------------------------------------------------

void write_splits(db& d, int64_t cluster_run, int64_t seed, const std::vector<split_row>& rows) {
    txn t(d);
    auto del = d.prepare("DELETE FROM splits WHERE cluster_run = ? AND seed = ?");
    del.bind_all(cluster_run, seed);
    del.run();
    auto ins = d.prepare("INSERT INTO splits (cluster_run, seed, call_id, split) VALUES (?, ?, ?, ?)");
    for (const auto& r : rows) {
        ins.bind_all(cluster_run, seed, r.call_id, r.split);
        ins.run();
    }
    t.commit();
}

std::vector<split_row> get_splits(db& d, int64_t cluster_run, int64_t seed, std::string_view split) {
    auto s = d.prepare(std::string("SELECT call_id, split FROM splits WHERE cluster_run = ? AND seed = ?") +
                       (split.empty() ? "" : " AND split = ?") + " ORDER BY call_id");
    s.bind_all(cluster_run, seed);
    if (!split.empty()) s.bind(3, split);
    std::vector<split_row> out;
    while (s.step()) out.push_back({s.get_int(0), s.get_text(1)});
    return out;
}

}  // namespace slm::store
