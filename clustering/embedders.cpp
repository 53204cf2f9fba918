// Which embedder a name means: tfidf (fitted per run), minilm and model:PATH (pretrained);
// loading a saved one by the name stored with the run.
#include "clustering/clustering.h"
#include "clustering/embedder-io.h"
#include "common/common.h"
#include "model/bert.h"
#include "model/model.h"

namespace slm::clustering {

namespace {

/// all-MiniLM-L6-v2 (model/bert.h): pretrained, so its saved state is only where the weights are.
class minilm_embedder final : public embedder {
public:
    explicit minilm_embedder(std::string dir) : dir_(std::move(dir)), m_(model::sentence_embedder::load(dir_)) {}
    std::string name() const override { return "minilm"; }
    int dim() const override { return m_.dim(); }
    void embed(const std::vector<std::string_view>& docs, float* out) const override {
        std::vector<std::string> texts(docs.begin(), docs.end());
        auto v = m_.embed(texts);
        SLM_ASSERT(v.size() == docs.size() * static_cast<size_t>(dim()), "minilm returned {} floats", v.size());
        std::copy(v.begin(), v.end(), out);
    }
    nlohmann::json params() const override { return {{"model_dir", dir_}, {"dtype", m_.dtype()}}; }
    std::vector<uint8_t> save() const override {
        auto s = nlohmann::json{{"model_dir", dir_}}.dump();
        return {s.begin(), s.end()};
    }

private:
    std::string dir_;
    model::sentence_embedder m_;
};

/// model:PATH: any checkpoint model/ loads, mean-pooled final hidden states (model.h).
class decoder_embedder final : public embedder {
public:
    explicit decoder_embedder(std::string path) : path_(std::move(path)), m_(model::load_model(path_)) {}
    std::string name() const override { return "model:" + path_; }
    int dim() const override { return static_cast<int>(m_->info().dim); }
    void embed(const std::vector<std::string_view>& docs, float* out) const override {
        std::vector<std::string> texts(docs.begin(), docs.end());
        auto v = m_->embed_mean_pooled(texts);
        SLM_ASSERT(v.size() == docs.size() * static_cast<size_t>(dim()), "model returned {} floats", v.size());
        std::copy(v.begin(), v.end(), out);
    }
    nlohmann::json params() const override { return {{"model", path_}, {"pooling", "mean"}, {"max_tokens", 256}}; }
    std::vector<uint8_t> save() const override {
        auto s = nlohmann::json{{"model", path_}}.dump();
        return {s.begin(), s.end()};
    }

private:
    std::string path_;
    std::unique_ptr<model::language_model> m_;
};

}  // namespace

std::unique_ptr<embedder> make_pretrained_embedder(const std::string& spec) {
    if (spec == "tfidf")
        throw internal_error("tfidf is fitted on the corpus: call fit_tfidf, not make_pretrained_embedder");
    if (spec == "minilm") return std::make_unique<minilm_embedder>(model::default_minilm_dir());
    if (spec.rfind("model:", 0) == 0) {
        if (spec.size() == 6)
            throw usage_error("--embedder model: needs a path", "e.g. --embedder model:/path/to/model.gguf");
        return std::make_unique<decoder_embedder>(spec.substr(6));
    }
    throw usage_error(fmt::format("unknown embedder '{}'", spec), "use tfidf, minilm or model:PATH");
}

std::unique_ptr<embedder> load_embedder(const std::string& name, const std::vector<uint8_t>& blob) {
    if (name == "tfidf") return detail::load_tfidf(blob);
    if (name == "minilm") {
        auto j = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
        if (j.is_discarded() || !j.contains("model_dir") || !j["model_dir"].is_string())
            throw user_error("the stored minilm embedder state is corrupt (cluster_models.blob)",
                             "re-run `slmctl cluster --embedder minilm`");
        return std::make_unique<minilm_embedder>(j["model_dir"].get<std::string>());
    }
    if (name.rfind("model:", 0) == 0) {
        auto j = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
        if (j.is_discarded() || !j.contains("model") || !j["model"].is_string())
            throw user_error("the stored model embedder state is corrupt (cluster_models.blob)",
                             "re-run `slmctl cluster --embedder model:PATH`");
        return std::make_unique<decoder_embedder>(j["model"].get<std::string>());
    }
    throw user_error(fmt::format("the stored run uses the '{}' embedder, which this slmctl cannot load", name),
                     "re-run `slmctl cluster` with --embedder tfidf");
}

}  // namespace slm::clustering
