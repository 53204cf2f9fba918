// Time helpers shared by the stages: elapsed seconds for timings, Unix epoch numbers (seconds,
// milliseconds, ...) to the ISO-8601 UTC text the store keeps.
#pragma once
#include <chrono>
#include <string>

namespace slm {

/// Seconds elapsed on the steady clock since `t`.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

/// A Unix timestamp in seconds, milliseconds, microseconds or nanoseconds, told apart by
/// magnitude (seconds up to 1e11, i.e. the year 5138; then ms up to 1e14, us up to 1e17, ns), as
/// seconds.
double epoch_seconds_by_magnitude(double x);

/// Epoch seconds as ISO-8601 UTC with milliseconds ("2025-03-15T09:51:46.500Z"); "" when `seconds`
/// is not finite, negative or past the year 5138.
std::string epoch_to_iso_utc(double seconds);

}  // namespace slm
