// bench/gpu: k-means of N x D unit vectors, FAISS on the CPU (slmctl's CPU path, all cores) side by
// side with the libtorch twin on a device (slmctl's --device cuda path), same data, seed and params.
// Prints one JSON object: seconds, objectives, inertia, label agreement, the ratio.
//   build/bench-kmeans N D K DEVICE [nredo] [niter] [--no-cpu]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <omp.h>

#include "clustering/clustering.h"
#include "common/common.h"

namespace {

/// n unit vectors around 4k random directions: clustered like embeddings, seeded.
std::vector<float> data(size_t n, int d, int k, uint64_t seed) {
    std::vector<float> centers(static_cast<size_t>(4 * k) * d), x(n * d);
    std::mt19937_64 r0(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    for (auto& v : centers) v = g(r0);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < static_cast<int64_t>((n + 4095) / 4096); ++b) {
        std::mt19937_64 rng(seed + 1 + b);
        std::normal_distribution<float> gb(0.f, 1.f);
        for (size_t i = b * 4096; i < std::min(n, static_cast<size_t>(b + 1) * 4096); ++i) {
            const size_t c = rng() % (4 * k);
            double nn = 0;
            for (int t = 0; t < d; ++t) {
                float v = centers[c * d + t] + 0.7f * gb(rng);
                x[i * d + t] = v;
                nn += double(v) * v;
            }
            const float inv = static_cast<float>(1.0 / std::sqrt(nn));
            for (int t = 0; t < d; ++t) x[i * d + t] *= inv;
        }
    }
    return x;
}

double inertia(const slm::clustering::partition& p) {
    double s = 0;
    for (float v : p.similarity) s += 1.0 - v;
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: %s N D K DEVICE [nredo] [niter] [--no-cpu]\n", argv[0]);
        return 2;
    }
    const size_t n = std::strtoull(argv[1], nullptr, 10);
    const int d = std::atoi(argv[2]), k = std::atoi(argv[3]);
    const std::string device = argv[4];
    slm::clustering::kmeans_params kp;
    if (argc > 5) kp.nredo = std::atoi(argv[5]);
    if (argc > 6) kp.niter = std::atoi(argv[6]);
    const bool cpu = !(argc > 7 && std::strcmp(argv[7], "--no-cpu") == 0);
    const uint64_t seed = 1234;
    using clk = std::chrono::steady_clock;
    try {
        auto t = clk::now();
        const auto x = data(n, d, k, 99);
        const double gen_s = std::chrono::duration<double>(clk::now() - t).count();
        nlohmann::json j = {{"n", n}, {"d", d}, {"k", k}, {"nredo", kp.nredo}, {"niter", kp.niter},
                            {"max_points_per_centroid", kp.max_points_per_centroid}, {"threads", omp_get_max_threads()},
                            {"data_s", gen_s}};
        // the device side first: its first call pays the CUDA context; a warm-up on a slice keeps
        // that out of the timing (a real run pays it once per process)
        auto tp = kp;
        tp.device = device;
        {
            auto w = tp;
            w.nredo = 1;
            w.niter = 2;
            (void)slm::clustering::spherical_kmeans_torch(x.data(), std::min<size_t>(n, 20000), d, std::min(k, 64), w, 1);
        }
        t = clk::now();
        auto g = slm::clustering::spherical_kmeans_torch(x.data(), n, d, k, tp, seed);
        const double dev_s = std::chrono::duration<double>(clk::now() - t).count();
        j["torch"] = {{"device", device}, {"seconds", dev_s}, {"objective", g.objective}, {"inertia", inertia(g)}};
        if (cpu) {
            t = clk::now();
            auto f = slm::clustering::spherical_kmeans(x.data(), n, d, k, kp, seed);
            const double cpu_s = std::chrono::duration<double>(clk::now() - t).count();
            size_t same = 0;
            for (size_t i = 0; i < n; ++i) same += f.labels[i] == g.labels[i];
            j["faiss"] = {{"device", "cpu"}, {"seconds", cpu_s}, {"objective", f.objective}, {"inertia", inertia(f)}};
            j["inertia_rel_diff"] = std::abs(inertia(g) - inertia(f)) / std::max(1e-9, inertia(f));
            j["same_label_share"] = static_cast<double>(same) / n;
            j["speedup_torch_over_faiss"] = cpu_s / dev_s;
        }
        std::printf("%s\n", j.dump().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
