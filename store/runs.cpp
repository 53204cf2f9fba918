// The runs table: run_scope (a run row that is marked ok / failed / interrupted however the stage
// ends), SIGINT/SIGTERM handling, owner liveness (pid, host, process start) and run queries.
#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <utility>

#include "common/common.h"
#include "store/store.h"

namespace slm::store {

// ---- the owner of a run ------------------------------------------------------------------------

namespace {

std::string host_name() {
    char buf[256] = {};
    if (gethostname(buf, sizeof buf - 1) != 0) return "";
    return buf;
}

std::string boot_id() {
    std::ifstream f("/proc/sys/kernel/random/boot_id");
    std::string id;
    std::getline(f, id);
    return id;
}

/// Field 3 (state) and field 22 (start time, clock ticks since boot) of /proc/PID/stat; false
/// when there is no such process (or no /proc).
bool proc_stat(int64_t pid, char& state, std::string& start) {
    std::ifstream f(fmt::format("/proc/{}/stat", pid));
    std::string line;
    if (!std::getline(f, line)) return false;
    size_t rp = line.rfind(')');  // the command name may hold spaces and parentheses
    if (rp == std::string::npos) return false;
    std::istringstream rest(line.substr(rp + 1));
    std::string field;
    for (int i = 3; i <= 22 && rest >> field; ++i) {
        if (i == 3) state = field.empty() ? '?' : field[0];
        if (i == 22) start = field;
    }
    return !start.empty();
}

/// "BOOT_ID/START_TICKS" of a process: the pid with it names one process, even after pid reuse.
std::string process_start(int64_t pid) {
    char state = '?';
    std::string start;
    if (!proc_stat(pid, state, start)) return "";
    return boot_id() + "/" + start;
}

owner_state check_owner(int64_t pid, const std::string& host, const std::string& start) {
    if (pid <= 0) return owner_state::gone;  // a row without owner: begun before schema 3
    if (host != host_name()) return owner_state::unknown;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return owner_state::gone;
    char state = '?';
    std::string ticks;
    if (!proc_stat(pid, state, ticks)) return owner_state::alive;  // no /proc: trust kill()
    if (state == 'Z' || state == 'X') return owner_state::gone;     // killed, not yet reaped
    if (!start.empty() && start != boot_id() + "/" + ticks) return owner_state::gone;  // pid reused
    return owner_state::alive;
}

const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// One UPDATE for every way a run ends; `only_running` leaves a row someone else already marked.
int mark_run(db& d, int64_t run_id, std::string_view status, const std::optional<std::string_view>& summary,
             std::string_view error, bool only_running) {
    auto s = d.prepare(std::string("UPDATE runs SET finished = ?, status = ?, summary = COALESCE(?, summary), "
                                   "error = ? WHERE id = ?") +
                       (only_running ? " AND status = 'running'" : ""));
    s.bind_all(utc_now_iso(), status, summary);
    if (error.empty()) s.bind_null(4);
    else s.bind(4, error);
    s.bind(5, run_id);
    s.run();
    return d.changes();
}

// ---- signals: one handler set while any run_scope is open ------------------------------------------

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_signal = 0;
int g_pipe[2] = {-1, -1};

struct active_run {
    std::string path;
    int64_t id;
    std::string command;
    on_signal mode;
};
std::mutex g_mu;
std::vector<active_run> g_active;
struct sigaction g_old_int{}, g_old_term{};
std::thread g_watcher;

extern "C" void on_stop_signal(int sig) {
    int saved = errno;
    g_signal = sig;
    g_stop = 1;
    char b = 's';
    if (g_pipe[1] >= 0) (void)!::write(g_pipe[1], &b, 1);  // async-signal-safe: the watcher does the rest
    errno = saved;
}

// Marks every active run 'interrupted' through a connection of its own (the stage's connection may
// be mid-statement on the main thread), then exits. When the stage holds a write lock for longer
// than the wait, its row stays 'running' with this (then dead) process as owner: read as interrupted.
[[noreturn]] void exit_interrupted(const std::vector<active_run>& runs, int sig) {
    std::string err = fmt::format("interrupted by {}", signal_name(sig));
    for (const auto& r : runs) {
        try {
            auto d = db::open(r.path, open_mode::read_write);
            d.set_busy_timeout(3000);
            mark_run(d, r.id, "interrupted", std::nullopt, err, true);
        } catch (...) {
        }
        fmt::print(stderr, "error: {} run {} {}; marked 'interrupted'\n", r.command, r.id, err);
    }
    std::fflush(stderr);
    ::_exit(128 + sig);
}

void watch_signals(int fd) {
    int seen = 0;
    for (;;) {
        char b = 0;
        ssize_t n = ::read(fd, &b, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || b == 'q') return;
        ++seen;
        std::vector<active_run> runs;
        {
            std::lock_guard<std::mutex> lk(g_mu);
            runs = g_active;
        }
        if (runs.empty()) continue;
        bool now = seen >= 2;  // a second signal does not wait for a cooperative stop
        for (const auto& r : runs) now |= r.mode == on_signal::exit;
        if (now) exit_interrupted(runs, g_signal);
    }
}

void register_run(active_run r) {
    std::lock_guard<std::mutex> lk(g_mu);
    g_active.push_back(std::move(r));
    if (g_active.size() > 1) return;
    g_stop = 0;
    g_signal = 0;
    if (::pipe2(g_pipe, O_CLOEXEC) != 0) {
        g_pipe[0] = g_pipe[1] = -1;
        log_warn("cannot create a pipe for signal handling: SIGINT/SIGTERM stop runs only cooperatively");
    }
    // no SA_RESTART: a blocking read (stdin) returns EINTR so a cooperative stage sees the flag
    struct sigaction sa{};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &g_old_int);
    sigaction(SIGTERM, &sa, &g_old_term);
    if (g_pipe[0] >= 0) g_watcher = std::thread(watch_signals, g_pipe[0]);
}

void unregister_run(int64_t id) {
    std::thread watcher;
    int fds[2];
    {
        std::lock_guard<std::mutex> lk(g_mu);
        auto it = std::find_if(g_active.begin(), g_active.end(), [&](const active_run& r) { return r.id == id; });
        if (it != g_active.end()) g_active.erase(it);
        if (!g_active.empty()) return;
        sigaction(SIGINT, &g_old_int, nullptr);
        sigaction(SIGTERM, &g_old_term, nullptr);
        watcher = std::move(g_watcher);
        fds[0] = std::exchange(g_pipe[0], -1);
        fds[1] = std::exchange(g_pipe[1], -1);
    }
    // joined outside the lock: the watcher takes it to read the active runs
    if (watcher.joinable()) {
        char q = 'q';
        (void)!::write(fds[1], &q, 1);
        watcher.join();
    }
    for (int fd : fds)
        if (fd >= 0) ::close(fd);
}

}  // namespace

