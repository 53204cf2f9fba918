// Which embedder a name means: tfidf (fitted per run), minilm and model:PATH (pretrained, in the
// tensor plugin); loading a saved one by the name stored with the run.
#include "clustering/clustering.h"
#include "clustering/embedder-io.h"
#include "common/common.h"
#include "common/tensor-plugin.h"

namespace slm::clustering {

namespace {

/// The embedders that need libtorch live in the tensor plugin (clustering/embedders-torch.cpp).
std::unique_ptr<embedder> make_torch_embedder(const char* kind, const std::string& arg, const std::string& device) {
    std::unique_ptr<embedder> out;
    tensor_plugin::fn<void(const char*, const char*, const char*, std::unique_ptr<embedder>*)>(
        "slm_plugin_make_embedder")(kind, arg.c_str(), device.c_str(), &out);
    return out;
}

}  // namespace

std::unique_ptr<embedder> make_pretrained_embedder(const std::string& spec, const std::string& device) {
    if (spec == "tfidf")
        throw internal_error("tfidf is fitted on the corpus: call fit_tfidf, not make_pretrained_embedder");
    if (spec == "minilm") return make_torch_embedder("minilm", "", device);
    if (spec.rfind("model:", 0) == 0) {
        if (spec.size() == 6)
            throw usage_error("--embedder model: needs a path", "e.g. --embedder model:/path/to/model.gguf");
        return make_torch_embedder("model", spec.substr(6), device);
    }
    throw usage_error(fmt::format("unknown embedder '{}'", spec), "use tfidf, minilm or model:PATH");
}

std::unique_ptr<embedder> load_embedder(const std::string& name, const std::vector<uint8_t>& blob,
                                        const std::string& device) {
    if (name == "tfidf") return detail::load_tfidf(blob);
    if (name == "minilm") {
        auto j = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
        if (j.is_discarded() || !j.contains("model_dir") || !j["model_dir"].is_string())
            throw user_error("the stored minilm embedder state is corrupt (cluster_models.blob)",
                             "re-run `slmctl cluster --embedder minilm`");
        return make_torch_embedder("minilm", j["model_dir"].get<std::string>(), device);
    }
    if (name.rfind("model:", 0) == 0) {
        auto j = nlohmann::json::parse(blob.begin(), blob.end(), nullptr, false);
        if (j.is_discarded() || !j.contains("model") || !j["model"].is_string())
            throw user_error("the stored model embedder state is corrupt (cluster_models.blob)",
                             "re-run `slmctl cluster --embedder model:PATH`");
        return make_torch_embedder("model", j["model"].get<std::string>(), device);
    }
    throw user_error(fmt::format("the stored run uses the '{}' embedder, which this slmctl cannot load", name),
                     "re-run `slmctl cluster` with --embedder tfidf");
}

}  // namespace slm::clustering
