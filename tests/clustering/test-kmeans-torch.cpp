// clustering/kmeans-torch.cpp: the libtorch k-means against FAISS's (kmeans.cpp) on the same data
// and seed, on CPU tensors (the test is real on a machine without a GPU); the same on CUDA when a
// device is visible; and the errors for --device cuda where there is none.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "clustering/clustering.h"
#include "common/common.h"
#include "model/runtime.h"
#include "store/store.h"
#include "../test-util.h"
#include "synthetic-calls.h"

using namespace slm;
using namespace slm::clustering;

namespace {

/// Sum over all points of the cosine distance to the nearest centroid (1 - similarity).
double inertia(const partition& p) {
    double s = 0;
    for (float v : p.similarity) s += 1.0 - v;
    return s;
}

/// n unit vectors in d dims around `centers` random directions (noise sigma), seeded.
std::vector<float> blobs(int n, int d, int centers, float sigma, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> c(static_cast<size_t>(centers) * d), x(static_cast<size_t>(n) * d);
    for (auto& v : c) v = g(rng);
    for (int i = 0; i < n; ++i) {
        const int k = static_cast<int>(rng() % centers);
        double nn = 0;
        for (int t = 0; t < d; ++t) {
            float v = c[static_cast<size_t>(k) * d + t] + sigma * g(rng);
            x[static_cast<size_t>(i) * d + t] = v;
            nn += double(v) * v;
        }
        for (int t = 0; t < d; ++t) x[static_cast<size_t>(i) * d + t] /= static_cast<float>(std::sqrt(nn));
    }
    return x;
}

/// The TF-IDF embeddings of synthetic calls (what `slmctl cluster` clusters by default).
std::vector<float> tfidf_vectors(int n, int* dim) {
    test::synth g(11);
    auto calls = g.mix(n);
    std::vector<std::string> docs;
    for (auto& c : calls) docs.push_back(c.task_text);
    std::vector<std::string_view> v(docs.begin(), docs.end());
    std::vector<float> x;
    cluster_params p;
    auto e = fit_tfidf(v, p.tfidf, p.seed, &x);
    *dim = e->dim();
    return x;
}

/// Runs both k-means on x and checks the torch one against FAISS: objective and inertia within 1%.
void compare(const std::vector<float>& x, int d, int k, const kmeans_params& kp, uint64_t seed, const char* what,
             const std::string& device = "cpu") {
    const size_t n = x.size() / d;
    auto ref = spherical_kmeans(x.data(), n, d, k, kp, seed);  // FAISS
    kmeans_params tp = kp;
    tp.device = device;
    auto got = spherical_kmeans_torch(x.data(), n, d, k, tp, seed);
    REQUIRE(got.k == ref.k);
    REQUIRE(got.centroids.size() == ref.centroids.size());
    REQUIRE(got.labels.size() == n);
    const double ia = inertia(ref), ib = inertia(got);
    size_t same = 0;
    for (size_t i = 0; i < n; ++i) same += got.labels[i] == ref.labels[i];
    MESSAGE(std::string(what) << " (" << device << "): objective faiss " << ref.objective << " torch " << got.objective
                 << "; inertia faiss " << ia << " torch " << ib << "; same label " << same << "/" << n
                 << "; ARI " << ari(ref.labels, got.labels));
    CHECK(std::abs(got.objective - ref.objective) <= 0.01 * std::abs(ref.objective));
    CHECK(std::abs(ib - ia) <= 0.01 * std::max(ia, 1e-3 * static_cast<double>(n)));
    for (int c = 0; c < got.k; ++c) {
        double nn = 0;
        for (int t = 0; t < d; ++t) nn += double(got.centroids[static_cast<size_t>(c) * d + t]) * got.centroids[static_cast<size_t>(c) * d + t];
        CHECK(nn == doctest::Approx(1.0).epsilon(1e-5));
    }
}

bool cuda_visible() { return model::runtime().cuda_devices > 0; }

}  // namespace

