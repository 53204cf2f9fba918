// Fused CPU kernels for the decoder's element-wise work, forward and backward, as autograd
// functions. Each replaces a chain of 4-10 libtorch ops (each a full pass over a (tokens, 576..3072)
// tensor, plus its backward chain) by one pass each way, and rounds where the op chain rounds, so
// that fp32 results agree with the chain to float rounding and bf16 results to one bf16 step at
// most (SwiGLU and q/k/v measured bit-equal; RMSNorm sums in another order, so 1/rms can differ by
// a float ulp and flip a rare bf16 rounding: on SmolLM2 bf16 the logits stay as close to fp32 as
// the chain's). llama_model::forward uses them on CPU fp32/bf16 tensors unless `fused_kernels` is
// off; the op chains stay the reference (tests/model/test-fused.cpp compares both ways).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>

namespace slm::model::fused {

/// CPU, float32 or bfloat16, and every tensor given alike (undefined ones skipped).
bool supported(const at::Tensor& x);

/// w * bf16(x * rsqrt(mean(x^2) + eps)) per row, as model::rms_norm computes it. x (..., C), w (C)
/// in x's dtype and frozen (no gradient reaches w).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps);

/// silu(gate) * up with gate = gu[..., :F] + dgate and up = gu[..., F:] + dup: gu (..., 2F) the
/// fused gate/up product in the model dtype, dgate/dup (..., F) the LoRA deltas in float32 or
/// undefined (rounded to gu's dtype before the add, as the op chain does). -> (..., F) in gu's dtype.
at::Tensor swiglu(const at::Tensor& gu, const at::Tensor& dgate, const at::Tensor& dup);

/// q, k, v from the fused projection qkv (B, T, (H + 2K) D) plus optional float32 LoRA deltas
/// dq (B, T, H D), dk, dv (B, T, K D); rotate-half RoPE on q and k with cos/sin (B, 1, T, D) in
/// qkv's dtype. -> float32 q (B, H, T, D), k and v (B, K, T, D) (views of (B, T, heads, D) memory).
std::array<at::Tensor, 3> qkv_rope(const at::Tensor& qkv, const at::Tensor& dq, const at::Tensor& dk,
                                   const at::Tensor& dv, const at::Tensor& cos, const at::Tensor& sin, int64_t H,
                                   int64_t K, int64_t D);

}  // namespace slm::model::fused
