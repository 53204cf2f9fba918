// The Llama-family decoder in libtorch (Llama 2/3, SmolLM, TinyLlama, Qwen2, Mistral): config,
// projections with optional LoRA, KV cache, and a forward pass usable for training and decoding.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "model/lora-config.h"

namespace slm::model {

// Dimensions, named once (llm.c habit):
// B batch, T time (new tokens this call), S key/value slots (cache length after this call),
// C channels (hidden size), H query heads, K key/value heads (GQA), D head dim, R = H/K,
// F feed-forward hidden size, V vocabulary, r LoRA rank.

/// Hyper-parameters of a decoder; filled from config.json, GGUF metadata or a llama2.c header.
struct llama_config {
    std::string arch = "llama";    ///< "llama", "qwen2", "mistral", ... (informational)
    int64_t vocab_size = 0;        ///< V
    int64_t dim = 0;               ///< C
    int64_t n_layers = 0;
    int64_t n_heads = 0;           ///< H
    int64_t n_kv_heads = 0;        ///< K (== H without GQA)
    int64_t head_dim = 0;          ///< D (usually C / H)
    int64_t ffn_dim = 0;           ///< F
    int64_t context_length = 2048; ///< positions the RoPE table covers
    float rms_eps = 1e-5f;         ///< RMSNorm epsilon
    float rope_theta = 10000.f;    ///< RoPE base
    std::vector<float> rope_freq_factors;  ///< (D/2) divisors of the inverse frequencies (Llama 3.1 scaling); empty = none
    bool tied_embeddings = false;  ///< LM head shares tok_embd
    bool qkv_bias = false;         ///< q/k/v projections have biases (Qwen2)

    /// user_error naming `source` when a value is missing or inconsistent (H % K, D, ...).
    void validate(const std::string& source) const;
    /// One line: "llama: 30 layers, C 576, H 9/K 3, D 64, F 1536, V 49152, ctx 8192, theta 1e5".
    std::string summary() const;
};

/// Inverse RoPE frequencies for Llama 3's "llama3" rope_scaling, as divisors per frequency.
std::vector<float> llama3_rope_factors(int64_t head_dim, float theta, float factor, float low_freq_factor,
                                       float high_freq_factor, int64_t original_context);

/// A projection y = W x + b + (alpha/r) B A x.
/// W (out, in) and b are the frozen base weights; A (r, in) Kaiming-uniform and B (out, r) zero make
/// the adapter a no-op at start (torchtune's LoRALinear). Without an adapter, y = W x + b.
struct lora_linear {
    torch::Tensor weight;     ///< (out, in), requires_grad false
    torch::Tensor bias;       ///< (out) or undefined
    torch::Tensor lora_a;     ///< (r, in) or undefined
    torch::Tensor lora_b;     ///< (out, r) or undefined
    double lora_scale = 0.0;  ///< alpha / r (or alpha / sqrt(r) with rsLoRA)
    double lora_dropout = 0.0;  ///< dropout on the adapter's input while gradients are on (training)

