// The SQLite store every pipeline stage reads and writes: RAII db / stmt / txn, schema migrations,
// runs bookkeeping and `db info`. The only public header of slm_store.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace slm::store {

/// Schema version this build writes (PRAGMA user_version after all migrations).
int schema_version_latest();

class db;

/// A prepared statement. Resets (and clears bindings) on scope exit so it can be cached.
/// Bind indices are 1-based, as in SQLite.
class stmt {
public:
    stmt(db& owner, std::string_view sql);
    ~stmt();
    stmt(stmt&& o) noexcept;
    stmt& operator=(stmt&&) = delete;
    stmt(const stmt&) = delete;

    stmt& bind(int idx, int64_t v);
    stmt& bind(int idx, int v) { return bind(idx, static_cast<int64_t>(v)); }
    stmt& bind(int idx, double v);
    stmt& bind(int idx, std::string_view v);  ///< copied (SQLITE_TRANSIENT)
    stmt& bind(int idx, const char* v) { return v ? bind(idx, std::string_view(v)) : bind_null(idx); }
    stmt& bind(int idx, const std::string& v) { return bind(idx, std::string_view(v)); }
    stmt& bind(int idx, std::nullptr_t) { return bind_null(idx); }
    template <typename T> stmt& bind(int idx, const std::optional<T>& v) {
        return v ? bind(idx, *v) : bind_null(idx);
    }
    /// Binds text without copying (SQLITE_STATIC): the caller keeps `v` alive until the statement
    /// is stepped and reset. For hot insert loops; empty `v` binds NULL when `empty_is_null`.
    stmt& bind_static(int idx, std::string_view v, bool empty_is_null = false);
    stmt& bind_blob(int idx, const void* data, size_t n);
    stmt& bind_null(int idx);

    /// Binds all arguments in order from index 1.
    template <typename... Args> stmt& bind_all(Args&&... args) {
        int i = 0;
        (bind(++i, std::forward<Args>(args)), ...);
        return *this;
    }

    /// Steps once; true when a row is available, false when done.
    bool step();
    /// Steps to completion (for INSERT/UPDATE/DELETE), then resets.
    void run();
    void reset();

    int columns() const;
    bool is_null(int col) const;                 ///< 0-based column
    int64_t get_int(int col) const;
    double get_double(int col) const;
    std::string get_text(int col) const;
    std::optional<std::string> get_opt_text(int col) const;
    std::vector<uint8_t> get_blob(int col) const;
    const void* blob_data(int col) const;
    size_t blob_size(int col) const;

    sqlite3_stmt* handle() { return st_; }

private:
    [[noreturn]] void fail(const char* what) const;
    db* db_;
    sqlite3_stmt* st_ = nullptr;
};

enum class open_mode {
    read_write,  ///< create if missing, migrate to the latest schema
    read_only,   ///< must exist; refuses a schema newer than this build
};

/// One connection. At open: WAL, foreign_keys=ON, busy_timeout, migrations (read_write).
class db {
public:
    static db open(const std::string& path, open_mode mode = open_mode::read_write);
    ~db();
    db(db&& o) noexcept;
    db& operator=(db&& o) noexcept;
    db(const db&) = delete;

    void exec(std::string_view sql);
    stmt prepare(std::string_view sql) { return stmt(*this, sql); }
    int64_t last_insert_rowid() const;
    int changes() const;
    int user_version();
    const std::string& path() const { return path_; }
    sqlite3* handle() { return h_; }

    /// Error with the db path, the SQL (if any) and sqlite's message.
    [[noreturn]] void fail(std::string_view what, std::string_view sql = {}) const;

private:
    db() = default;
    void migrate();
    sqlite3* h_ = nullptr;
    std::string path_;
};

/// A transaction that rolls back in its destructor unless committed; never throws from it.
class txn {
public:
    enum class kind { deferred, immediate };
    explicit txn(db& d, kind k = kind::immediate);
    ~txn();
    txn(const txn&) = delete;
    txn& operator=(const txn&) = delete;
    void commit();

private:
    db& db_;
    bool done_ = false;
};

// ---- runs: every stage records what it did, with which parameters ------------------------

/// Inserts a `runs` row with status 'running'; returns its id.
int64_t begin_run(db& d, std::string_view command, std::string_view params_json);
/// Sets finished time, status ('ok', 'failed', 'interrupted') and a summary JSON.
void finish_run(db& d, int64_t run_id, std::string_view status, std::string_view summary_json = "{}");

// ---- db info --------------------------------------------------------------------------------
struct table_rows {
    std::string table;
    int64_t rows = 0;
};
struct db_info {
    std::string path;
    int schema_version = 0;
    int schema_version_latest = 0;
    int64_t file_bytes = 0;     ///< main file + WAL
    std::string journal_mode;
    std::vector<table_rows> tables;
};
db_info info(db& d);

}  // namespace slm::store
