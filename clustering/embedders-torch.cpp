// The pretrained embedders that run in libtorch: all-MiniLM-L6-v2 (model/bert.h) and model:PATH
// (mean-pooled decoder states). Compiled into the tensor plugin; embedders.cpp reaches them by name.
#include "clustering/clustering.h"
#include "common/common.h"
#include "model/bert.h"
#include "model/model.h"
#include "model/runtime.h"

namespace slm::clustering {

namespace {

/// all-MiniLM-L6-v2 (model/bert.h): pretrained, so its saved state is only where the weights are.
class minilm_embedder final : public embedder {
public:
    minilm_embedder(std::string dir, const std::string& device)
        : dir_(std::move(dir)), m_(model::sentence_embedder::load(dir_, params(device))) {}
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
    static model::sentence_embedder_params params(const std::string& device) {
        model::sentence_embedder_params p;
        p.device = device;
        return p;
    }
    std::string dir_;
    model::sentence_embedder m_;
};

/// model:PATH: any checkpoint model/ loads, mean-pooled final hidden states (model.h).
class decoder_embedder final : public embedder {
    // fp32, not auto: with bf16 hidden states SmolLM2's mean-pooled vectors of the 368 real pairs
    // all fall within bf16's resolution of one another and k-means finds 1 cluster (15 in fp32)
    static model::load_options options(const std::string& device) {
        model::load_options o;
        o.dtype = "fp32";
        o.device = device;
        return o;
    }

public:
    decoder_embedder(std::string path, const std::string& device)
        : path_(std::move(path)), m_(model::load_model(path_, options(device))) {}
    std::string name() const override { return "model:" + path_; }
    int dim() const override { return static_cast<int>(m_->info().dim); }
    void embed(const std::vector<std::string_view>& docs, float* out) const override {
        std::vector<std::string> texts(docs.begin(), docs.end());
        auto v = m_->embed_mean_pooled(texts);
        SLM_ASSERT(v.size() == docs.size() * static_cast<size_t>(dim()), "model returned {} floats", v.size());
        std::copy(v.begin(), v.end(), out);
    }
    nlohmann::json params() const override {
        return {{"model", path_},
                {"pooling", "mean"},
                {"max_tokens", 256},
                {"dtype", m_->info().dtype},
                {"dtype_choice", m_->info().dtype_choice}};
    }
    std::vector<uint8_t> save() const override {
        auto s = nlohmann::json{{"model", path_}}.dump();
        return {s.begin(), s.end()};
    }

private:
    std::string path_;
    std::unique_ptr<model::language_model> m_;
};

}  // namespace

}  // namespace slm::clustering

/// kind "minilm" (arg: model dir, empty = the default) or "model" (arg: checkpoint path), its
/// weights on `device` -> *out.
extern "C" void slm_plugin_make_embedder(const char* kind, const char* arg, const char* device,
                                         std::unique_ptr<slm::clustering::embedder>* out) {
    using namespace slm::clustering;
    slm::model::set_torch_threads(slm::num_threads());
    std::string k = kind, a = arg, dev = device;
    slm::model::check_device(dev);  // before any file is read: the clear error comes first
    if (k == "minilm")
        *out = std::make_unique<minilm_embedder>(a.empty() ? slm::model::default_minilm_dir() : a, dev);
    else if (k == "model")
        *out = std::make_unique<decoder_embedder>(a, dev);
    else
        throw slm::internal_error(fmt::format("slm_plugin_make_embedder: unknown kind '{}'", k));
}
