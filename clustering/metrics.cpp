// Clustering quality: NMI and ARI against ground truth (as scikit-learn defines them) and the
// cosine silhouette, computed exactly in O(n k d) from per-cluster sums.

#include <algorithm>
#include <cmath>
#include <map>
#include <unordered_map>

#include "clustering/clustering.h"
#include "clustering/sampling.h"
#include "common/common.h"

namespace slm::clustering {

namespace {

struct contingency {
    std::vector<int64_t> a, b;                 ///< marginal counts per dense label
    std::map<std::pair<int, int>, int64_t> n;  ///< joint counts
    int64_t total = 0;
};

std::vector<int> densify(const std::vector<int>& v, int& count) {
    std::unordered_map<int, int> ids;
    std::vector<int> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = ids.try_emplace(v[i], static_cast<int>(ids.size())).first->second;
    count = static_cast<int>(ids.size());
    return out;
}

contingency count(const std::vector<int>& truth, const std::vector<int>& pred) {
    if (truth.size() != pred.size())
        throw internal_error(fmt::format("labelings differ in length: {} vs {}", truth.size(), pred.size()));
    contingency c;
    int na = 0, nb = 0;
    auto a = densify(truth, na), b = densify(pred, nb);
    c.a.assign(na, 0);
    c.b.assign(nb, 0);
    for (size_t i = 0; i < a.size(); ++i) {
        ++c.a[a[i]];
        ++c.b[b[i]];
        ++c.n[{a[i], b[i]}];
    }
    c.total = static_cast<int64_t>(a.size());
    return c;
}

double entropy(const std::vector<int64_t>& counts, double total) {
    double h = 0;
    for (auto c : counts)
        if (c > 0) h -= (c / total) * std::log(c / total);
    return h;
}

double comb2(double x) { return x * (x - 1) / 2; }

}  // namespace

double nmi(const std::vector<int>& truth, const std::vector<int>& pred) {
    auto c = count(truth, pred);
    if (c.total == 0) return 1.0;
    if (c.a.size() == 1 && c.b.size() == 1) return 1.0;  // both a single class: identical
    const double n = static_cast<double>(c.total);
    double mi = 0;
    for (const auto& [ab, nij] : c.n) {
        double pij = nij / n;
        mi += pij * std::log(nij * n / (static_cast<double>(c.a[ab.first]) * c.b[ab.second]));
    }
    double ha = entropy(c.a, n), hb = entropy(c.b, n);
    double denom = (ha + hb) / 2;
    if (denom <= 0) return 1.0;
    return std::clamp(mi / denom, 0.0, 1.0);
}

double ari(const std::vector<int>& truth, const std::vector<int>& pred) {
    auto c = count(truth, pred);
    const double n = static_cast<double>(c.total);
    if (c.total == 0) return 1.0;
    if ((c.a.size() == 1 && c.b.size() == 1) ||
        (c.a.size() == static_cast<size_t>(c.total) && c.b.size() == static_cast<size_t>(c.total)))
        return 1.0;
    double sum_ij = 0, sum_a = 0, sum_b = 0;
    for (const auto& [ab, nij] : c.n) sum_ij += comb2(static_cast<double>(nij));
    for (auto x : c.a) sum_a += comb2(static_cast<double>(x));
    for (auto x : c.b) sum_b += comb2(static_cast<double>(x));
    double expected = sum_a * sum_b / comb2(n);
    double max_index = (sum_a + sum_b) / 2;
    if (max_index == expected) return 1.0;
    return (sum_ij - expected) / (max_index - expected);
}

double silhouette(const float* x, size_t n, int d, const std::vector<int>& labels) {
    // mean distance from x_i to cluster C = 1 - x_i . (sum_C x_j) / |C|: linear in the members,
    // so per-cluster sums give the exact silhouette (sklearn, metric="cosine") without n^2 work.
    SLM_ASSERT(labels.size() == n, "labels {} for {} points", labels.size(), n);
    int k = 0;
    for (int l : labels) k = std::max(k, l + 1);
    if (k < 2) return 0.0;
    std::vector<double> sum(static_cast<size_t>(k) * d, 0.0);
    std::vector<int64_t> size(k, 0);
    for (size_t i = 0; i < n; ++i) {
        int l = labels[i];
        if (l < 0) continue;
        ++size[l];
        for (int t = 0; t < d; ++t) sum[static_cast<size_t>(l) * d + t] += x[i * d + t];
    }
    int nonempty = 0;
    for (auto s : size) nonempty += s > 0;
    if (nonempty < 2) return 0.0;
    std::vector<float> sumf(sum.begin(), sum.end());
    std::vector<double> per(n, 0.0);  // summed in order afterwards: the result is deterministic
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) {
        int l = labels[i];
        if (l < 0 || size[l] < 2) continue;  // a singleton scores 0
        const float* xi = x + i * d;
        double self = detail::dot(xi, xi, d);
        double a = 1.0 - (detail::dot(xi, sumf.data() + static_cast<size_t>(l) * d, d) - self) /
                             static_cast<double>(size[l] - 1);
        double b = 1e300;
        for (int c = 0; c < k; ++c) {
            if (c == l || size[c] == 0) continue;
            double m = 1.0 - detail::dot(xi, sumf.data() + static_cast<size_t>(c) * d, d) /
                                 static_cast<double>(size[c]);
            b = std::min(b, m);
        }
        double den = std::max(a, b);
        per[i] = den > 0 ? (b - a) / den : 0.0;
    }
    double total = 0;
    int64_t counted = 0;
    for (size_t i = 0; i < n; ++i)
        if (labels[i] >= 0) total += per[i], ++counted;
    return counted ? total / static_cast<double>(counted) : 0.0;
}

}  // namespace slm::clustering
