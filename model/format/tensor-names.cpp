// The tensor-name tables: HF transformers, GGUF (llama.cpp) and llama2.c (descriptive only, its
// files are positional). One row per role; `{i}` stands for the layer index.
#include "model/tensor-names.h"

#include <array>

#include "common/common.h"

namespace slm::model {

namespace {

struct name_row {
    tensor_role role;
    const char* role_name;
    bool per_layer;
    const char* hf;
    const char* gguf;
    const char* llama2c;
};

// clang-format off
constexpr std::array<name_row, n_tensor_roles> k_names = {{
    {tensor_role::tok_embd,    "tok_embd",    false, "model.embed_tokens.weight",                  "token_embd.weight",       "token_embedding_table"},
    {tensor_role::out_norm,    "out_norm",    false, "model.norm.weight",                          "output_norm.weight",      "rms_final_weight"},
    {tensor_role::output,      "output",      false, "lm_head.weight",                             "output.weight",           "wcls"},
    {tensor_role::attn_norm,   "attn_norm",   true,  "model.layers.{i}.input_layernorm.weight",    "blk.{i}.attn_norm.weight", "rms_att_weight[{i}]"},
    {tensor_role::attn_q,      "attn_q",      true,  "model.layers.{i}.self_attn.q_proj.weight",   "blk.{i}.attn_q.weight",   "wq[{i}]"},
    {tensor_role::attn_k,      "attn_k",      true,  "model.layers.{i}.self_attn.k_proj.weight",   "blk.{i}.attn_k.weight",   "wk[{i}]"},
    {tensor_role::attn_v,      "attn_v",      true,  "model.layers.{i}.self_attn.v_proj.weight",   "blk.{i}.attn_v.weight",   "wv[{i}]"},
    {tensor_role::attn_o,      "attn_o",      true,  "model.layers.{i}.self_attn.o_proj.weight",   "blk.{i}.attn_output.weight", "wo[{i}]"},
    {tensor_role::attn_q_bias, "attn_q_bias", true,  "model.layers.{i}.self_attn.q_proj.bias",     "blk.{i}.attn_q.bias",     "bq[{i}]"},
    {tensor_role::attn_k_bias, "attn_k_bias", true,  "model.layers.{i}.self_attn.k_proj.bias",     "blk.{i}.attn_k.bias",     "bk[{i}]"},
    {tensor_role::attn_v_bias, "attn_v_bias", true,  "model.layers.{i}.self_attn.v_proj.bias",     "blk.{i}.attn_v.bias",     "bv[{i}]"},
    {tensor_role::ffn_norm,    "ffn_norm",    true,  "model.layers.{i}.post_attention_layernorm.weight", "blk.{i}.ffn_norm.weight", "rms_ffn_weight[{i}]"},
    {tensor_role::ffn_gate,    "ffn_gate",    true,  "model.layers.{i}.mlp.gate_proj.weight",      "blk.{i}.ffn_gate.weight", "w1[{i}]"},
    {tensor_role::ffn_up,      "ffn_up",      true,  "model.layers.{i}.mlp.up_proj.weight",        "blk.{i}.ffn_up.weight",   "w3[{i}]"},
    {tensor_role::ffn_down,    "ffn_down",    true,  "model.layers.{i}.mlp.down_proj.weight",      "blk.{i}.ffn_down.weight", "w2[{i}]"},
}};
// clang-format on

const name_row& row(tensor_role r) {
    const auto& e = k_names[static_cast<size_t>(r)];
    SLM_ASSERT(e.role == r, "tensor-name table out of order at {}", static_cast<int>(r));
    return e;
}

}  // namespace

const char* source_format_name(source_format f) {
    switch (f) {
        case source_format::hf: return "hf-safetensors";
        case source_format::gguf: return "gguf";
        case source_format::llama2c: return "llama2c";
    }
    return "?";
}

bool is_layer_role(tensor_role r) { return row(r).per_layer; }
const char* tensor_role_name(tensor_role r) { return row(r).role_name; }

std::string tensor_name(source_format fmt, tensor_role role, int layer) {
    const auto& e = row(role);
    std::string pat = fmt == source_format::hf ? e.hf : fmt == source_format::gguf ? e.gguf : e.llama2c;
    if (e.per_layer) {
        SLM_ASSERT(layer >= 0, "layer index needed for {}", e.role_name);
        const auto at = pat.find("{i}");
        SLM_ASSERT(at != std::string::npos);
        pat.replace(at, 3, std::to_string(layer));
    }
    return pat;
}

}  // namespace slm::model
