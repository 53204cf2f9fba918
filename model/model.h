// The model module's public face: load a checkpoint (GGUF file, HF safetensors directory, llama2.c
// .bin), describe it, tokenize, render chats and generate text. Torch-free: cli/ includes only this;
// code that needs tensors (finetune, eval) includes model/llama.h for decoder().
//
// Public headers of slm_model are the ones at model/*.h: model.h (load, describe, generate),
// tokenizer.h (tokenizers, tokenizer-only loading), chat-template.h, generate.h, dtype.h (--dtype
// auto), runtime.h (threads, devices), tensor-names.h, bert.h (sentence embedder) and llama.h (the
// decoder's tensors, torch). Everything in the sub-folders is internal: format/ (GGUF, safetensors,
// llama2.c readers, dequantization, the checkpoint loader), tokenizer/ (BPE, SentencePiece,
// WordPiece, Unicode, chat templates), net/ (the Llama and BERT forward passes, the dtype probe),
// generate/ (batched sampling with a KV cache).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/generate.h"
#include "model/runtime.h"
#include "model/tensor-names.h"
#include "model/tokenizer.h"

namespace slm::model {

class llama_model;
struct llama2c_vocab;
class chat_template;  // model/chat-template.h
class prefix_cache;   // model/prefix.h
struct chat_message;  // model/chat-template.h

/// How to load a checkpoint.
struct load_options {
    std::string dtype = "auto";  ///< "auto" (model/dtype.h: measured per machine), "fp32" or "bf16"
    std::string device = "cpu";  ///< "cpu", "cuda", "cuda:N"
    bool tokenizer = true;       ///< also load the tokenizer and chat template (when the checkpoint has them)
    /// 4-bit copies for small-batch decoding (llama_model::enable_int4_decode): "auto" = on for a
    /// GGUF whose projections are Q4_1 (their groups kept exactly), on the CPU; "on", "off".
    std::string int4_decode = "auto";
};

/// What `slmctl model info` shows.
struct model_info {
    std::string path;
    source_format format = source_format::hf;
    std::string architecture;    ///< "llama", "qwen2", ...
    std::string name;            ///< general.name or the directory name
    int64_t n_params = 0;        ///< base parameters (tied embeddings once)
    int64_t n_layers = 0, dim = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn_dim = 0, vocab_size = 0;
    int64_t context_length = 0;
    double rope_theta = 0, rms_eps = 0;
    bool tied_embeddings = false, qkv_bias = false;
    std::map<std::string, int64_t> tensor_types;  ///< storage type in the file -> number of tensors
    std::string dtype, device;   ///< as loaded
    nlohmann::json dtype_choice; ///< how dtype was chosen (model/dtype.h dtype_choice::to_json)
    std::string int4_decode = "off";  ///< "off", "layers" or "layers+head": 4-bit copies for small batches
    std::string head_type;            ///< storage type of the LM head in the file (GGUF), "" if unknown
    std::string tokenizer_kind;  ///< "bpe (gpt2)", "spm", "llama2c", "none"
    std::string chat_format;     ///< chat template family ("chatml", "llama3", ...), "none" when there is none
    std::vector<std::pair<std::string, int32_t>> special_tokens;  ///< ("bos", 1), ("eos", 2), ...
    std::vector<std::string> special_texts;                       ///< text of each special_tokens entry
    double load_s = 0;           ///< seconds spent loading

    nlohmann::json to_json() const;
};

/// Text generation: sampling plus stop strings.
struct text_params {
    sampling_params sampling;        ///< eos_ids empty: the tokenizer's end-of-generation ids
    std::vector<std::string> stop;   ///< extra stop strings (the chat template's are added for chats)
    /// Streaming: called at sync points with a sequence's text so far (cut before any stop string).
    std::function<void(size_t seq, const std::string& text)> on_text;
    /// Shared prompt prefixes computed once (model/prefix.h generate_shared); nullptr: each prompt whole.
    prefix_cache* prefixes = nullptr;
};

/// One generated answer.
struct completion {
    std::string text;             ///< decoded, cut before a stop string
    std::vector<int32_t> tokens;  ///< generated ids (EOS and stop-string tokens excluded)
    finish_reason reason = finish_reason::length;
};

/// A loaded checkpoint: decoder weights on their device, tokenizer and chat template.
class language_model {
public:
    ~language_model();
    language_model(const language_model&) = delete;
    language_model& operator=(const language_model&) = delete;

    const model_info& info() const { return info_; }
    /// The decoder (include model/llama.h to use it).
    llama_model& decoder() { return *decoder_; }
    const llama_model& decoder() const { return *decoder_; }

    bool has_tokenizer() const { return tokenizer_.has_value(); }
    /// user_error when the checkpoint has no tokenizer we can load.
    const tokenizer& tok() const;
    /// Text -> ids, BOS added when the model asks for it (and `add_special`); special-token text
    /// ("<|im_start|>") is parsed into ids when `parse_special`.
    std::vector<int32_t> encode(const std::string& text, bool add_special = true, bool parse_special = false) const;
    /// Ids -> text (llama2.c vocabularies decode too).
    std::string decode(const std::vector<int32_t>& ids) const;
    /// Ids that end generation by default.
    std::vector<int32_t> eos_ids() const;

    bool has_chat_template() const { return chat_ != nullptr; }
    /// user_error when the model has no chat template.
    const chat_template& chat() const;
    /// Renders messages with the model's template (generation prompt added) and encodes them.
    std::vector<int32_t> encode_chat(const std::vector<chat_message>& messages) const;

    /// Generates for token prompts (one batch), with stop strings from `p`.
    std::vector<completion> generate_ids(const std::vector<std::vector<int32_t>>& prompts, const text_params& p,
                                         generate_stats* stats = nullptr) const;
    /// Generates for text prompts (encoded with BOS when the model wants it).
    std::vector<completion> generate(const std::vector<std::string>& prompts, const text_params& p,
                                     generate_stats* stats = nullptr) const;
    /// One user turn per prompt, rendered with the chat template; its stop strings apply.
    std::vector<completion> chat_generate(const std::vector<std::vector<chat_message>>& chats, const text_params& p,
                                          generate_stats* stats = nullptr) const;

    /// Sentence embeddings: the final-norm hidden states mean-pooled over each text's tokens
    /// (at most `max_tokens`), L2-normalised. (n, info().dim) row-major float32.
    std::vector<float> embed_mean_pooled(const std::vector<std::string>& texts, int max_tokens = 256,
                                         int batch_size = 16) const;

private:
    language_model();
    friend std::unique_ptr<language_model> load_model(const std::string& path, const load_options& opt);
    model_info info_;
    std::unique_ptr<llama_model> decoder_;
    std::optional<tokenizer> tokenizer_;
    std::shared_ptr<const chat_template> chat_;  // shared_ptr: no complete type needed here
    std::unique_ptr<llama2c_vocab> llama2c_vocab_;
};

/// Loads `path`: a GGUF file, an HF directory (config.json + model.safetensors or shards), or a
/// llama2.c checkpoint (its tokenizer.bin / tok{V}.bin beside it is used for decoding).
/// user_error naming the file (and tensor) for anything missing, truncated or mismatched.
std::unique_ptr<language_model> load_model(const std::string& path, const load_options& opt = {});

/// The SmolLM2 file the tests and examples use: models_dir()/SmolLM2-135M-Instruct.Q4_1.gguf.
std::string default_smollm2_path();

}  // namespace slm::model
