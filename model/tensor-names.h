// Tensor-name patterns of the Llama-family decoder, one table per source format (as llama.cpp's
// llama-arch.cpp): the loaders look names up here instead of spelling them out.
#pragma once
#include <string>
#include <string_view>

namespace slm::model {

/// Where a checkpoint comes from; decides names (and, with the architecture, the q/k layout).
enum class source_format { hf, gguf, llama2c };
const char* source_format_name(source_format f);

/// Every tensor the decoder reads; per-layer roles take the layer index.
enum class tensor_role {
    tok_embd,   ///< (V, C) token embedding
    out_norm,   ///< (C) final RMSNorm weight
    output,     ///< (V, C) LM head; absent when tied to tok_embd
    attn_norm,  ///< (C) per layer
    attn_q,     ///< (H*hd, C)
    attn_k,     ///< (Hkv*hd, C)
    attn_v,     ///< (Hkv*hd, C)
    attn_o,     ///< (C, H*hd)
    attn_q_bias,  ///< (H*hd) Qwen2
    attn_k_bias,  ///< (Hkv*hd)
    attn_v_bias,  ///< (Hkv*hd)
    ffn_norm,   ///< (C)
    ffn_gate,   ///< (F, C) w1
    ffn_up,     ///< (F, C) w3
    ffn_down,   ///< (C, F) w2
    count_
};
constexpr int n_tensor_roles = static_cast<int>(tensor_role::count_);

/// True for roles that exist once per layer.
bool is_layer_role(tensor_role r);
/// Short role name ("attn_q") for messages and tables.
const char* tensor_role_name(tensor_role r);

/// The tensor's name in `fmt` ("model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight");
/// `layer` is ignored for global roles. llama2c files have no names: this returns a descriptive
/// one ("layers[3].wq") used in messages.
std::string tensor_name(source_format fmt, tensor_role role, int layer = -1);

}  // namespace slm::model