    torch::Tensor forward(const torch::Tensor& x) const;  // (..., in) -> (..., out)
    /// The adapter's input: x in the adapter's dtype, dropout applied while gradients are on.
    /// Projections that read the same x (q/k/v, gate/up) share one dropped copy: the dropout mask
    /// is most of the adapter's cost on a CPU (240 M random draws per SmolLM2 forward of 1600 tokens).
    torch::Tensor lora_input(const torch::Tensor& x) const;
    bool has_lora() const { return lora_a.defined(); }
    int64_t out_features() const { return weight.size(0); }
    int64_t in_features() const { return weight.size(1); }
};

/// A weight (out, in) in 4 bits for small-batch decoding on the CPU: groups of 32 along `in`,
/// w = (q - 8) * scale + zero (torch's int4pack kernel), bf16 scale/zero. From Q4_1 weights the
/// groups are the file's own, so q is exact and only the scales round to bf16.
struct int4_weight {
    torch::Tensor packed;      ///< _convert_weight_to_int4pack_for_cpu output
    torch::Tensor scale_zero;  ///< (in/32, out, 2) bf16
    bool defined() const { return packed.defined(); }
    /// x (..., in) -> (..., out) in x's dtype (computed in bf16)
    torch::Tensor forward(const torch::Tensor& x) const;
    /// Groups of 32 by min/max; an undefined result when the shape or the kernel does not allow it.
    static int4_weight quantize(const torch::Tensor& w);
};


struct llama_layer {
    torch::Tensor attn_norm;  ///< (C)
    torch::Tensor ffn_norm;   ///< (C)
    lora_linear wq;           ///< (H*D, C)
    lora_linear wk;           ///< (K*D, C)
    lora_linear wv;           ///< (K*D, C)
    lora_linear wo;           ///< (C, H*D)
    lora_linear w_gate;       ///< (F, C)
    lora_linear w_up;         ///< (F, C)
    lora_linear w_down;       ///< (C, F)
    // Inference fast path: the q/k/v and gate/up weights live in one tensor each, and the
    // projections' weights above are row views into them (no copy); one matmul instead of 3 or 2
    // when the projections carry no adapter. Built by llama_model::finalize().
    torch::Tensor qkv_weight;      ///< (H*D + 2*K*D, C)
    torch::Tensor qkv_bias;        ///< (H*D + 2*K*D) or undefined
    torch::Tensor gate_up_weight;  ///< (2*F, C)
    // 4-bit copies for small-batch decoding (llama_model::enable_int4_decode), else undefined
    int4_weight qkv4, wo4, gate_up4, down4;
    lora_linear& projection(proj p);
    const lora_linear& projection(proj p) const;
};

/// Preallocated keys and values of every layer (float32 for every model dtype: attention runs in
/// float32); slots [0, len) are filled.
struct kv_cache {
    std::vector<torch::Tensor> k;  ///< per layer (B, K, capacity, D)
    std::vector<torch::Tensor> v;  ///< per layer (B, K, capacity, D)
    int64_t len = 0;
    int64_t capacity() const { return k.empty() ? 0 : k[0].size(2); }
    int64_t batch() const { return k.empty() ? 0 : k[0].size(0); }
};

/// Keys and values of slots [0, len) that every row of a forward call continues, e.g. the prompt
/// prefix a group of training examples shares: per layer (1|B, K, len, D) float32, after RoPE,
/// every slot valid. Unlike kv_cache nothing is written into it: it may carry gradients, and the
/// attention reads it expanded over the rows, so the gradient reaching it is the sum over the rows.
struct kv_prefix {
    std::vector<torch::Tensor> k;  ///< per layer (1|B, K, len, D)
    std::vector<torch::Tensor> v;  ///< per layer (1|B, K, len, D)
    int64_t len = 0;
};

/// Inputs of one forward call.
struct forward_args {
    torch::Tensor tokens;     ///< (B, T) int64 token ids
    torch::Tensor positions;  ///< (B, T) int64 RoPE positions; undefined = cache->len + arange(T)
    torch::Tensor key_valid;  ///< (B, S) bool, false for padding slots; undefined = all valid
    kv_cache* cache = nullptr;  ///< nullptr: no cache (training, scoring); else appended to
    bool last_only = false;   ///< logits for the last position only: (B, 1, V)
    bool hidden = false;      ///< return the final-norm hidden states (B, T, C) float32, not logits
    /// Keys/values of the slots before this call's tokens (not with `cache`): positions default to
    /// prefix->len + arange(T), key_valid (if any) covers prefix->len + T slots.
    const kv_prefix* prefix = nullptr;
    /// Receives every layer's keys/values of this call (the prefix's first), differentiable.
    kv_prefix* capture = nullptr;
    /// Never the 4-bit copies, however few rows: prefill sets it, so a prompt's keys/values do not
    /// depend on how it was split (whole, or a shared prefix then a short suffix).
    bool dense = false;
};

/// The decoder. Plain tensors (no nn::Module) so loaders fill them and LoRA finetuning adds
/// adapters per projection; every weight lives on `device()` in `dtype()`.
class llama_model {
public:
    llama_config config;
    torch::Tensor tok_embd;  ///< (V, C)
    torch::Tensor out_norm;  ///< (C)
    torch::Tensor output;    ///< (V, C); the same tensor as tok_embd when tied
    std::vector<llama_layer> layers;

