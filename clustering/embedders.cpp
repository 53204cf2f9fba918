// Which embedder a name means: tfidf (fitted per run), minilm and model:PATH (pretrained);
// loading a saved one by the name stored with the run.
#include "clustering/clustering.h"
#include "clustering/embedder-io.h"
#include "common/common.h"

namespace slm::clustering {

std::unique_ptr<embedder> make_pretrained_embedder(const std::string& spec) {
    if (spec == "tfidf")
        throw internal_error("tfidf is fitted on the corpus: call fit_tfidf, not make_pretrained_embedder");
    if (spec == "minilm")
        throw usage_error("the minilm embedder is not built yet in this version",
                          "use --embedder tfidf (the default); all-MiniLM-L6-v2 support is tracked in issue #6");
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
    throw user_error(fmt::format("the stored run uses the '{}' embedder, which this slmctl cannot load", name),
                     "re-run `slmctl cluster` with --embedder tfidf");
}

}  // namespace slm::clustering
