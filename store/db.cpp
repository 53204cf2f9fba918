// RAII over sqlite3: connection set-up (WAL, foreign keys, busy timeout), migrations,
// prepared statements, transactions and db info. Runs bookkeeping is store/runs.cpp.
#include "store/store.h"

#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common/common.h"
#include "store/schema.h"

namespace slm::store {

int schema_version_latest() { return migrations().empty() ? 0 : migrations().back().version; }

// ---- db ---------------------------------------------------------------------------------------

void db::fail(std::string_view what, std::string_view sql) const {
    std::string msg = fmt::format("{} ({}): {}", what, path_, h_ ? sqlite3_errmsg(h_) : "no connection");
    if (!sql.empty()) msg += fmt::format("\n  in SQL: {}", sql.substr(0, 300));
    int code = h_ ? sqlite3_errcode(h_) : 0;
    std::string hint;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
        hint = "another slmctl process holds a write lock on this database; wait for it or use another --db";
    else if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
        hint = "the file is not a valid slmctl database; point --db at another path";
    else if (code == SQLITE_READONLY || code == SQLITE_CANTOPEN || code == SQLITE_PERM)
        hint = "check that the directory exists and is writable";
    else if (code == SQLITE_FULL || code == SQLITE_IOERR)
        hint = "check free disk space";
    throw user_error(msg, hint);
}

namespace {

// SQLite's page-cache lines come from one anonymous mapping that the kernel may back with 2 MB pages
// (madvise; where transparent huge pages are off it is plain memory). collect's 128 MB cache
// (tune_for_bulk_load) fills fresh memory as the database grows, and with lines from malloc the 4 KB
// page faults were 11% of a long-prompt collect: this took it from 112-152 to 169-173 MB/s (55 MB,
// one core, bench/scrub) and a 200 MB short-prompt collect from 80-83 to 90-92 MB/s. Lines are
// touched only when used (MAP_NORESERVE); pages larger than 16 KB, or a full pool, fall back to
// malloc. Must run before SQLite initialises, so before the first open.
void configure_page_cache() {
    static const bool done = [] {
        int hdr = 0;
        if (sqlite3_config(SQLITE_CONFIG_PCACHE_HDRSZ, &hdr) != SQLITE_OK) return false;
        const size_t line = (16384 + size_t(hdr) + 7) & ~size_t(7);
        const size_t lines = 8448;  // 128 MB of 16 KB pages, and some for other connections
        void* p = ::mmap(nullptr, line * lines, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                         -1, 0);
        if (p == MAP_FAILED) return false;
        ::madvise(p, line * lines, MADV_HUGEPAGE);
        if (sqlite3_config(SQLITE_CONFIG_PAGECACHE, p, int(line), int(lines)) != SQLITE_OK) {
            ::munmap(p, line * lines);
            return false;
        }
        return true;
    }();
    (void)done;
}

}  // namespace

db db::open(const std::string& path, open_mode mode) {
    configure_page_cache();
    db d;
    d.path_ = path;
    int flags = mode == open_mode::read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    flags |= SQLITE_OPEN_NOMUTEX;
    if (mode == open_mode::read_only) {
        struct stat st{};
        if (::stat(path.c_str(), &st) != 0)
            throw user_error(fmt::format("database '{}' does not exist", path),
                             "run `slmctl collect` first, or pass --db / set SLMCTL_DB to an existing database");
    }
    if (sqlite3_open_v2(path.c_str(), &d.h_, flags, nullptr) != SQLITE_OK) d.fail("cannot open database");
    sqlite3_extended_result_codes(d.h_, 1);
    sqlite3_busy_timeout(d.h_, 10000);
    d.exec("PRAGMA foreign_keys = ON");
    if (mode == open_mode::read_write) {
        // 16 KiB pages: random-key index inserts (content_id) rewrite fewer pages; measured ~20%
        // less CPU for a 1 GB collect and a 25% smaller file. Only takes effect on a new database.
        d.exec("PRAGMA page_size = 16384");
        // WAL: readers (db info, other stages) proceed while collect writes.
        d.exec("PRAGMA journal_mode = WAL");
        d.exec("PRAGMA synchronous = NORMAL");
    }
    int v = d.user_version();
    if (v > schema_version_latest()) {
        throw user_error(fmt::format("database '{}' has schema version {}, newer than this slmctl understands ({})",
                                     path, v, schema_version_latest()),
                         "it was written by a newer slmctl: upgrade slmctl, or use another --db");
    }
    if (mode == open_mode::read_write) d.migrate();
    return d;
}

db::~db() {
    if (h_) sqlite3_close_v2(h_);
}

db::db(db&& o) noexcept : h_(std::exchange(o.h_, nullptr)), path_(std::move(o.path_)) {}

db& db::operator=(db&& o) noexcept {
    if (this != &o) {
        if (h_) sqlite3_close_v2(h_);
        h_ = std::exchange(o.h_, nullptr);
        path_ = std::move(o.path_);
    }
    return *this;
}

void db::exec(std::string_view sql) {
    std::string s(sql);
    char* err = nullptr;
    if (sqlite3_exec(h_, s.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
        std::string m = err ? err : "";
        sqlite3_free(err);
        fail("SQL failed", sql);
    }
}

int64_t db::last_insert_rowid() const { return sqlite3_last_insert_rowid(h_); }
int db::changes() const { return sqlite3_changes(h_); }
bool db::in_transaction() const { return sqlite3_get_autocommit(h_) == 0; }
void db::set_busy_timeout(int ms) { sqlite3_busy_timeout(h_, ms); }

void db::tune_for_bulk_load() {
    // The content_id and response_id indexes take random keys, so every batch dirties index pages
    // all over; a cache that holds a whole batch and fewer, larger checkpoints keep each such page
    // to about one write per batch (1 GB in: 3.8 GB written instead of 5.6).
    exec("PRAGMA cache_size = -131072");
    exec("PRAGMA wal_autocheckpoint = 16384");
}
const char* sqlite_version() { return sqlite3_libversion(); }

int db::user_version() {
    stmt s(*this, "PRAGMA user_version");
    return s.step() ? static_cast<int>(s.get_int(0)) : 0;
}

void db::migrate() {
    int v = user_version();
    if (v == schema_version_latest()) return;
    // One immediate transaction for all pending migrations: a concurrent opener waits, then sees
    // the new version; a crash leaves the old version intact.
    txn t(*this, txn::kind::immediate);
    v = user_version();  // re-read under the write lock
    for (const auto& m : migrations()) {
        if (m.version <= v) continue;
        log_debug("migrating {} to schema {}: {}", path_, m.version, m.description);
        exec(m.sql);
        exec(fmt::format("PRAGMA user_version = {}", m.version));
    }
    t.commit();
}

// ---- stmt -------------------------------------------------------------------------------------

stmt::stmt(db& owner, std::string_view sql) : db_(&owner) {
    if (sqlite3_prepare_v2(owner.h_, sql.data(), static_cast<int>(sql.size()), &st_, nullptr) != SQLITE_OK)
        owner.fail("cannot prepare statement", sql);
}

stmt::~stmt() {
    if (st_) sqlite3_finalize(st_);
}

stmt::stmt(stmt&& o) noexcept : db_(o.db_), st_(std::exchange(o.st_, nullptr)) {}

void stmt::fail(const char* what) const {
    db_->fail(what, st_ ? sqlite3_sql(st_) : "");
}

stmt& stmt::bind(int idx, int64_t v) {
    if (sqlite3_bind_int64(st_, idx, v) != SQLITE_OK) fail("bind failed");
    return *this;
}
stmt& stmt::bind(int idx, double v) {
    if (sqlite3_bind_double(st_, idx, v) != SQLITE_OK) fail("bind failed");
    return *this;
}
// A default-constructed view has no data pointer, which SQLite would bind as NULL: text is text.
static const char* text_ptr(std::string_view v) { return v.data() ? v.data() : ""; }

stmt& stmt::bind(int idx, std::string_view v) {
    if (sqlite3_bind_text64(st_, idx, text_ptr(v), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8) != SQLITE_OK)
        fail("bind failed");
    return *this;
}
stmt& stmt::bind_static(int idx, std::string_view v, bool empty_is_null) {
    if (empty_is_null && v.empty()) return bind_null(idx);
    if (sqlite3_bind_text64(st_, idx, text_ptr(v), v.size(), SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK)
        fail("bind failed");
    return *this;
}
stmt& stmt::bind_blob(int idx, const void* data, size_t n) {
    if (sqlite3_bind_blob64(st_, idx, data, n, SQLITE_TRANSIENT) != SQLITE_OK) fail("bind failed");
    return *this;
}
stmt& stmt::bind_null(int idx) {
    if (sqlite3_bind_null(st_, idx) != SQLITE_OK) fail("bind failed");
    return *this;
}

bool stmt::step() {
    int rc = sqlite3_step(st_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string sql = sqlite3_sql(st_) ? sqlite3_sql(st_) : "";
    sqlite3_reset(st_);
    db_->fail("statement failed", sql);
}

void stmt::run() {
    while (step()) {
    }
    reset();
}

void stmt::reset() {
    sqlite3_reset(st_);
    sqlite3_clear_bindings(st_);
}

int stmt::columns() const { return sqlite3_column_count(st_); }
bool stmt::is_null(int col) const { return sqlite3_column_type(st_, col) == SQLITE_NULL; }
int64_t stmt::get_int(int col) const { return sqlite3_column_int64(st_, col); }
double stmt::get_double(int col) const { return sqlite3_column_double(st_, col); }
std::string stmt::get_text(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p ? std::string(p, sqlite3_column_bytes(st_, col)) : std::string();
}
std::string_view stmt::get_view(int col) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(st_, col));
    return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(st_, col))) : std::string_view();
}
std::optional<std::string> stmt::get_opt_text(int col) const {
    if (is_null(col)) return std::nullopt;
    return get_text(col);
}
const void* stmt::blob_data(int col) const { return sqlite3_column_blob(st_, col); }
size_t stmt::blob_size(int col) const { return static_cast<size_t>(sqlite3_column_bytes(st_, col)); }
std::vector<uint8_t> stmt::get_blob(int col) const {
    auto p = static_cast<const uint8_t*>(sqlite3_column_blob(st_, col));
    size_t n = blob_size(col);
    return p ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>();
}