    /// Builds the RoPE tables for `config` on the weights' device and fuses q/k/v and gate/up
    /// weights (the projections then view the fused tensors); call after the weights are set.
    void finalize();
    torch::ScalarType dtype() const { return tok_embd.scalar_type(); }
    torch::Device device() const { return tok_embd.device(); }
    /// Moves/casts all weights (adapters included: create trainable adapters after this, a cast
    /// copy is not a leaf) and rebuilds the RoPE tables and the fused weights.
    void to(torch::ScalarType dtype, torch::Device device);

    /// Logits (B, T, V) (float32) for `args`. Differentiable with respect to LoRA A/B (and
    /// anything else that requires grad); wrap inference in torch::NoGradGuard.
    torch::Tensor forward(const forward_args& args) const;
    /// Training/scoring shortcut: causal attention over `tokens` (B, T), positions 0..T-1.
    torch::Tensor forward(const torch::Tensor& tokens) const;

    /// An empty cache for `batch` sequences of up to `capacity` slots, on the model's device.
    kv_cache new_cache(int64_t batch, int64_t capacity) const;
    /// Base parameters (tied embeddings counted once; adapters not counted).
    int64_t n_params() const;

    /// Small-batch decoding from 4-bit copies of the weights (beside the dense ones, which training,
    /// prefill and large batches keep using): a forward call with at most `max_rows` rows (B*T),
    /// no gradient and no adapter on a projection uses them. Memory-bound batch-1 decoding reads a
    /// quarter of the bf16 bytes. CPU only; returns false (and changes nothing) where the kernel
    /// or the shapes do not allow it.
    /// `head`: also the LM head (keep it dense when the file stores it in more than 4 bits).
    /// The copies are made on the first forward call that uses them (a few seconds for SmolLM2),
    /// so loading, training and large batches never pay for them.
    bool enable_int4_decode(int64_t max_rows = 4, bool head = true);
    int64_t int4_max_rows = 0;  ///< 0: off
    /// Makes the 4-bit copies now if decoding `rows` sequences will use them (generation calls it
    /// before its clock starts).
    void prepare_decode(int64_t rows) const;
    int4_weight output4;        ///< LM head

    /// Attention through explicit matmul + softmax instead of scaled_dot_product_attention: the
    /// reference path the fused one is tested against.
    bool explicit_attention = false;
    /// RMSNorm, SwiGLU and the q/k/v adds + RoPE + float32 cast through the fused CPU kernels
    /// (model/net/fused.h; one pass each way instead of a chain of libtorch ops); off: the op chains,
    /// the reference the kernels are tested against. CUDA and other dtypes always take the chains.
    /// Default on; SLMCTL_FUSED_KERNELS=0 turns it off (A/B runs: bench/finetune).
    bool fused_kernels = fused_kernels_default();
    static bool fused_kernels_default();

private:
    bool use_int4(const torch::Tensor& x) const;  // small-batch inference with the 4-bit copies
    bool use_fused(const torch::Tensor& x) const;  // fused_kernels, and x on the CPU in fp32/bf16
    torch::Tensor norm(const torch::Tensor& x, const torch::Tensor& w) const;  // RMSNorm, fused or not
    void build_int4();                            // makes the copies (once, from use_int4)
    bool int4_head_ = false;
    std::shared_ptr<std::once_flag> int4_once_;
    /// Which key slots a query may see: `allowed` (B|1, 1, T, S) bool, or plain causal.
    struct attn_mask {
        torch::Tensor allowed;
        bool causal = false;
    };
    torch::Tensor rope_cos_, rope_sin_;  // (context_length, D) rotate-half layout
    torch::Tensor attention(const llama_layer& L, int64_t layer, const torch::Tensor& x, const torch::Tensor& cos,
                            const torch::Tensor& sin, const attn_mask& mask, const forward_args& a) const;
};

/// RMSNorm in float32, cast back: w * x / sqrt(mean(x^2) + eps).   (..., C) -> (..., C)
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& w, double eps);

/// Reorders rows of a q or k weight (or bias) stored for interleaved-pair RoPE (Meta, llama2.c,
/// GGUF "llama") into the rotate-half layout used here (HF). `w` is (n_heads*D, ...).
torch::Tensor unpermute_interleaved_rope(const torch::Tensor& w, int64_t n_heads);

/// torch dtype from "fp32" / "bf16" / "fp16"; user_error otherwise.
torch::ScalarType parse_dtype(const std::string& name);
const char* dtype_name(torch::ScalarType t);

}  // namespace slm::model
