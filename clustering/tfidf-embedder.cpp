// The default embedder: hashed word + char n-gram TF-IDF, count-sketched, reduced with FAISS PCA.
// Fit = one df pass over the corpus + PCA on a sample; embed = one pass, nnz * dim per document.
#include <faiss/VectorTransform.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "clustering/clustering.h"
#include "clustering/embedder-io.h"
#include "clustering/sampling.h"
#include "clustering/text-features.h"
#include "common/common.h"
#include "common/timing.h"

namespace slm::clustering {

using namespace detail;

namespace {

constexpr uint32_t k_tfidf_format = 1;

void axpy(int n, float a, const float* x, float* y) {
#pragma omp simd
    for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

constexpr uint32_t tools_block = 2, shape_block = 3;  // after word_block (0) and char_block (1)

/// collect's task_text ends with structured lines: "tools: a, b", "after: tool_result X",
/// "response: SHAPE". They are embedded as their own blocks so that a tool list shared by every
/// call of a node weighs what tools_weight says, not what its length would make it.
struct doc_fields {
    std::string_view text, tools, shape;
};

doc_fields split_fields(std::string_view doc) {
    doc_fields f;
    size_t end = doc.size();
    size_t shape_begin = end;
    auto last_line = [&](size_t e) {
        size_t b = doc.rfind('\n', e == 0 ? 0 : e - 1);
        return b == std::string_view::npos || e == 0 ? size_t{0} : b + 1;
    };
    auto starts = [&](size_t b, std::string_view pre) { return doc.substr(b, pre.size()) == pre; };
    size_t b = last_line(end);
    if (starts(b, "response: ")) {
        shape_begin = b;
        end = b == 0 ? 0 : b - 1;
        b = last_line(end);
        if (end > 0 && starts(b, "after: ")) {
            shape_begin = b;
            end = b == 0 ? 0 : b - 1;
            b = last_line(end);
        }
        if (end > 0 && starts(b, "tools: ")) {
            f.tools = doc.substr(b + 7, end - b - 7);
            end = b == 0 ? 0 : b - 1;
        }
        f.shape = doc.substr(shape_begin);
        f.text = doc.substr(0, end);
    } else {
        f.text = doc;
    }
    return f;
}

/// 1 + ln(tf), from a table for the common small counts.
inline float sublinear(float tf) {
    static const auto table = [] {
        std::array<float, 64> t{};
        for (int i = 1; i < 64; ++i) t[i] = 1.f + std::log(static_cast<float>(i));
        return t;
    }();
    int i = static_cast<int>(tf);
    return i < 64 ? table[i] : 1.f + std::log(tf);
}

feature_config config_of(const tfidf_params& p) {
    feature_config c;
    c.word_ngram_max = p.word_ngram_max;
    c.char_ngram_min = p.char_ngram_min;
    c.char_ngram_max = p.char_weight > 0 ? p.char_ngram_max : 0;
    return c;
}

void check_params(const tfidf_params& p) {
    if (p.hash_bits < 12 || p.hash_bits > 26)
        throw user_error(fmt::format("tfidf hash_bits {} is out of range", p.hash_bits), "use 12..26 (default 20)");
    if (p.word_ngram_max < 1 || p.word_ngram_max > 4)
        throw user_error(fmt::format("tfidf word_ngram_max {} is out of range", p.word_ngram_max), "use 1..4");
    if (p.char_ngram_min < 1 || p.char_ngram_max > 8 || p.char_ngram_min > p.char_ngram_max)
        throw user_error(fmt::format("tfidf char n-gram range {}..{} is invalid", p.char_ngram_min, p.char_ngram_max),
                         "use 1 <= min <= max <= 8");
    if (!(p.char_weight >= 0 && p.char_weight <= 1))
        throw user_error(fmt::format("tfidf char_weight {} is out of range", p.char_weight), "use 0..1");
    if (!(p.tools_weight >= 0 && p.shape_weight >= 0 && p.tools_weight + p.shape_weight <= 1))
        throw user_error(fmt::format("tfidf tools_weight {} + shape_weight {} must be within 0..1", p.tools_weight,
                                     p.shape_weight));
    if (p.sketch_dim < 8 || p.dim < 2 || p.dim > p.sketch_dim)
        throw user_error(fmt::format("tfidf dims invalid: sketch {} -> {}", p.sketch_dim, p.dim),
                         "need 2 <= dim <= sketch_dim");
}

/// The fitted state: idf per bucket and the folded sketch+PCA projection.
class tfidf_embedder final : public embedder {
public:
    tfidf_params p;
    std::vector<float> idf;   ///< 2^hash_bits; 0 for features below min_df
    std::vector<float> proj;  ///< sketch_dim * dim: row r = PCA matrix column r (A^T)
    std::vector<float> bias;  ///< dim: -A * mean
    int64_t fitted_docs = 0;

    std::string name() const override { return "tfidf"; }
    int dim() const override { return p.dim; }

    nlohmann::json params() const override {
        return {{"hash_bits", p.hash_bits},       {"word_ngram_max", p.word_ngram_max},
                {"char_ngram_min", p.char_ngram_min}, {"char_ngram_max", p.char_ngram_max},
                {"char_weight", p.char_weight},   {"tools_weight", p.tools_weight},
                {"shape_weight", p.shape_weight}, {"min_df", p.min_df},
                {"sketch_dim", p.sketch_dim},     {"dim", p.dim},
                {"pca_sample", p.pca_sample},     {"idf_sample", p.idf_sample},
                {"fitted_docs", fitted_docs}};
    }

    /// Sketch slot and sign of a feature key (bucket << 1 | block): the count-sketch S.
    static void sketch_of(uint32_t key, int sketch_dim, uint32_t& slot, float& sign) {
        uint64_t h = fmix64(key + 0x2545f4914f6cdd1dULL);
        slot = static_cast<uint32_t>(((h >> 32) * static_cast<uint64_t>(sketch_dim)) >> 32);
        sign = (h & 1) ? 1.f : -1.f;
    }

    /// TF-IDF weights of one document in `cnt`; calls f(key, weight), key = bucket << 2 | block,
    /// with each block L2-normalised and scaled to its share of the squared norm.
    template <typename F> void weights(std::string_view doc, feature_counter& cnt, F&& f) const {
        const uint32_t shift = 64 - p.hash_bits;
        auto cfg = config_of(p);
        auto tail_cfg = cfg;
        tail_cfg.char_ngram_max = 0;
        cnt.clear();
        auto fields = split_fields(doc);
        for_each_feature(fields.text, cfg, [&](uint64_t h, int block) {
            cnt.add(static_cast<uint32_t>(h >> shift) << 2 | static_cast<uint32_t>(block));
        });
        for_each_feature(fields.tools, tail_cfg, [&](uint64_t h, int) {
            cnt.add(static_cast<uint32_t>(h >> shift) << 2 | tools_block);
        });
        for_each_feature(fields.shape, tail_cfg, [&](uint64_t h, int) {
            cnt.add(static_cast<uint32_t>(h >> shift) << 2 | shape_block);
        });
        double norm[4] = {0, 0, 0, 0};
        cnt.update_each([&](uint32_t key, float& tf) {  // one idf lookup per feature: tf becomes its weight
            tf = sublinear(tf) * idf[key >> 2];
            norm[key & 3] += static_cast<double>(tf) * tf;
        });
        const double text_share = std::max(0.0, 1.0 - p.tools_weight - p.shape_weight);
        double share[4] = {text_share * (1.0 - p.char_weight), text_share * p.char_weight, p.tools_weight, p.shape_weight};
        double present = 0;
        for (int b = 0; b < 4; ++b) present += norm[b] > 0 ? share[b] : 0.0;
        float scale[4];
        for (int b = 0; b < 4; ++b)
            scale[b] = norm[b] > 0 && present > 0 ? static_cast<float>(std::sqrt(share[b] / present / norm[b])) : 0.f;
        cnt.for_each([&](uint32_t key, float w) {
            w *= scale[key & 3];
            if (w != 0.f) f(key, w);
        });
    }

    /// s = S x (dense sketch_dim), the PCA's input.
    void sketch(std::string_view doc, feature_counter& cnt, float* s) const {
        std::fill(s, s + p.sketch_dim, 0.f);
        weights(doc, cnt, [&](uint32_t key, float w) {
            uint32_t slot;
            float sign;
            sketch_of(key, p.sketch_dim, slot, sign);
            s[slot] += sign * w;
        });
    }

    /// out = normalise(P S x + bias), through the folded projection.
    /// Per-thread scratch: the feature counter and the document's sketch s = S x.
    struct scratch {
        feature_counter cnt;
        std::vector<float> s;
        std::vector<uint32_t> used;  ///< sketch slots touched by this document
        explicit scratch(int sketch_dim) : s(sketch_dim, 0.f) {}
    };

    /// out = normalise(P s + bias): the sketch first (features collide into fewer slots), then one
    /// row of the folded projection per touched slot.
    void embed_one(std::string_view doc, scratch& sc, float* out) const {
        const int d = p.dim;
        std::memcpy(out, bias.data(), sizeof(float) * d);
        weights(doc, sc.cnt, [&](uint32_t key, float w) {
            uint32_t slot;
            float sign;
            sketch_of(key, p.sketch_dim, slot, sign);
            if (sc.s[slot] == 0.f) sc.used.push_back(slot);
            sc.s[slot] += sign * w;
            if (sc.s[slot] == 0.f) sc.s[slot] = 1e-30f;  // stays "touched" even if it cancels
        });
        for (uint32_t slot : sc.used) {
            axpy(d, sc.s[slot], proj.data() + static_cast<size_t>(slot) * d, out);
            sc.s[slot] = 0.f;
        }
        sc.used.clear();
        double n2 = 0;
        for (int j = 0; j < d; ++j) n2 += static_cast<double>(out[j]) * out[j];
        if (n2 > 0) {
            float inv = static_cast<float>(1.0 / std::sqrt(n2));
            for (int j = 0; j < d; ++j) out[j] *= inv;
        }
    }

    void embed(const std::vector<std::string_view>& docs, float* out) const override {
        const int64_t n = static_cast<int64_t>(docs.size());
#pragma omp parallel
        {
            scratch sc(p.sketch_dim);
#pragma omp for schedule(dynamic, 256)
            for (int64_t i = 0; i < n; ++i) embed_one(docs[i], sc, out + i * p.dim);
        }
    }

    std::vector<uint8_t> save() const override {
        detail::blob_writer w;
        w.magic("SLMTFIDF", k_tfidf_format);
        w.str(params().dump());
        w.floats(idf);
        w.floats(proj);
        w.floats(bias);
        return std::move(w.out);
    }

    static std::unique_ptr<tfidf_embedder> load(const std::vector<uint8_t>& blob) {
        detail::blob_reader r(blob, "tfidf embedder");
        r.magic("SLMTFIDF", k_tfidf_format);
        auto j = nlohmann::json::parse(r.str());
        auto e = std::make_unique<tfidf_embedder>();
        e->p.hash_bits = j.at("hash_bits");
        e->p.word_ngram_max = j.at("word_ngram_max");
        e->p.char_ngram_min = j.at("char_ngram_min");
        e->p.char_ngram_max = j.at("char_ngram_max");
        e->p.char_weight = j.at("char_weight");
        e->p.tools_weight = j.at("tools_weight");
        e->p.shape_weight = j.at("shape_weight");
        e->p.min_df = j.at("min_df");
        e->p.sketch_dim = j.at("sketch_dim");
        e->p.dim = j.at("dim");
        e->p.pca_sample = j.at("pca_sample");
        e->p.idf_sample = j.at("idf_sample");
        e->fitted_docs = j.at("fitted_docs");
        e->idf = r.floats();
        e->proj = r.floats();
        e->bias = r.floats();
        r.done();
        if (e->idf.size() != (size_t{1} << e->p.hash_bits) ||
            e->proj.size() != static_cast<size_t>(e->p.sketch_dim) * e->p.dim || e->bias.size() != static_cast<size_t>(e->p.dim))
            throw user_error("stored tfidf embedder has inconsistent sizes",
                             "the database may be damaged; run `slmctl cluster` again");
        return e;
    }
};

}  // namespace

std::unique_ptr<embedder> fit_tfidf(const std::vector<std::string_view>& docs, const tfidf_params& p, uint64_t seed,
                                    std::vector<float>* corpus_vectors) {
    check_params(p);
    auto e = std::make_unique<tfidf_embedder>();
    e->p = p;
    const int64_t n = static_cast<int64_t>(docs.size());
    e->fitted_docs = n;
    const size_t buckets = size_t{1} << p.hash_bits;
    const uint32_t shift = 64 - p.hash_bits;
    const auto cfg = config_of(p);
    auto tail_cfg = cfg;
    tail_cfg.char_ngram_max = 0;

    auto t0 = std::chrono::steady_clock::now();
    auto lap = [&](const char* what) {
        log_debug("tfidf {}: {:.3f} s", what, seconds_since(t0));
        t0 = std::chrono::steady_clock::now();
    };

    // 1. document frequency per bucket, one private table per thread (stamp = last doc seen)
    //    (on a seeded sample above idf_sample documents: the estimate is as good, at a fraction)
    std::vector<int64_t> df_docs;
    if (p.idf_sample > 0 && n > p.idf_sample) {
        std::mt19937_64 rng(seed ^ 0x3c6ef372fe94f82bULL);
        auto pick = detail::sample_indices(static_cast<size_t>(n), static_cast<size_t>(p.idf_sample), rng);
        df_docs.assign(pick.begin(), pick.end());
    } else {
        df_docs.resize(n);
        std::iota(df_docs.begin(), df_docs.end(), 0);
    }
    const int64_t n_df = static_cast<int64_t>(df_docs.size());
    std::vector<uint32_t> df(buckets, 0);
#pragma omp parallel
    {
        std::vector<uint32_t> local(buckets, 0), stamp(buckets, 0);
#pragma omp for schedule(dynamic, 256)
        for (int64_t j = 0; j < n_df; ++j) {
            const int64_t i = df_docs[j];
            const uint32_t tag = static_cast<uint32_t>(j + 1);
            auto count = [&](uint64_t h, int) {
                uint32_t b = static_cast<uint32_t>(h >> shift);
                if (stamp[b] != tag) {
                    stamp[b] = tag;
                    ++local[b];
                }
            };
            auto fields = split_fields(docs[i]);
            for_each_feature(fields.text, cfg, count);
            for_each_feature(fields.tools, tail_cfg, count);
            for_each_feature(fields.shape, tail_cfg, count);
        }
#pragma omp critical
        for (size_t b = 0; b < buckets; ++b) df[b] += local[b];
    }
    e->idf.assign(buckets, 0.f);
    const double n1 = static_cast<double>(n_df) + 1;
    const uint32_t min_df = static_cast<uint32_t>(std::max<int64_t>(
        1, std::llround(static_cast<double>(std::max(1, p.min_df)) * n_df / std::max<int64_t>(1, n))));
    for (size_t b = 0; b < buckets; ++b)
        if (df[b] >= min_df)
            e->idf[b] = static_cast<float>(std::log(n1 / (df[b] + 1.0)) + 1.0);  // sklearn's smooth idf

    lap("document frequencies");

    // 2. PCA on the sketches of a sample
    std::mt19937_64 rng(seed ^ 0x7fc1a5e1ULL);
    const auto sample = detail::sample_indices(static_cast<size_t>(n), static_cast<size_t>(std::max(p.pca_sample, 2)), rng);
    const int64_t m = static_cast<int64_t>(sample.size());
    std::vector<float> xs(static_cast<size_t>(m) * p.sketch_dim);
#pragma omp parallel
    {
        feature_counter cnt;
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < m; ++i) e->sketch(docs[sample[i]], cnt, xs.data() + i * p.sketch_dim);
    }
    lap("sketches of the PCA sample");
    // fewer documents than dims: faiss can only output as many components as it saw documents;
    // the rest of the embedding stays 0
    const int d_pca = static_cast<int>(std::min<int64_t>(p.dim, m));
    faiss::PCAMatrix pca(p.sketch_dim, d_pca);
    pca.max_points_per_d = std::max<size_t>(1, static_cast<size_t>(m) / p.sketch_dim + 1);
    if (m >= 2) {
        detail::single_thread_scope one;  // dsyev on 512 dims: a few hundred tiny BLAS calls
        pca.train(m, xs.data());
    } else {  // one document: nothing to learn
        pca.A.assign(static_cast<size_t>(d_pca) * p.sketch_dim, 0.f);
        for (int r = 0; r < d_pca; ++r) pca.A[static_cast<size_t>(r) * p.sketch_dim + r] = 1.f;
        pca.b.assign(d_pca, 0.f);
    }
    SLM_ASSERT(pca.A.size() == static_cast<size_t>(d_pca) * p.sketch_dim, "PCA matrix has {} entries", pca.A.size());
    e->proj.assign(static_cast<size_t>(p.sketch_dim) * p.dim, 0.f);
    for (int r = 0; r < d_pca; ++r)
        for (int c = 0; c < p.sketch_dim; ++c)
            e->proj[static_cast<size_t>(c) * p.dim + r] = pca.A[static_cast<size_t>(r) * p.sketch_dim + c];
    e->bias.assign(p.dim, 0.f);
    for (int r = 0; r < d_pca && r < static_cast<int>(pca.b.size()); ++r) e->bias[r] = pca.b[r];
    lap("PCA training");
    xs.clear();
    xs.shrink_to_fit();

    // 3. the corpus' own embeddings
    if (corpus_vectors) {
        corpus_vectors->assign(static_cast<size_t>(n) * p.dim, 0.f);
        e->embed(docs, corpus_vectors->data());
        lap("embedding the corpus");
    }
    return e;
}

namespace detail {
std::unique_ptr<embedder> load_tfidf(const std::vector<uint8_t>& blob) { return tfidf_embedder::load(blob); }
}  // namespace detail

}  // namespace slm::clustering
