// Intervals (Wilson for rates, percentile bootstrap for means), per-kind verdicts on a metric's
// lower bound, and the volume-weighted share of replaceable clusters with its bootstrap interval.
#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/metrics.h"

namespace slm::eval {

namespace {

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// xoshiro256** (Blackman & Vigna): our own generator so resamples are the same on every
/// standard library (std::uniform_int_distribution is not specified bit for bit).
struct rng {
    uint64_t s[4];
    explicit rng(uint64_t seed) {
        for (auto& x : s) x = splitmix64(seed);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
    }
    /// Uniform in [0, n), by rejection (no modulo bias).
    uint64_t below(uint64_t n) {
        uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        uint64_t x;
        do x = next();
        while (x >= limit);
        return x % n;
    }
    /// Uniform in [0, 1), 53 bits.
    double uniform() { return double(next() >> 11) * 0x1.0p-53; }
    double normal() {  // Box-Muller (one of the pair)
        double u = 1.0 - uniform(), v = uniform();
        return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v);
    }
    /// Gamma(a, 1), Marsaglia & Tsang (2000); a < 1 through Gamma(a + 1) * U^(1/a).
    double gamma(double a) {
        if (a < 1) return gamma(a + 1) * std::pow(1.0 - uniform(), 1.0 / a);
        const double d = a - 1.0 / 3, c = 1 / std::sqrt(9 * d);
        for (;;) {
            double x = normal(), v = 1 + c * x;
            if (v <= 0) continue;
            v = v * v * v;
            double u = 1.0 - uniform();
            if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
        }
    }
    double beta(double a, double b) {
        double x = gamma(a), y = gamma(b);
        return x / (x + y);
    }
};

/// Quantile q of sorted `v` with linear interpolation between order statistics (numpy's default).
double quantile_sorted(const std::vector<double>& v, double q) {
    SLM_ASSERT(!v.empty());
    double pos = q * double(v.size() - 1);
    size_t i = size_t(std::floor(pos));
    if (i + 1 >= v.size()) return v.back();
    double f = pos - double(i);
    return v[i] + f * (v[i + 1] - v[i]);
}

double mean_of(std::span<const double> xs) {
    return std::accumulate(xs.begin(), xs.end(), 0.0) / double(xs.size());
}

}  // namespace

interval wilson(int64_t successes, int64_t n) {
    SLM_ASSERT(n >= 0 && successes >= 0 && successes <= n, "wilson({}, {})", successes, n);
    if (n == 0) return {0, 0, 1};
    // p~ = (p + z^2/2n) / (1 + z^2/n);  half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
    const double z = z95, nn = double(n), p = double(successes) / nn, z2 = z * z;
    const double denom = 1 + z2 / nn;
    const double center = (p + z2 / (2 * nn)) / denom;
    const double half = z / denom * std::sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
    return {p, std::max(0.0, center - half), std::min(1.0, center + half)};
}

interval bootstrap_mean(std::span<const double> xs, int resamples, uint64_t seed) {
    SLM_ASSERT(!xs.empty(), "bootstrap_mean of no values");
    SLM_ASSERT(resamples > 0, "bootstrap_mean with {} resamples", resamples);
    rng g(seed);
    const size_t n = xs.size();
    std::vector<double> means(static_cast<size_t>(resamples));
    for (auto& m : means) {
        double sum = 0;
        for (size_t i = 0; i < n; ++i) sum += xs[g.below(n)];
        m = sum / double(n);
    }
    std::sort(means.begin(), means.end());
    return {mean_of(xs), quantile_sorted(means, 0.025), quantile_sorted(means, 0.975)};
}

double verdict_params::threshold(response_kind kind, bool judged) const {
    if (judged) return judge;
    switch (kind) {
    case response_kind::tool_call: return tool_call;
    case response_kind::json: return json;
    case response_kind::code: return code;
    case response_kind::prose: return prose;
    case response_kind::empty: return empty;
    }
    return prose;
}

