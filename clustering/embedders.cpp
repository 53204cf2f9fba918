// Which embedder a name means: tfidf (fitted per run), minilm and model:PATH (pretrained);
// loading a saved one by the name stored with the run.
#include "clustering/clustering.h"
#include "clustering/embedder-io.h"
#include "common/common.h"
#include "model/bert.h"

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

}  // namespace

std::unique_ptr<embedder> make_pretrained_embedder(const std::string& spec) {
    if (spec == "tfidf")
        throw internal_error("tfidf is fitted on the corpus: call fit_tfidf, not make_pretrained_embedder");
    if (spec == "minilm") return std::make_unique<minilm_embedder>(model::default_minilm_dir());
    if (spec.rfind("model:", 0) == 0) {
        if (spec.size() == 6)
            throw usage_error("--embedder model: needs a path", "e.g. --embedder model:/path/to/model.gguf");
        throw usage_error("the model:PATH embedder is not built yet in this version",
                          "it needs hidden states from the model/ module; use --embedder tfidf (the default)");
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
    throw user_error(fmt::format("the stored run uses the '{}' embedder, which this slmctl cannot load", name),
                     "re-run `slmctl cluster` with --embedder tfidf");
}

}  // namespace slm::clustering
