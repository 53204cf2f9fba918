// Internal to slm_clustering: seeded sampling without replacement, the same on every platform
// (std::uniform_*_distribution is not), so a seed reproduces a run anywhere; small helpers.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <numeric>
#include <random>
#include <vector>

namespace slm::clustering::detail {

/// m of 0..n-1 (all when m >= n), sorted.
inline std::vector<size_t> sample_indices(size_t n, size_t m, std::mt19937_64& rng) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    if (m >= n) return idx;
    for (size_t i = 0; i < m; ++i) std::swap(idx[i], idx[i + rng() % (n - i)]);
    idx.resize(m);
    std::sort(idx.begin(), idx.end());
    return idx;
}

/// x.y over d floats, vectorised for this machine (the Debian faiss build's fvec_inner_product is
/// the scalar reference loop).
inline float dot(const float* x, const float* y, int d) {
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < d; ++i) s += x[i] * y[i];
    return s;
}

/// Scales v (d floats) to unit norm; leaves a zero vector alone.
inline void normalise(float* v, int d) {
    double n2 = 0;
    for (int j = 0; j < d; ++j) n2 += static_cast<double>(v[j]) * v[j];
    if (n2 > 0) {
        float inv = static_cast<float>(1.0 / std::sqrt(n2));
        for (int j = 0; j < d; ++j) v[j] *= inv;
    }
}

/// Runs OpenMP (and the OpenMP BLAS under faiss) on one thread for its lifetime. Many tiny
/// parallel regions (LAPACK's eigensolver, k-means on a few thousand points) cost more in barrier
/// spinning than they gain, and on a busy machine the spinning starves the working thread.
class single_thread_scope {
public:
    single_thread_scope() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
    ~single_thread_scope() { omp_set_num_threads(saved_); }
    single_thread_scope(const single_thread_scope&) = delete;
    single_thread_scope& operator=(const single_thread_scope&) = delete;

private:
    int saved_;
};

}  // namespace slm::clustering::detail
