// Spherical k-means in libtorch, on the CPU or a CUDA device: the algorithm of kmeans.cpp (our
// sample and k-means++ seeds, then faiss::Clustering's Lloyd iterations, empty-cluster splitting and
// renormalisation, restarts), for `--device cuda`, where FAISS (CPU-only in Debian) cannot follow.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "clustering/clustering.h"
#include "clustering/sampling.h"
#include "common/common.h"
#include "model/runtime.h"

namespace slm::clustering {

namespace {

// n points, m training sample, d dims, k centroids.

double uniform01(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

/// Rows of an (rows, k) similarity block that keep it near 64 MiB of fp32.
int64_t block_rows(int64_t k) { return std::max<int64_t>(1024, (int64_t{1} << 24) / std::max<int64_t>(1, k)); }

/// Nearest centroid by inner product: (max similarity (n) float, argmax (n) int64), in row blocks.
std::pair<torch::Tensor, torch::Tensor> nearest(const torch::Tensor& x, const torch::Tensor& c) {
    const int64_t n = x.size(0), rows = block_rows(c.size(0));
    if (n <= rows) {
        auto [v, i] = x.matmul(c.t()).max(1);  // (n, k) -> (n), (n)
        return {v, i};
    }
    auto sim = torch::empty({n}, x.options());
    auto lab = torch::empty({n}, x.options().dtype(torch::kInt64));
    for (int64_t b = 0; b < n; b += rows) {
        const int64_t nb = std::min(rows, n - b);
        auto [v, i] = x.narrow(0, b, nb).matmul(c.t()).max(1);  // (nb, k) -> (nb)
        sim.narrow(0, b, nb).copy_(v);
        lab.narrow(0, b, nb).copy_(i);
    }
    return {sim, lab};
}

/// Rows scaled to unit norm, zero rows left alone (faiss' fvec_renorm_L2).
torch::Tensor renorm(const torch::Tensor& c) {
    auto nr = c.pow(2).sum(1, true).sqrt();  // (k, 1)
    return torch::where(nr > 0, c / nr, c);
}

/// kmeans.cpp's k-means++ (cosine distance 1 - x.c, picked with probability ~ D^2), draw for draw:
/// the same generator calls in the same order, so the CPU and the device pick the same seeds
/// (up to ties in the last bits of a distance). One host read per seed: whether any mass is
/// left decides whether the CPU path draws the uniform number.
torch::Tensor kmeanspp(const torch::Tensor& x, int k, std::mt19937_64& rng) {
    const int64_t m = x.size(0), d = x.size(1);
    auto c = torch::empty({k, d}, x.options());  // (k, d)
    const auto first = static_cast<int64_t>(rng() % static_cast<uint64_t>(m));
    c[0].copy_(x[first]);
    torch::Tensor dist;  // (m) double
    for (int j = 0; j < k; ++j) {
        auto dj = (1.0 - x.mv(c[j]).to(torch::kFloat64)).clamp_min(0.0);  // (m)
        dist = j == 0 ? dj : torch::minimum(dist, dj);
        if (j + 1 == k) break;
        auto acc = (dist * dist).cumsum(0);  // (m), acc[m-1] is the total
        const auto fallback = static_cast<int64_t>(rng() % static_cast<uint64_t>(m));
        const double total = acc[m - 1].item<double>();
        if (total > 0) {
            // the first i with acc[i] >= r and dist[i] > 0; with r > 0 the first acc[i] >= r has dist[i] > 0
            const double r = std::max(uniform01(rng) * total, std::numeric_limits<double>::denorm_min());
            auto pick = torch::searchsorted(acc, torch::full({1}, r, acc.options())).clamp_max(m - 1);  // (1)
            c[j + 1].copy_(x.index_select(0, pick)[0]);
        } else {
            c[j + 1].copy_(x[fallback]);
        }
    }
    return c;
}

/// faiss split_clusters: every empty cluster takes a copy of a cluster picked with probability
/// (size - 1) / (m - k) (faiss' own generator, seeded 1234 on every call), both nudged apart by
/// (1 +- 1/1024) on alternate components; sizes are assumed to halve. `hassign` is on the host.
void split_empty(torch::Tensor& c, std::vector<float>& hassign, int64_t m) {
    const int64_t k = c.size(0), d = c.size(1);
    std::mt19937 rng(1234u);
    const auto rand_float = [&] { return static_cast<float>(rng()) / static_cast<float>(std::mt19937::max()); };
    torch::Tensor up, down;  // (d): (1 + EPS, 1 - EPS, ...) and its mirror
    for (int64_t ci = 0; ci < k; ++ci) {
        if (hassign[ci] != 0) continue;
        int64_t cj = 0;
        for (;; cj = (cj + 1) % k) {
            const float p = static_cast<float>((hassign[cj] - 1.0) / static_cast<float>(m - k));
            if (rand_float() < p) break;
        }
        if (!up.defined()) {
            auto even = (torch::arange(d, c.options().dtype(torch::kInt64)) % 2) == 0;
            up = torch::where(even, 1.0 + 1.0 / 1024, 1.0 - 1.0 / 1024).to(c.dtype());
            down = torch::where(even, 1.0 - 1.0 / 1024, 1.0 + 1.0 / 1024).to(c.dtype());
        }
        c[ci].copy_(c[cj] * up);
        c[cj].mul_(down);
        hassign[ci] = hassign[cj] / 2;
        hassign[cj] -= hassign[ci];
    }
}

/// faiss::Clustering::train with input centroids (not frozen), spherical, on an IndexFlatIP:
/// niter rounds of assign -> objective (sum of the best inner products) -> means of the assigned
/// points (empty ones left zero) -> split empty clusters -> renormalise. Returns (objective of
/// the last round's assignment, centroids), as faiss' last iteration_stats entry and centroids.
std::pair<double, torch::Tensor> lloyd(const torch::Tensor& x, torch::Tensor c, int niter) {
    const int64_t m = x.size(0), k = c.size(0);
    if (m == k) return {0.0, x.clone()};  // faiss' corner case: the training set is the centroids
    c = renorm(c);
    torch::Tensor obj;
    std::vector<float> hassign(static_cast<size_t>(k));
    for (int it = 0; it < niter; ++it) {
        auto [sim, lab] = nearest(x, c);                                            // (m), (m)
        obj = sim.sum(torch::kFloat64);                                             // ()
        auto counts = torch::bincount(lab, {}, k).to(x.dtype());                    // (k)
        auto sums = torch::zeros_like(c).index_add_(0, lab, x);                     // (k, d)
        c = torch::where(counts.unsqueeze(1) > 0, sums / counts.clamp_min(1).unsqueeze(1), sums);
        // the one host read of a round: splitting is sequential and needs the sizes
        auto h = counts.to(torch::kCPU).contiguous();
        std::copy_n(h.data_ptr<float>(), k, hassign.begin());
        if (std::find(hassign.begin(), hassign.end(), 0.f) != hassign.end()) split_empty(c, hassign, m);
        c = renorm(c);
    }
    return {obj.item<double>(), c};
}

}  // namespace

partition spherical_kmeans_torch(const float* x, size_t n, int d, int k, const kmeans_params& p, uint64_t seed) {
    if (n == 0) throw user_error("k-means on an empty set of vectors");
    if (k < 1) throw user_error(fmt::format("k-means needs k >= 1, got {}", k));
    model::check_device(p.device);
    c10::InferenceMode guard;
    const torch::Device dev(p.device);
    const auto N = static_cast<int64_t>(n);
    // the caller's buffer, copied to the device once (on the CPU it is used in place)
    auto X = torch::from_blob(const_cast<float*>(x), {N, d}, torch::kFloat32).to(dev);  // (n, d)
    if (!torch::isfinite(X).all().item<bool>()) {
        auto bad = torch::logical_not(torch::isfinite(X)).any(1).nonzero()[0][0].item<int64_t>();
        throw internal_error(fmt::format("embedding {} has a non-finite component", bad));
    }
    k = static_cast<int>(std::min<size_t>(k, n));
    partition best;
    best.k = k;
    best.dim = d;

    // the training subsample, drawn exactly as kmeans.cpp draws it
    std::mt19937_64 rng(seed);
    const size_t m = std::min(n, static_cast<size_t>(k) * std::max(1, p.max_points_per_centroid));
    auto idx = detail::sample_indices(n, m, rng);
    torch::Tensor train = X;  // (m, d)
    if (m < n) {
        std::vector<int64_t> id64(idx.begin(), idx.end());
        train = X.index_select(0, torch::tensor(id64, torch::TensorOptions().dtype(torch::kInt64)).to(dev));
    }

    double best_obj = -1e300;
    torch::Tensor best_c;  // (k, d)
    for (int r = 0; r < std::max(1, p.nredo); ++r) {
        std::mt19937_64 rr(seed + 0x9e3779b97f4a7c15ULL * (r + 1));
        (void)rr();  // kmeans.cpp draws faiss' seed here (unused when the centroids are given)
        auto c0 = kmeanspp(train, k, rr);
        auto [obj, c] = lloyd(train, c0, std::max(1, p.niter));
        if (obj > best_obj) {
            best_obj = obj;
            best_c = c;
        }
    }
    best_c = renorm(best_c);
    auto [sim, lab] = nearest(X, best_c);
    best.objective = best_obj;
    auto hc = best_c.to(torch::kCPU).contiguous();
    best.centroids.assign(hc.data_ptr<float>(), hc.data_ptr<float>() + hc.numel());
    best.owner.resize(k);
    std::iota(best.owner.begin(), best.owner.end(), 0);
    auto hl = lab.to(torch::kInt32).to(torch::kCPU).contiguous();
    auto hs = sim.to(torch::kCPU).contiguous();
    best.labels.assign(hl.data_ptr<int32_t>(), hl.data_ptr<int32_t>() + n);
    best.similarity.assign(hs.data_ptr<float>(), hs.data_ptr<float>() + n);
    return best;
}

}  // namespace slm::clustering

/// spherical_kmeans' way into this file when kmeans_params::device is not "cpu" (clustering/ is in
/// the slmctl executable, which never links libtorch).
extern "C" void slm_plugin_spherical_kmeans(const float* x, size_t n, int d, int k,
                                            const slm::clustering::kmeans_params* p, uint64_t seed,
                                            slm::clustering::partition* out) {
    *out = slm::clustering::spherical_kmeans_torch(x, n, d, k, *p, seed);
}

/// clustering::run checks --device through this before any work (user_error when CUDA is asked for
/// and absent), so a run without a GPU fails in milliseconds, not after the embedding.
extern "C" void slm_plugin_check_device(const char* device) { slm::model::check_device(device); }
