// train_lora's inner step as a tensor, for tests and benches: the one finetune declaration that
// needs libtorch, kept out of finetune.h so that the CLI and the pipeline compile without it.
#pragma once

#include "finetune/finetune.h"
#include "model/llama.h"

namespace slm::finetune {

/// The sum of the token losses of `xs` run as one micro-batch, differentiable with respect to the
/// adapters: train_lora's inner step (shared prefixes per `prefix`).
torch::Tensor batch_loss_sum(const model::llama_model& m, const std::vector<example>& xs,
                             const model::prefix_options& prefix, int64_t ce_chunk = 512,
                             batch_tokens* counts = nullptr);

}  // namespace slm::finetune