bool stop_requested() { return g_stop != 0; }
int stop_signal() { return g_signal; }

// ---- rows ------------------------------------------------------------------------------------------

int64_t begin_run(db& d, std::string_view command, std::string_view params_json) {
    auto s = d.prepare(
        "INSERT INTO runs (command, params, started, status, pid, host, owner_start) "
        "VALUES (?, ?, ?, 'running', ?, ?, ?)");
    const int64_t pid = ::getpid();
    s.bind_all(command, params_json, utc_now_iso(), pid, host_name(), process_start(pid));
    s.run();
    return d.last_insert_rowid();
}

void finish_run(db& d, int64_t run_id, std::string_view status, std::string_view summary_json, std::string_view error) {
    int n = mark_run(d, run_id, status, summary_json, error, false);
    SLM_ASSERT(n == 1, "run {} does not exist", run_id);
}

// ---- run_scope -------------------------------------------------------------------------------------

run_scope::run_scope(db& d, std::string_view command, std::string_view params_json, on_signal mode)
    : db_(d), uncaught_(std::uncaught_exceptions()) {
    int reaped = reap_stale_runs(d);
    if (reaped) log_verbose("{} run{} left 'running' by a process that is gone: marked interrupted", reaped, reaped == 1 ? "" : "s");
    id_ = begin_run(d, command, params_json);
    register_run({d.path(), id_, std::string(command), mode});
}

run_scope::~run_scope() {
    if (!done_) {
        std::string status = "failed", err;
        if (pending_)
            err = "the transaction that marked the run finished was rolled back";
        else if (stop_requested())
            status = "interrupted", err = fmt::format("interrupted by {}", signal_name(stop_signal()));
        else if (std::uncaught_exceptions() > uncaught_)
            err = "an exception left the run";
        else
            err = "the run ended without being marked finished";
        try {
            mark_run(db_, id_, status, std::nullopt, err, true);
        } catch (...) {
        }
    }
    unregister_run(id_);
}

namespace {
void mark_scope(db& d, int64_t id, bool& done, bool& pending, std::string_view status, std::string_view summary,
                std::string_view error) {
    SLM_ASSERT(!done && !pending, "run {} marked twice", id);
    if (mark_run(d, id, status, summary, error, true) == 0)
        log_warn("run {} was already marked (by a signal?); not marking it '{}'", id, status);
    (d.in_transaction() ? pending : done) = true;
}
}  // namespace

void run_scope::finish(std::string_view summary_json) { mark_scope(db_, id_, done_, pending_, "ok", summary_json, {}); }

