// Spherical k-means on FAISS (k-means++ seeds, restarts) and nearest-centroid assignment.
// The merging of k-means cells into clusters lives in merge.cpp.
#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "clustering/clustering.h"
#include "clustering/sampling.h"
#include "common/common.h"
#include "common/tensor-plugin.h"

namespace slm::clustering {

namespace {

using idx_t = faiss::Index::idx_t;

/// Uniform double in [0,1) from the generator, identical on every platform.
double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

/// k-means++ seeding with cosine distance 1 - x.c (Arthur & Vassilvitskii: pick with prob ~ D^2).
std::vector<float> kmeanspp(const float* x, size_t m, int d, int k, std::mt19937_64& rng) {
    std::vector<float> c(static_cast<size_t>(k) * d);
    std::vector<double> dist(m, 0.0);
    size_t first = static_cast<size_t>(rng() % m);
    std::copy(x + first * d, x + (first + 1) * d, c.begin());
    for (int j = 0; j < k; ++j) {
        const float* cj = c.data() + static_cast<size_t>(j) * d;
#pragma omp parallel for schedule(static) if (m * d > (1 << 20))
        for (int64_t i = 0; i < static_cast<int64_t>(m); ++i) {
            double di = std::max(0.0, 1.0 - detail::dot(x + i * d, cj, d));
            dist[i] = j == 0 ? di : std::min(dist[i], di);
        }
        if (j + 1 == k) break;
        double total = 0;
        for (size_t i = 0; i < m; ++i) total += dist[i] * dist[i];
        size_t pick = static_cast<size_t>(rng() % m);
        if (total > 0) {
            double r = uniform01(rng) * total, acc = 0;
            for (size_t i = 0; i < m; ++i) {
                acc += dist[i] * dist[i];
                if (acc >= r && dist[i] > 0) {
                    pick = i;
                    break;
                }
            }
        }
        std::copy(x + pick * d, x + (pick + 1) * d, c.begin() + static_cast<size_t>(j + 1) * d);
    }
    return c;
}

}  // namespace

void nearest_centroid(const float* centroids, int k, int d, const float* x, size_t n, int* labels, float* similarity) {
    SLM_ASSERT(k > 0 && d > 0, "nearest_centroid with k={} d={}", k, d);
    faiss::IndexFlatIP index(d);
    index.add(k, centroids);
    const size_t block = 65536;  // bounds the distance buffers on large inputs
    std::vector<float> dist(block);
    std::vector<idx_t> lab(block);
    for (size_t b = 0; b < n; b += block) {
        size_t nb = std::min(block, n - b);
        index.search(static_cast<idx_t>(nb), x + b * d, 1, dist.data(), lab.data());
        for (size_t i = 0; i < nb; ++i) {
            labels[b + i] = static_cast<int>(lab[i]);
            if (similarity) similarity[b + i] = dist[i];
        }
    }
}

partition spherical_kmeans(const float* x, size_t n, int d, int k, const kmeans_params& p, uint64_t seed) {
    if (p.device != "cpu") {  // the libtorch twin (kmeans-torch.cpp) in the tensor half
        partition out;
        tensor_plugin::fn<void(const float*, size_t, int, int, const kmeans_params*, uint64_t, partition*)>(
            "slm_plugin_spherical_kmeans")(x, n, d, k, &p, seed, &out);
        return out;
    }
    if (n == 0) throw user_error("k-means on an empty set of vectors");
    if (k < 1) throw user_error(fmt::format("k-means needs k >= 1, got {}", k));
    for (size_t i = 0; i < n * d; ++i)
        if (!std::isfinite(x[i]))
            throw internal_error(fmt::format("embedding {} has a non-finite component", i / d));
    k = static_cast<int>(std::min<size_t>(k, n));
    partition best;
    best.k = k;
    best.dim = d;

    // the training subsample: at most max_points_per_centroid per centroid
    std::mt19937_64 rng(seed);
    size_t m = std::min(n, static_cast<size_t>(k) * std::max(1, p.max_points_per_centroid));
    auto idx = detail::sample_indices(n, m, rng);
    std::vector<float> xs;
    const float* train = x;
    if (m < n) {
        xs.resize(m * d);
        for (size_t i = 0; i < m; ++i) std::copy(x + idx[i] * d, x + (idx[i] + 1) * d, xs.begin() + i * d);
        train = xs.data();
    }

    double best_obj = -1e300;
    for (int r = 0; r < std::max(1, p.nredo); ++r) {
        std::mt19937_64 rr(seed + 0x9e3779b97f4a7c15ULL * (r + 1));
        faiss::ClusteringParameters cp;
        cp.niter = std::max(1, p.niter);
        cp.nredo = 1;
        cp.verbose = false;
        cp.spherical = true;
        cp.seed = static_cast<int>(rr() & 0x7fffffff);
        cp.min_points_per_centroid = 1;
        cp.max_points_per_centroid = static_cast<int>(m / k + 1);
        faiss::Clustering clus(d, k, cp);
        clus.centroids = kmeanspp(train, m, d, k, rr);
        faiss::IndexFlatIP index(d);
        clus.train(static_cast<idx_t>(m), train, index);
        double obj = clus.iteration_stats.empty() ? 0 : clus.iteration_stats.back().obj;
        if (obj > best_obj) {
            best_obj = obj;
            best.centroids = clus.centroids;
        }
    }
    best.objective = best_obj;
    for (int c = 0; c < k; ++c) detail::normalise(best.centroids.data() + static_cast<size_t>(c) * d, d);
    best.owner.resize(k);
    std::iota(best.owner.begin(), best.owner.end(), 0);
    best.labels.resize(n);
    best.similarity.resize(n);
    nearest_centroid(best.centroids.data(), k, d, x, n, best.labels.data(), best.similarity.data());
    return best;
}

}  // namespace slm::clustering
