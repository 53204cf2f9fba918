// Sentence embeddings with a BERT encoder, sentence-transformers style (all-MiniLM-L6-v2):
// WordPiece ids -> BERT -> mean pooling over the attention mask -> L2 normalisation. Torch-free.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/tokenizer/wordpiece-tokenizer.h"

namespace slm::model {

/// How to load and run a sentence embedder.
struct sentence_embedder_params {
    std::string device = "cpu";  ///< "cpu", "cuda", "cuda:N"
    std::string dtype = "auto";  ///< "fp32", "bf16" or "auto" (bf16 where the CPU has fast bf16 matmul, else fp32)
    int batch_size = 64;         ///< texts per forward pass (after sorting by length)
    int max_length = 0;          ///< tokens per text, [CLS]/[SEP] included; 0: the model's max_seq_length (256)
};

/// The encoder's shape, from config.json and sentence_bert_config.json.
struct bert_config {
    int64_t vocab_size = 0, dim = 0, n_layers = 0, n_heads = 0, ffn_dim = 0, max_positions = 0, type_vocab_size = 0;
    double ln_eps = 1e-12;
    int64_t max_seq_length = 256;  ///< sentence-transformers' truncation length
};

class bert_encoder;  // model/bert.cpp (holds the tensors)

/// A loaded BERT sentence embedder. Moveable; embed() is const but not meant for concurrent calls.
class sentence_embedder {
public:
    /// Loads a sentence-transformers directory: config.json, model.safetensors, vocab.txt
    /// (+ tokenizer_config.json, sentence_bert_config.json, 1_Pooling/config.json when present).
    /// user_error naming the file (and tensor) with a hint when anything is missing or malformed.
    static sentence_embedder load(const std::string& dir, sentence_embedder_params p = {});
    sentence_embedder(sentence_embedder&&) noexcept;
    sentence_embedder& operator=(sentence_embedder&&) noexcept;
    ~sentence_embedder();

    /// Embedding width (384 for MiniLM-L6).
    int dim() const;
    /// (n, dim) row-major float32, each row L2-normalised (a zero row only for an impossible
    /// all-zero output). Texts are sorted by length and batched to minimise padding; the result
    /// is in input order. Empty texts embed [CLS] [SEP].
    std::vector<float> embed(const std::vector<std::string>& texts) const;

    const wordpiece_tokenizer& tokenizer() const { return tok_; }
    const bert_config& config() const;
    const sentence_embedder_params& params() const { return p_; }
    /// "fp32" or "bf16", as resolved at load.
    const std::string& dtype() const { return dtype_; }

private:
    sentence_embedder(wordpiece_tokenizer tok, std::unique_ptr<bert_encoder> enc, sentence_embedder_params p,
                      std::string dtype);
    wordpiece_tokenizer tok_;
    std::unique_ptr<bert_encoder> enc_;
    sentence_embedder_params p_;
    std::string dtype_;
};

/// Where scripts/fetch-models.sh puts all-MiniLM-L6-v2: models_dir() + "/all-MiniLM-L6-v2".
std::string default_minilm_dir();

}  // namespace slm::model