// ---- txn --------------------------------------------------------------------------------------

txn::txn(db& d, kind k) : db_(d) { db_.exec(k == kind::immediate ? "BEGIN IMMEDIATE" : "BEGIN"); }

txn::~txn() {
    if (!done_) sqlite3_exec(db_.h_, "ROLLBACK", nullptr, nullptr, nullptr);  // no throw
}

void txn::commit() {
    SLM_ASSERT(!done_, "transaction committed twice");
    db_.exec("COMMIT");
    done_ = true;
}

// ---- info -------------------------------------------------------------------------------------

static int64_t file_size(const std::string& p) {
    struct stat st{};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

db_info info(db& d) {
    db_info r;
    r.path = d.path();
    r.schema_version = d.user_version();
    r.schema_version_latest = schema_version_latest();
    r.file_bytes = file_size(d.path()) + file_size(d.path() + "-wal");
    {
        auto s = d.prepare("PRAGMA journal_mode");
        if (s.step()) r.journal_mode = s.get_text(0);
    }
    for (const auto& t : pipeline_tables()) {
        auto chk = d.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?");
        chk.bind(1, t);
        if (!chk.step()) continue;  // older schema without this table
        auto s = d.prepare(fmt::format("SELECT count(*) FROM \"{}\"", t));
        r.tables.push_back({t, s.step() ? s.get_int(0) : 0});
    }
    r.runs = list_runs(d);
    return r;
}

}  // namespace slm::store
