// Progress display for long work: a redrawn bar on a TTY, periodic plain lines in a pipe
// when -v is given, nothing otherwise.
#include "common/common.h"

#include <cstdio>

namespace slm {

using clock_type = std::chrono::steady_clock;

progress::progress(std::string label, uint64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total) {
    start_ = last_draw_ = clock_type::now();
    tty_ = stderr_is_tty() && get_verbosity() >= verbosity::normal;
    verbose_ = get_verbosity() >= verbosity::verbose;
}

progress::~progress() {
    // never throws: finish() only formats and writes
    try {
        finish();
    } catch (...) {
    }
}

void progress::add(uint64_t n) { set(done_ + n); }

void progress::set(uint64_t done) {
    done_ = done;
    if (!tty_ && !verbose_) return;
    auto now = clock_type::now();
    auto gap = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
    if (now - last_draw_ >= gap) {
        last_draw_ = now;
        draw(false);
    }
}

void progress::set_total(uint64_t total) { total_ = total; }

void progress::finish() {
    if (finished_) return;
    finished_ = true;
    if (tty_ || verbose_) draw(true);
}

static std::string fmt_duration(double s) {
    if (s < 0 || s > 1e7) return "?";
    int t = static_cast<int>(s + 0.5);
    if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
    if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
    return fmt::format("{}s", t);
}

void progress::draw(bool final) {
    double elapsed = std::chrono::duration<double>(clock_type::now() - start_).count();
    double rate = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
    std::string line;
    if (total_ > 0) {
        double frac = std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_));
        const int width = 24;
        int filled = static_cast<int>(frac * width);
        std::string bar(filled, '#');
        bar.append(width - filled, '.');
        double eta = rate > 0 ? static_cast<double>(total_ - std::min(done_, total_)) / rate : -1;
        line = fmt::format("{} [{}] {:3.0f}% {}/{} {} {:.1f} {}/s ETA {}", label_, bar, frac * 100, done_, total_,
                           unit_, rate, unit_, final ? "0s" : fmt_duration(eta));
    } else {
        line = fmt::format("{} {} {} {:.1f} {}/s {}", label_, done_, unit_, rate, unit_, fmt_duration(elapsed));
    }
    if (tty_) {
        fmt::print(stderr, "\r\033[K{}{}", line, final ? "\n" : "");
    } else {
        fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
}

}  // namespace slm