TEST_CASE("libtorch k-means on CPU tensors matches FAISS with the same seed (inertia within 1%)") {
    kmeans_params kp;
    SUBCASE("TF-IDF vectors of synthetic calls, 24 cells") {
        int d = 0;
        auto x = tfidf_vectors(2400, &d);
        compare(x, d, 24, kp, 1234, "tfidf 2400 x 256, k 24");
    }
    SUBCASE("overlapping blobs, subsampled (max_points_per_centroid 64), 2 restarts") {
        auto x = blobs(6000, 32, 50, 0.8f, 5);
        kmeans_params p = kp;
        p.max_points_per_centroid = 64;
        p.nredo = 2;
        compare(x, 32, 40, p, 77, "blobs 6000 x 32, k 40");
    }
    SUBCASE("more centroids than distinct points: empty clusters are split as faiss splits them") {
        // 12 distinct directions, each 25 times, into 16 clusters
        auto base = blobs(12, 16, 12, 0.5f, 9);
        std::vector<float> x;
        for (int r = 0; r < 25; ++r) x.insert(x.end(), base.begin(), base.end());
        compare(x, 16, 16, kp, 3, "duplicates 300 x 16 (12 distinct), k 16");
    }
    SUBCASE("as many points as clusters: the points are the centroids") {
        auto x = blobs(8, 8, 3, 0.3f, 2);
        compare(x, 8, 8, kp, 1, "8 points, k 8");
    }
}

TEST_CASE("libtorch k-means: deterministic for a seed; bad input is refused like FAISS's") {
    auto x = blobs(500, 8, 4, 0.2f, 1);
    kmeans_params kp;
    auto a = spherical_kmeans_torch(x.data(), 500, 8, 4, kp, 42);
    auto b = spherical_kmeans_torch(x.data(), 500, 8, 4, kp, 42);
    CHECK(a.labels == b.labels);
    CHECK(a.centroids == b.centroids);
    CHECK_THROWS_AS(spherical_kmeans_torch(x.data(), 0, 8, 4, kp, 1), user_error);
    CHECK_THROWS_AS(spherical_kmeans_torch(x.data(), 500, 8, 0, kp, 1), user_error);
    x[17] = std::nanf("");
    CHECK_THROWS_AS(spherical_kmeans_torch(x.data(), 500, 8, 4, kp, 1), internal_error);
}

TEST_CASE("--device cuda without a CUDA device: clear errors from k-means, the embedders and slmctl cluster") {
    if (cuda_visible()) {
        MESSAGE("a CUDA device is visible: the no-GPU errors are not testable here");
        return;
    }
    auto x = blobs(100, 8, 2, 0.2f, 1);
    kmeans_params kp;
    kp.device = "cuda";
    try {
        (void)spherical_kmeans(x.data(), 100, 8, 2, kp, 1);  // through the plugin entry point
        FAIL("k-means on cuda without a GPU did not throw");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
        CHECK(std::string(e.hint).find("--device cpu") != std::string::npos);
    }
    kp.device = "tpu";
    CHECK_THROWS_AS(spherical_kmeans(x.data(), 100, 8, 2, kp, 1), user_error);
    // the embedder refuses before it reads the (possibly absent) model directory
    try {
        (void)make_pretrained_embedder("minilm", "cuda");
        FAIL("minilm on cuda without a GPU did not throw");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("no CUDA device") != std::string::npos);
    }
    CHECK_THROWS_AS(make_pretrained_embedder("model:/nonexistent.gguf", "cuda:0"), user_error);

    if (!std::filesystem::exists(test::slmctl_binary())) {
        MESSAGE("slmctl not built; skipping the CLI part");
        return;
    }
    test::temp_dir dir;
    const std::string path = dir / "s.db";
    {
        test::synth g(7);
        auto d = store::db::open(path);
        test::store_calls(d, g.mix(200));
    }
    auto r = test::run_slmctl("--db '" + path + "' cluster --k 3 --device cuda");
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("no CUDA device") != std::string::npos);
    CHECK(r.err.find("hint:") != std::string::npos);
}

TEST_CASE("CUDA: libtorch k-means on the GPU matches FAISS on the CPU") {
    if (!cuda_visible()) {
        MESSAGE("no CUDA device visible: skipped (scripts/gpu-check.sh runs it on a GPU machine)");
        return;
    }
    kmeans_params kp;
    int d = 0;
    auto x = tfidf_vectors(2400, &d);
    compare(x, d, 24, kp, 1234, "tfidf 2400 x 256, k 24", "cuda");
    auto y = blobs(20000, 64, 100, 0.8f, 5);
    compare(y, 64, 64, kp, 7, "blobs 20000 x 64, k 64", "cuda");
}
