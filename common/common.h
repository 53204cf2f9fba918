// Shared by every module: error tiers, logging to stderr, progress display, thread count.
// The only public header of slm_common.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <chrono>
#include <fmt/format.h>

namespace slm {

// ---- errors ------------------------------------------------------------------------------
// Two tiers (as in faiss): user_error for bad input or environment (exit 1, with a hint),
// internal_error for broken invariants of our own (exit 3, a bug). usage_error exits 2.

/// Bad input or environment the user must act on; `hint` says what to do.
struct user_error : std::runtime_error {
    std::string hint;
    explicit user_error(const std::string& msg, std::string hint_ = {})
        : std::runtime_error(msg), hint(std::move(hint_)) {}
};

/// Command-line misuse, or a subcommand that is not built yet (exit 2).
struct usage_error : std::runtime_error {
    std::string hint;
    explicit usage_error(const std::string& msg, std::string hint_ = {})
        : std::runtime_error(msg), hint(std::move(hint_)) {}
};

/// One of our invariants does not hold: a bug in slmctl (exit 3).
struct internal_error : std::logic_error {
    using std::logic_error::logic_error;
};

[[noreturn]] void assert_fail(const char* expr, const char* file, int line, const std::string& msg);

#define SLM_ASSERT(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) ::slm::assert_fail(#cond, __FILE__, __LINE__, ::fmt::format("" __VA_ARGS__)); \
    } while (0)

// ---- logging -----------------------------------------------------------------------------
enum class verbosity { quiet = 0, normal = 1, verbose = 2, debug = 3 };

void set_verbosity(verbosity v);
verbosity get_verbosity();
bool stderr_is_tty();
void log_line(verbosity level, std::string_view prefix, std::string_view msg);

template <typename... Args> void log_info(fmt::format_string<Args...> f, Args&&... a) {
    if (get_verbosity() >= verbosity::normal) log_line(verbosity::normal, "", fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args> void log_warn(fmt::format_string<Args...> f, Args&&... a) {
    if (get_verbosity() >= verbosity::quiet) log_line(verbosity::quiet, "warning: ", fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args> void log_verbose(fmt::format_string<Args...> f, Args&&... a) {
    if (get_verbosity() >= verbosity::verbose) log_line(verbosity::verbose, "", fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args> void log_debug(fmt::format_string<Args...> f, Args&&... a) {
    if (get_verbosity() >= verbosity::debug) log_line(verbosity::debug, "debug: ", fmt::format(f, std::forward<Args>(a)...));
}

// ---- progress ----------------------------------------------------------------------------
/// Progress of long work on stderr. On a TTY: one redrawn line with a bar (if total is known),
/// rate and ETA. In a pipe: silent unless -v, then a plain line every few seconds.
class progress {
public:
    /// `total` = 0 when unknown; `unit` names what is counted ("lines", "MB", "steps").
    progress(std::string label, uint64_t total = 0, std::string unit = "items");
    ~progress();
    progress(const progress&) = delete;
    progress& operator=(const progress&) = delete;

    void add(uint64_t n = 1);
    void set(uint64_t done);
    void set_total(uint64_t total);
    /// Final line (TTY) or a summary (verbose); idempotent.
    void finish();

private:
    void draw(bool final);
    std::string label_, unit_;
    uint64_t total_ = 0, done_ = 0;
    std::chrono::steady_clock::time_point start_, last_draw_;
    bool tty_ = false, verbose_ = false, finished_ = false;
};

// ---- threads -----------------------------------------------------------------------------
/// Number of cores this process may use (sched affinity), at least 1.
int available_cores();
/// Sets OpenMP threads (faiss, our loops) and remembers the value for libtorch (model module).
void set_num_threads(int n);
int num_threads();

// ---- small utilities ---------------------------------------------------------------------
/// Current UTC time as ISO-8601 with milliseconds ("2026-11-25T13:26:23.123Z").
std::string utc_now_iso();
/// Human size: 1536 -> "1.5 KiB".
std::string human_bytes(uint64_t n);
/// The directory that holds fetched models: $SLMCTL_MODELS or ~/.cache/slmctl/models.
std::string models_dir();
/// Where slmctl keeps per-machine state (libtorch, the dtype probe): $SLMCTL_CACHE, else
/// $XDG_CACHE_HOME/slmctl, else ~/.cache/slmctl (as scripts/fetch-libtorch.sh).
std::string cache_dir();

}  // namespace slm