void run_scope::interrupted(std::string_view summary_json) {
    mark_scope(db_, id_, done_, pending_, "interrupted", summary_json,
               fmt::format("interrupted by {}", signal_name(stop_signal())));
}

void run_scope::fail(std::string_view error, std::string_view summary_json) {
    mark_scope(db_, id_, done_, pending_, "failed", summary_json, error);
}

void run_scope::fail_quietly(std::string_view error) noexcept {
    if (done_ || pending_) return;
    try {
        fail(error);
    } catch (...) {
    }
}

void run_scope::set_params(std::string_view params_json) {
    auto s = db_.prepare("UPDATE runs SET params = ? WHERE id = ?");
    s.bind_all(params_json, id_);
    s.run();
}

void run_scope::set_device(std::string_view device_json) {
    auto s = db_.prepare("UPDATE runs SET device = ? WHERE id = ?");
    s.bind_all(device_json, id_);
    s.run();
}

// ---- queries -----------------------------------------------------------------------------------------

namespace {

std::vector<run_row> query_runs(db& d, std::string_view where, int64_t id, std::string_view command) {
    // a schema-2 database opened read-only (db info) has no owner columns: every run reads ownerless
    const bool v3 = d.user_version() >= 3;
    std::string sql = v3 ? "SELECT id, command, status, started, COALESCE(finished, ''), params, summary, device, "
                           "COALESCE(error, ''), COALESCE(pid, 0), COALESCE(host, ''), COALESCE(owner_start, '') FROM runs"
                         : "SELECT id, command, status, started, COALESCE(finished, ''), params, summary, '{}', '', 0, "
                           "'', '' FROM runs";
    sql += where;
    sql += " ORDER BY id";
    auto s = d.prepare(sql);
    if (id) s.bind(1, id);
    if (!command.empty()) s.bind(1, command);
    std::vector<run_row> out;
    while (s.step()) {
        run_row r;
        r.id = s.get_int(0);
        r.command = s.get_text(1);
        r.stored_status = r.status = s.get_text(2);
        r.started = s.get_text(3);
        r.finished = s.get_text(4);
        r.params = s.get_text(5);
        r.summary = s.get_text(6);
        r.device = s.get_text(7);
        r.error = s.get_text(8);
        r.pid = s.get_int(9);
        r.host = s.get_text(10);
        if (r.stored_status == "running") {
            r.owner = check_owner(r.pid, r.host, s.get_text(11));
            if (r.owner == owner_state::gone) {
                r.status = "interrupted";
                if (r.error.empty())
                    r.error = r.pid ? fmt::format("process {} on {} ended without finishing the run", r.pid, r.host)
                                    : "no owner recorded (begun before schema 3) and never finished";
            }
        }
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

std::optional<run_row> get_run(db& d, int64_t run_id) {
    auto v = query_runs(d, " WHERE id = ?", run_id, {});
    if (v.empty()) return std::nullopt;
    return std::move(v.front());
}

std::vector<run_row> list_runs(db& d, std::string_view command) {
    return command.empty() ? query_runs(d, "", 0, {}) : query_runs(d, " WHERE command = ?", 0, command);
}

int64_t latest_ok_run(db& d, std::string_view command) {
    auto s = d.prepare("SELECT id FROM runs WHERE command = ? AND status = 'ok' ORDER BY id DESC LIMIT 1");
    s.bind(1, command);
    return s.step() ? s.get_int(0) : 0;
}

run_row require_ok_run(db& d, int64_t run_id, std::string_view command) {
    auto r = get_run(d, run_id);
    if (!r)
        throw user_error(fmt::format("run {} does not exist in {}", run_id, d.path()),
                         fmt::format("`slmctl db info` lists the runs; `slmctl {}` makes one", command));
    if (r->command != command)
        throw user_error(fmt::format("run {} is a '{}' run, not a '{}' run", run_id, r->command, command),
                         fmt::format("`slmctl db info` lists the runs; `slmctl {}` makes one", command));
    if (r->status != "ok") {
        std::string why = r->error.empty() ? "" : fmt::format(" ({})", r->error);
        std::string hint = r->status == "running" ? "wait for it to finish"
                                                  : fmt::format("its results are incomplete: run `slmctl {}` again", command);
        throw user_error(fmt::format("{} run {} has status '{}'{}, not 'ok'", command, run_id, r->status, why), hint);
    }
    return std::move(*r);
}

int reap_stale_runs(db& d) {
    int n = 0;
    for (const auto& r : query_runs(d, " WHERE status = 'running'", 0, {}))
        if (r.status == "interrupted") n += mark_run(d, r.id, "interrupted", std::nullopt, r.error, true);
    return n;
}

}  // namespace slm::store
