// `slmctl db info` (schema version, row counts per table, size) and `db init` (create/migrate).
// info opens read-only so it can run while collect writes (WAL).
#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"

namespace slm::cli {

static void db_info_main() {
    apply_globals();
    auto& g = globals();
    auto d = store::db::open(g.db_path, store::open_mode::read_only);
    auto inf = store::info(d);
    if (g.json) {
        nlohmann::json tables = nlohmann::json::object();
        for (const auto& t : inf.tables) tables[t.table] = t.rows;
        print_json({{"path", inf.path},
                    {"schema_version", inf.schema_version},
                    {"schema_version_latest", inf.schema_version_latest},
                    {"journal_mode", inf.journal_mode},
                    {"bytes", inf.file_bytes},
                    {"tables", tables}});
        return;
    }
    fmt::print("database  {} ({}, journal {})\n", inf.path, human_bytes(inf.file_bytes), inf.journal_mode);
    fmt::print("schema    version {} (this slmctl writes {})\n", inf.schema_version, inf.schema_version_latest);
    fmt::print("{:<18}{:>12}\n", "table", "rows");
    for (const auto& t : inf.tables) fmt::print("{:<18}{:>12}\n", t.table, t.rows);
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
