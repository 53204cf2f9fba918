// Writing the HF side of a merged checkpoint that came from a GGUF: tokenizer files rebuilt from the
// GGUF vocabulary, and config.json's rope_scaling recovered from rope_freq_factors.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace slm::model {

class gguf_reader;
struct llama_config;

/// Writes tokenizer.json, tokenizer_config.json (with the chat template) and special_tokens_map.json
/// into `dir` from the GGUF's tokenizer.ggml.* metadata, as transformers' AutoTokenizer loads them:
///   - "gpt2" (byte-level BPE): vocab + merges, pre-tokenizer for tokenizer.ggml.pre (gpt-2,
///     smollm/starcoder = Digits(individual) + ByteLevel, llama-bpe and qwen2 = Split(regex) +
///     ByteLevel(use_regex false));
///   - "llama" (SentencePiece BPE): byte_fallback BPE with "▁" normalizer; merges derived from the
///     piece scores as transformers' SentencePieceExtractor does (every split of a normal piece into
///     two pieces, ordered by the merged piece's score).
/// user_error naming the file for a tokenizer model or pre-tokenizer we cannot express.
void write_hf_tokenizer(const gguf_reader& g, const std::string& dir, int64_t model_max_length);

/// config.json "rope_scaling" for c.rope_freq_factors: null without factors, {"rope_type":
/// "linear"} when they are all equal, {"rope_type": "llama3", ...} when a standard Llama 3.1 set of
/// parameters reproduces them; user_error otherwise.
nlohmann::json hf_rope_scaling(const llama_config& c);

}  // namespace slm::model
