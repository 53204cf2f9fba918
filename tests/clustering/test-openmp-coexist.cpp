// libtorch (the wheel's, built against GNU OpenMP) and FAISS/OpenBLAS (Debian's libgomp) in one
// process: one OpenMP runtime mapped, k-means and a decoder forward pass interleaved and side by
// side from two threads, results unchanged and finite, no thread explosion.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <omp.h>

#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "clustering/clustering.h"
#include "common/common.h"
#include "model/llama.h"
#include "model/model.h"
#include "tests/test-util.h"

namespace {

int threads_of_process() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    return -1;
}

std::set<std::string> mapped_libs(const std::string& needle) {
    std::ifstream f("/proc/self/maps");
    std::set<std::string> out;
    std::string line;
    while (std::getline(f, line)) {
        auto slash = line.find('/');
        if (slash != std::string::npos && line.find(needle, slash) != std::string::npos) out.insert(line.substr(slash));
    }
    return out;
}

std::vector<float> unit_points(size_t n, int d, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g;
    std::vector<float> x(n * d);
    for (size_t i = 0; i < n; ++i) {
        float s = 0;
        const int centre = static_cast<int>(i % 8);
        for (int j = 0; j < d; ++j) {
            x[i * d + j] = g(rng) * 0.2f + (j % 8 == centre ? 1.f : 0.f);
            s += x[i * d + j] * x[i * d + j];
        }
        for (int j = 0; j < d; ++j) x[i * d + j] /= std::sqrt(s);
    }
    return x;
}

}  // namespace

TEST_CASE("OpenMP: FAISS k-means and a libtorch forward pass share one runtime in one process") {
    slm::set_num_threads(2);
    at::set_num_threads(2);
    slm::model::load_options o;
    o.dtype = "fp32";
    auto m = slm::model::load_model(slm::test::shared_data("models/llama2c/stories260K.bin"), o);
    const auto ids = torch::randint(1, 512, {2, 32}, torch::TensorOptions().dtype(torch::kInt64));
    torch::NoGradGuard ng;
    const auto ref_logits = m->decoder().forward(ids);

    const int d = 32;
    const size_t n = 4000;
    const auto x = unit_points(n, d, 7);
    slm::clustering::kmeans_params kp;
    kp.nredo = 1;
    const auto ref_part = slm::clustering::spherical_kmeans(x.data(), n, d, 8, kp, 42);

    // interleaved in one thread, three rounds: both runtimes' pools are used alternately
    for (int round = 0; round < 3; ++round) {
        auto p = slm::clustering::spherical_kmeans(x.data(), n, d, 8, kp, 42);
        CHECK(p.labels == ref_part.labels);
        auto l = m->decoder().forward(ids);
        CHECK(torch::equal(l, ref_logits));
    }
    // side by side from two threads
    std::vector<int> labels;
    torch::Tensor logits;
    std::thread a([&] { labels = slm::clustering::spherical_kmeans(x.data(), n, d, 8, kp, 42).labels; });
    std::thread b([&] {
        torch::NoGradGuard g;
        logits = m->decoder().forward(ids);
    });
    a.join();
    b.join();
    CHECK(labels == ref_part.labels);
    CHECK(torch::allclose(logits, ref_logits, 1e-5, 1e-5));
    CHECK(torch::isfinite(logits).all().item<bool>());

    // one libgomp in the process (fetch-libtorch.sh drops the wheel's copy), and its pool is bounded
    const auto gomp = mapped_libs("libgomp");
    MESSAGE("libgomp mapped: " << (gomp.empty() ? std::string("none") : *gomp.begin()) << ", threads now "
                               << threads_of_process() << ", omp max " << omp_get_max_threads());
    CHECK(gomp.size() == 1);
    CHECK(threads_of_process() <= 4 * slm::available_cores() + 8);
}
