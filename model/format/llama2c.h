// llama2.c checkpoints (karpathy's run.c format): a 7-int32 header then fp32 weights in a fixed
// order, Meta-style interleaved RoPE; and its tokenizer.bin vocabulary (for decoding).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace slm::model {

class llama_model;  // model/llama.h

/// The 7 int32 of a llama2.c header; vocab_size < 0 in the file means an unshared classifier.
struct llama2c_header {
    int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0, seq_len = 0;
    bool shared_classifier = true;
};

/// True when `path` looks like a llama2.c checkpoint: a plausible header and the exact file size.
bool is_llama2c_file(const std::string& path);

/// Loads the weights as fp32 on the CPU, q/k rows reordered for rotate-half RoPE (Meta order is
/// interleaved pairs). user_error naming the file when the header or the size is wrong.
std::unique_ptr<llama_model> load_llama2c(const std::string& path, llama2c_header* header_out = nullptr);

/// llama2.c's tokenizer.bin: max_token_length, then per token (score f32, len i32, bytes).
struct llama2c_vocab {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    /// Reads `n_vocab` entries; user_error when the file is short or corrupt.
    static llama2c_vocab load(const std::string& path, int64_t n_vocab);
    /// run.c's encode: BOS (when `bos`), a dummy-prefix space, UTF-8 characters (byte fallback
    /// id = byte + 3), then repeatedly the adjacent merge with the best score.
    std::vector<int32_t> encode(const std::string& text, bool bos) const;
    /// run.c's decode: "<0xAB>" pieces become raw bytes; BOS (1) and EOS (2) print nothing and the
    /// space after BOS is dropped.
    std::string decode(const std::vector<int32_t>& ids) const;
};

}  // namespace slm::model
