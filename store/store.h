// The SQLite store every pipeline stage reads and writes: RAII db / stmt / txn, schema migrations,
// runs bookkeeping (run_scope) and `db info`. Public, with store/stages.h (each stage's rows).
#pragma once
#include <cstdint>
#include <exception>
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
    /// The column's text without a copy: valid until the next step(), reset() or get_* of this column.
    std::string_view get_view(int col) const;
    std::optional<std::string> get_opt_text(int col) const;
    std::vector<uint8_t> get_blob(int col) const;
    const void* blob_data(int col) const;
    size_t blob_size(int col) const;

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
    /// True inside an explicit transaction (BEGIN ... COMMIT/ROLLBACK not yet run).
    bool in_transaction() const;
    /// How long a statement waits for another connection's write lock before SQLITE_BUSY.
    void set_busy_timeout(int ms);
    /// For a bulk load into indexes with random keys (collect): a page cache that holds a batch,
    /// fewer, larger WAL checkpoints.
    void tune_for_bulk_load();

    /// Error with the db path, the SQL (if any) and sqlite's message.
    [[noreturn]] void fail(std::string_view what, std::string_view sql = {}) const;

private:
    friend class stmt;
    friend class txn;
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

/// Inserts a `runs` row with status 'running', owned by this process; returns its id. Stages use
/// run_scope, which calls this; tests and tools that fake a run may call it directly.
int64_t begin_run(db& d, std::string_view command, std::string_view params_json);
/// Sets finished time, status ('ok', 'failed', 'interrupted'), a summary JSON and, for failed or
/// interrupted runs, the error text.
void finish_run(db& d, int64_t run_id, std::string_view status, std::string_view summary_json = "{}",
                std::string_view error = {});

/// How a run_scope answers SIGINT / SIGTERM.
enum class on_signal {
    exit,  ///< a watcher thread marks the run 'interrupted' and exits 128 + signal (130 / 143) at once
    stop,  ///< only stop_requested() turns true: the stage polls it, stops at a consistent point and
           ///< calls interrupted(); a second signal exits as `exit` does
};

/// One `runs` row for the lifetime of a stage (RAII). Created 'running' with this process as its
/// owner (pid, host, process start); finish() marks it 'ok' with its summary; an exception leaving
/// the scope marks it 'failed' with the message (guard() records it; without guard() the message is
/// generic); SIGINT/SIGTERM mark it 'interrupted' (see on_signal). A process killed outright cannot
/// mark anything: its row stays 'running' with an owner that no longer exists, which every reader
/// shows as 'interrupted' (run_status) and the next run_scope on the database writes back.
class run_scope {
public:
    run_scope(db& d, std::string_view command, std::string_view params_json, on_signal mode = on_signal::exit);
    ~run_scope();
    run_scope(const run_scope&) = delete;
    run_scope& operator=(const run_scope&) = delete;

    int64_t id() const { return id_; }
    /// Replaces the stored params (parameters resolved while running, e.g. the k chosen).
    void set_params(std::string_view params_json);
    /// Stores the device / dtype choice and the figures behind it (JSON).
    void set_device(std::string_view device_json);
    /// Marks the run 'ok'. Inside a caller's transaction the mark commits (or rolls back) with it.
    void finish(std::string_view summary_json);
    /// Marks the run 'interrupted' after a cooperative stop (on_signal::stop).
    void interrupted(std::string_view summary_json);
    /// Marks the run 'failed' with `error`.
    void fail(std::string_view error, std::string_view summary_json = "{}");
    /// Runs `body`; an exception from it marks the run 'failed' with its message, then propagates.
    template <typename F> decltype(auto) guard(F&& body) {
        try {
            return body();
        } catch (const std::exception& e) {
            fail_quietly(e.what());
            throw;
        } catch (...) {
            fail_quietly("unknown exception");
            throw;
        }
    }

private:
    void fail_quietly(std::string_view error) noexcept;
    db& db_;
    int64_t id_ = 0;
    bool done_ = false;          ///< marked, and not inside a transaction that could still roll back
    bool pending_ = false;       ///< finish() ran inside a caller's transaction
    int uncaught_ = 0;
};

/// True once SIGINT or SIGTERM arrived while a run_scope was active (reset when the first scope opens).
bool stop_requested();
/// The signal that asked to stop (SIGINT, SIGTERM), 0 when none.
int stop_signal();

/// Whether the process that owns a 'running' run still runs it.
enum class owner_state {
    alive,    ///< this host, the same process (pid and start time match)
    gone,     ///< this host, no such process (or the pid was reused), or no owner recorded
    unknown,  ///< another host: cannot tell
};

/// One `runs` row. `status` is the effective status: a 'running' row whose owner is gone reads
/// 'interrupted' (`stored_status` keeps what the row says).
struct run_row {
    int64_t id = 0;
    std::string command;
    std::string status;
    std::string stored_status;
    std::string started, finished;  ///< ISO-8601 UTC; finished "" while running
    std::string params = "{}", summary = "{}", device = "{}";  ///< JSON
    std::string error;              ///< why it failed or stopped ("" when none)
    int64_t pid = 0;                ///< owner (0: not recorded)
    std::string host;
    owner_state owner = owner_state::gone;  ///< meaningful while stored_status is 'running'
};
std::optional<run_row> get_run(db& d, int64_t run_id);
/// All runs (of `command` when not empty), oldest first.
std::vector<run_row> list_runs(db& d, std::string_view command = {});
/// The newest run of `command` whose status is 'ok' (0 when none): what a later stage takes as input.
int64_t latest_ok_run(db& d, std::string_view command);
/// The run `run_id` when it is an 'ok' run of `command`; user_error saying what it is otherwise.
run_row require_ok_run(db& d, int64_t run_id, std::string_view command);
/// Writes 'interrupted' into 'running' rows whose owner is gone; returns how many.
int reap_stale_runs(db& d);

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
    std::vector<run_row> runs;  ///< every run, oldest first, with its effective status
};
db_info info(db& d);

/// The SQLite library version ("3.40.1"), for `slmctl --version`.
const char* sqlite_version();

}  // namespace slm::store
