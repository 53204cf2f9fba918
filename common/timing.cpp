// Epoch numbers to ISO-8601 UTC text (the store's timestamp form); utc_now_iso() uses it too.
#include "common/timing.h"

#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/common.h"

namespace slm {

double epoch_seconds_by_magnitude(double x) {
    if (x > 1e17) return x / 1e9;  // nanoseconds
    if (x > 1e14) return x / 1e6;  // microseconds
    if (x > 1e11) return x / 1e3;  // milliseconds
    return x;
}

std::string epoch_to_iso_utc(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e11) return {};
    auto whole = static_cast<std::time_t>(seconds);
    int ms = static_cast<int>(std::lround((seconds - static_cast<double>(whole)) * 1000.0));
    if (ms >= 1000) {
        ++whole;
        ms -= 1000;
    }
    std::tm tm{};
    gmtime_r(&whole, &tm);
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

std::string utc_now_iso() {
    using namespace std::chrono;
    const auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    return epoch_to_iso_utc(static_cast<double>(ms) / 1000.0);
}

}  // namespace slm