verdict decide(const metric_summary& m, const verdict_params& p) {
    const double thr = p.threshold(m.kind, m.judged);
    const std::string what = fmt::format("{} {:.3f} [{:.3f}, {:.3f}] over {} calls", m.metric.empty() ? "metric" : m.metric,
                                         m.iv.value, m.iv.lo, m.iv.hi, m.n);
    verdict v;
    if (m.n < p.min_calls) {
        v.reason = fmt::format("{}: fewer than the {} evaluated calls a verdict needs", what, p.min_calls);
        return v;
    }
    v.replaceable = m.iv.lo >= thr;
    v.reason = fmt::format("{}: lower bound {:.3f} {} threshold {:.3f} for {}{}", what, m.iv.lo, v.replaceable ? ">=" : "<",
                           thr, response_kind_name(m.kind), m.judged ? " (judged)" : "");
    return v;
}

verdict_rule make_verdict_rule(double threshold, bool binary, int64_t min_calls, int inner_resamples) {
    return [=](std::span<const double> scores) {
        if (int64_t(scores.size()) < min_calls || scores.empty()) return false;
        double lo;
        if (binary) {
            int64_t k = 0;
            for (double s : scores) k += s >= 0.5;
            lo = wilson(k, int64_t(scores.size())).lo;
        } else {
            lo = bootstrap_mean(scores, inner_resamples, 0).lo;
        }
        return lo >= threshold;
    };
}

interval replaceable_share(const std::vector<cluster_outcome>& clusters, const std::vector<verdict_rule>& rules,
                           int resamples, uint64_t seed) {
    SLM_ASSERT(clusters.size() == rules.size(), "{} clusters, {} rules", clusters.size(), rules.size());
    SLM_ASSERT(resamples > 0);
    double total = 0;
    for (const auto& c : clusters) {
        SLM_ASSERT(c.volume >= 0 && std::isfinite(c.volume), "cluster volume {}", c.volume);
        total += c.volume;
    }
    if (total <= 0) return {0, 0, 0};
    double point = 0;
    for (size_t i = 0; i < clusters.size(); ++i)
        if (rules[i](clusters[i].scores)) point += clusters[i].volume;
    point /= total;

    // binary clusters (every score 0 or 1) are redrawn from their success rate's Jeffreys posterior
    // (p ~ Beta(k + 1/2, n - k + 1/2), then n Bernoulli(p) scores): a plain resample of 10/10 right is
    // 10/10 in every replicate, which would print a zero-width interval for a verdict that rests on 10
    // calls; continuous scores are resampled as they are
    std::vector<int64_t> ones(clusters.size(), -1);
    for (size_t i = 0; i < clusters.size(); ++i) {
        int64_t k = 0;
        bool binary = !clusters[i].scores.empty();
        for (double x : clusters[i].scores) {
            if (x == 1.0) ++k;
            else if (x != 0.0) binary = false;
        }
        if (binary) ones[i] = k;
    }
    rng g(seed);
    std::vector<double> shares(static_cast<size_t>(resamples));
    std::vector<double> draw;
    for (auto& s : shares) {
        double kept = 0;
        for (size_t i = 0; i < clusters.size(); ++i) {
            const auto& sc = clusters[i].scores;
            draw.resize(sc.size());
            if (ones[i] >= 0) {
                const double n = double(sc.size()), p = g.beta(double(ones[i]) + 0.5, n - double(ones[i]) + 0.5);
                for (auto& d : draw) d = g.uniform() < p ? 1.0 : 0.0;
            } else {
                for (auto& d : draw) d = sc[g.below(sc.size())];
            }
            if (rules[i](draw)) kept += clusters[i].volume;
        }
        s = kept / total;
    }
    std::sort(shares.begin(), shares.end());
    return {point, quantile_sorted(shares, 0.025), quantile_sorted(shares, 0.975)};
}

}  // namespace slm::eval
