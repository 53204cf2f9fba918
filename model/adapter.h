// LoRA adapters on llama_model: configuration, initialisation, the trainable tensors, merging, and
// adapter files in the two forms serving stacks read:
//   - PEFT: a directory with adapter_config.json + adapter_model.safetensors (HF transformers +
//     peft, vLLM --enable-lora, LoRAX, llama.cpp's convert_lora_to_gguf.py), keys
//     base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight, A (r, in), B (out, r);
//   - llama.cpp LoRA GGUF: general.type "adapter", adapter.type "lora", adapter.lora.alpha,
//     tensors blk.{i}.attn_q.weight.lora_a (ggml ne [in, r]) / .lora_b (ne [r, out]); q/k rows of
//     B in the interleaved-RoPE order llama.cpp's base GGUF uses for llama/mistral.
// In memory the q/k rows are in HF's rotate-half layout whatever the base file was, so a PEFT
// adapter trained on a GGUF base loads on the HF checkpoint of the same model and vice versa.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/llama.h"
#include "model/lora-config.h"

namespace slm::model {

class language_model;

/// Adds adapters on `c.targets` of every layer: A (r, in) float32 Kaiming-uniform with a = sqrt(5)
/// (nn.Linear's and PEFT's init: bound 1/sqrt(in)), B (out, r) zeros, both requiring grad, on the
/// model's device; the forward pass is unchanged until B moves. Replaces existing adapters.
void add_lora(llama_model& m, const lora_config& c, uint64_t seed);
/// The adapter tensors in a fixed order: layer, then projection order, A then B.
std::vector<torch::Tensor> lora_parameters(const llama_model& m);
void remove_lora(llama_model& m);
/// W += scale * B A (computed in float32, stored in W's dtype), then the adapters are removed:
/// the merged model's forward equals the adapted one. Not after enable_int4_decode built copies.
void merge_lora(llama_model& m);

/// Writes a PEFT adapter directory (through a temp dir renamed into place).
void save_peft_adapter(const llama_model& m, const lora_config& c, const std::string& dir,
                       const std::string& base_model_name_or_path);
/// Loads a PEFT adapter directory onto `m`; user_error on missing files, options we do not
/// implement (bias, modules_to_save, DoRA, fan_in_fan_out, regex targets), unknown keys, or a
/// tensor whose shape does not fit the base (naming it, expected vs found).
lora_config load_peft_adapter(llama_model& m, const std::string& dir);
/// Writes a llama.cpp LoRA GGUF (temp file renamed into place). llama.cpp has no rsLoRA: sqrt(r)
/// is folded into the alpha written.
void save_gguf_adapter(const llama_model& m, const lora_config& c, const std::string& path);
lora_config load_gguf_adapter(llama_model& m, const std::string& path);
/// A directory -> PEFT, a file -> GGUF; a directory holding adapter.gguf but no adapter_config.json
/// -> that GGUF.
lora_config load_adapter(llama_model& m, const std::string& path);

/// The merged model as an HF checkpoint: model.safetensors (HF names and layout), config.json,
/// and the base's tokenizer files when the base is an HF directory; temp dir + rename.
void save_merged_hf(const language_model& lm, const std::string& dir);

/// Inverse of unpermute_interleaved_rope: rotate-half rows back to interleaved pairs.
torch::Tensor permute_interleaved_rope(const torch::Tensor& w, int64_t n_heads);

}  // namespace slm::model
