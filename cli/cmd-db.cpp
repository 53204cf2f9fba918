// `slmctl db info` (schema version, row counts per table, size, runs with their effective status)
// and `db init` (create/migrate). info opens read-only so it can run while collect writes (WAL).
#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"

namespace slm::cli {

/// A run as `db info --json` shows it; `status` is the effective one (a 'running' row whose
/// process is gone reads 'interrupted').
static nlohmann::json run_json(const store::run_row& r) {
    nlohmann::json j = {{"id", r.id},         {"command", r.command}, {"status", r.status},
                        {"started", r.started}, {"finished", r.finished.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.finished)}};
    if (r.status != r.stored_status) j["stored_status"] = r.stored_status;
    if (!r.error.empty()) j["error"] = r.error;
    if (r.stored_status == "running" && r.pid) j["owner"] = {{"pid", r.pid}, {"host", r.host}};
    return j;
}

static void db_info_main() {
    apply_globals();
    auto& g = globals();
    auto d = store::db::open(g.db_path, store::open_mode::read_only);
    auto inf = store::info(d);
    if (g.json) {
        nlohmann::json tables = nlohmann::json::object();
        for (const auto& t : inf.tables) tables[t.table] = t.rows;
        nlohmann::json runs = nlohmann::json::array(), by_status = nlohmann::json::object();
        for (const auto& r : inf.runs) {
            runs.push_back(run_json(r));
            by_status[r.status] = by_status.value(r.status, 0) + 1;
        }
        print_json({{"path", inf.path},
                    {"schema_version", inf.schema_version},
                    {"schema_version_latest", inf.schema_version_latest},
                    {"journal_mode", inf.journal_mode},
                    {"bytes", inf.file_bytes},
                    {"tables", tables},
                    {"runs", runs},
                    {"runs_by_status", by_status}});
        return;
    }
    fmt::print("database  {} ({}, journal {})\n", inf.path, human_bytes(inf.file_bytes), inf.journal_mode);
    fmt::print("schema    version {} (this slmctl writes {})\n", inf.schema_version, inf.schema_version_latest);
    fmt::print("{:<18}{:>12}\n", "table", "rows");
    for (const auto& t : inf.tables) fmt::print("{:<18}{:>12}\n", t.table, t.rows);
    if (inf.runs.empty()) return;
    fmt::print("\n{:>5}  {:<10} {:<12} {:<24} {}\n", "run", "command", "status", "started", "note");
    for (const auto& r : inf.runs) {
        std::string note = r.error;
        if (r.status == "running") note = fmt::format("pid {} on {}", r.pid, r.host);
        fmt::print("{:>5}  {:<10} {:<12} {:<24} {}\n", r.id, r.command, r.status, r.started, note);
    }
}

static void db_init_main() {
    apply_globals();
    auto& g = globals();
    auto d = store::db::open(g.db_path, store::open_mode::read_write);  // creates and migrates
    int v = d.user_version();
    if (g.json)
        print_json({{"path", d.path()}, {"schema_version", v}});
    else
        fmt::print("database {} at schema version {}\n", d.path(), v);
}

void set_db_command(CLI::App& sub) {
    sub.require_subcommand(1);
    sub.add_subcommand("init", "Create the database, or migrate it to this slmctl's schema")->callback(db_init_main);
    auto* info = sub.add_subcommand("info", "Schema version, row counts per table, file size");
    info->callback(db_info_main);
}

}  // namespace slm::cli
