// Error helpers, stderr logging, thread count and small utilities shared by all modules.
// Progress display lives in progress.cpp.
#include "common/common.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>

namespace slm {

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
    throw internal_error(fmt::format("internal error: assertion `{}` failed at {}:{}{}{}", expr, file, line,
                                     msg.empty() ? "" : ": ", msg));
}

static std::atomic<int> g_verbosity{static_cast<int>(verbosity::normal)};
static std::mutex g_log_mutex;

void set_verbosity(verbosity v) { g_verbosity = static_cast<int>(v); }
verbosity get_verbosity() { return static_cast<verbosity>(g_verbosity.load()); }

bool stderr_is_tty() {
    static const bool tty = isatty(STDERR_FILENO) == 1;
    return tty;
}

void log_line(verbosity, std::string_view prefix, std::string_view msg) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    if (stderr_is_tty()) std::fputs("\r\033[K", stderr);  // clear a progress line, if any
    fmt::print(stderr, "{}{}\n", prefix, msg);
}

int available_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

static std::atomic<int> g_threads{0};

void set_num_threads(int n) {
    if (n <= 0) n = available_cores();
    g_threads = n;
    omp_set_num_threads(n);
}

int num_threads() {
    int n = g_threads.load();
    return n > 0 ? n : available_cores();
}

// utc_now_iso() is in timing.cpp, beside the epoch formatting it shares

std::string human_bytes(uint64_t n) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, units[u]);
}

namespace {
// $XDG_CACHE_HOME/slmctl, else ~/.cache/slmctl: where the set-up scripts put what they fetch
std::string default_cache_base() {
    if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/slmctl";
    const char* home = std::getenv("HOME");
    return std::string(home && *home ? home : "/tmp") + "/.cache/slmctl";
}
}  // namespace

std::string models_dir() {
    if (const char* env = std::getenv("SLMCTL_MODELS"); env && *env) return env;
    return default_cache_base() + "/models";
}

std::string cache_dir() {
    if (const char* env = std::getenv("SLMCTL_CACHE"); env && *env) return env;
    return default_cache_base();
}

}  // namespace slm
