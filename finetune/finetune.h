// S5 finetune: the training recipe. LoRA adapters (model/adapter.h) trained on a cluster's logged
// calls so the small model answers them the way the logged LLM did (distillation from the LLM's
// outputs). Two layers:
//   - train_lora(): token-level training on encoded examples (no database): AdamW, warmup + cosine,
//     gradient accumulation and clipping, validation, early stopping, checkpoints and resume.
//   - finetune_cluster(): the recipe over the store: load -> split -> encode -> set up -> train ->
//     save (PEFT dir and/or llama.cpp GGUF, optional merged model) -> record in `adapters`.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/lora-config.h"
#include "model/prefix.h"
#include "store/stages.h"

namespace slm::model {
class llama_model;
}

namespace slm::finetune {

// ---- split -----------------------------------------------------------------------------------

/// Shares of train / val / test (normalised to sum 1).
struct split_fractions {
    double train = 0.8, val = 0.1, test = 0.1;
};

/// One call to split: its stratum (first tool name, or "text") and its near-duplicate group (the
/// last user message after scrubbing): a group never straddles two splits.
struct split_item {
    int64_t call_id = 0;
    std::string stratum;
    std::string group;
};

/// Deterministic stratified split: the same items and seed give the same assignment whatever
/// their order. Per stratum, groups are ordered by a seeded hash and filled train, val, test by
/// cumulative call count; every stratum with >= 3 groups puts one in val and test.
std::vector<store::split_row> make_split(const std::vector<split_item>& items, uint64_t seed,
                                         const split_fractions& f = {});

/// The split of a whole clustering run for `seed` (so every cluster's finetune and eval see the
/// same held-out calls), stratified by cluster idx and first tool name: read from `splits`, or
/// made with make_split() and stored the first time.
std::vector<store::split_row> ensure_split(store::db& d, int64_t cluster_run, int64_t seed);

/// First tool name of the logged response, or "text".
std::string call_stratum(const store::call_row& c);
/// The near-duplicate key: the content of the last user message (the whole request when none).
std::string call_group(const store::call_row& c);

// ---- token-level training ----------------------------------------------------------------------

/// One encoded training example: loss on ids[prompt_len, end) (each predicted from the token
/// before it), never on the prompt.
struct example {
    std::vector<int32_t> ids;
    int64_t prompt_len = 0;
};

/// What train_lora reports while it runs.
struct train_progress {
    int step = 0, total_steps = 0;
    double loss = 0;                  ///< this step's train loss
    std::optional<double> val_loss;   ///< set on validation steps
    double tokens_per_s = 0;          ///< processed (non-pad) tokens per second, this run so far
    double eta_s = 0;
    double lr = 0;
};

struct train_options {
    model::lora_config lora;
    double lr = 2e-4;
    double weight_decay = 0.0;       ///< AdamW's decoupled weight decay
    double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
    int warmup_steps = -1;           ///< -1: 5% of the steps (at least 1)
    double min_lr_ratio = 0.0;       ///< cosine floor as a share of lr
    int batch_size = 4;              ///< examples per micro-batch
    int grad_accum = 1;              ///< micro-batches per optimizer step
    double clip = 1.0;               ///< max gradient norm (0: off)
    int max_steps = 0;               ///< optimizer steps; 0: from epochs
    double epochs = 1.0;
    int eval_every = 10;             ///< validation every N steps (and at step 0 and the end); 0: only then
    int val_max = 64;                ///< at most this many val examples per validation
    int patience = 0;                ///< early stop after N validations without improvement (0: off)
    int checkpoint_every = 0;        ///< steps between checkpoints (0: none until the end)
    std::string checkpoint_dir;      ///< where checkpoints go ("" = none)
    bool resume = false;             ///< continue from checkpoint_dir
    double time_budget_s = 0;        ///< stop cleanly after this long (0: no limit)
    uint64_t seed = 0;               ///< adapter init, data order, dropout
    int64_t ce_chunk = 512;          ///< loss positions per vocabulary-projection chunk
    int64_t bucket = 64;             ///< length-bucketing window, in micro-batches
    /// Polled before each step: true stops cleanly (checkpoint written, stop_reason "interrupted").
    std::function<bool()> should_stop;
    std::function<void(const train_progress&)> on_progress;
    nlohmann::json fingerprint;      ///< stored in checkpoints; a resume with a different one is refused
    /// Examples of a micro-batch that share a prompt prefix of at least prefix.min_tokens tokens run
    /// it once (its keys/values expanded over the group); the loss and its gradients are those of
    /// running each example alone (up to rounding); prefix.enabled = false runs every example whole.
    model::prefix_options prefix;
    /// Writes each step's micro-batches as JSON lines {"step", "batch": [{"ids", "prompt_len"}]}:
    /// what bench/finetune feeds the peer so both train on the same batches ("" = no).
    std::string dump_batches;
};

struct loss_point {
    int step = 0;
    double train_loss = 0;
    std::optional<double> val_loss;
    double lr = 0;
    nlohmann::json to_json() const;
};

struct train_result {
    std::vector<loss_point> curve;    ///< one point per optimizer step (step 0: validation only)
    int steps = 0, total_steps = 0;
    std::string stop_reason;          ///< done, early_stop, time_budget, interrupted
    std::optional<double> val_first, val_best;
    int best_step = 0;
    int64_t tokens = 0;               ///< non-pad tokens processed in training (this process); a
                                      ///< shared prefix counts once per optimizer step
    int64_t attention_pairs = 0;      ///< (query, visible key) pairs of the non-pad tokens processed:
                                      ///< attention's matmul work is 4 * heads * head_dim FLOPs a
                                      ///< pair per layer forward, twice that backward
    int64_t per_call_tokens = 0;      ///< what running each example whole would process
    int64_t pad_tokens = 0;           ///< padding positions processed
    int64_t loss_tokens = 0;          ///< positions that carried loss
    double train_s = 0;               ///< seconds in training steps (this process)
    int resumed_from = 0;             ///< step the run continued from (0: fresh)
    double tokens_per_s() const { return train_s > 0 ? tokens / train_s : 0; }
    double processed_share() const { return per_call_tokens > 0 ? double(tokens) / per_call_tokens : 0; }
    double padding_share() const { return tokens + pad_tokens > 0 ? double(pad_tokens) / (tokens + pad_tokens) : 0; }
    nlohmann::json to_json() const;
};

/// Adds LoRA adapters to `m` (or restores them from a checkpoint) and trains them on `train`.
/// With validation examples the adapters left in `m` are the best validation point's. Throws
/// user_error for empty data, a NaN/Inf loss or gradient (naming the step and the last good
/// checkpoint), or a checkpoint that does not match.
train_result train_lora(model::llama_model& m, const std::vector<example>& train, const std::vector<example>& val,
                        const train_options& o);

/// Mean loss over `xs` (no gradient): what validation computes.
double mean_loss(const model::llama_model& m, const std::vector<example>& xs, int batch_size, int64_t ce_chunk = 512,
                 const model::prefix_options& prefix = {});

/// Token counts of one micro-batch.
struct batch_tokens {
    int64_t processed = 0;  ///< non-pad positions run (a shared prefix once)
    int64_t pad = 0;        ///< padding positions run
    int64_t per_call = 0;   ///< positions of the examples run whole, one by one
    int64_t loss = 0;       ///< positions that carry loss
    int64_t attention_pairs = 0;  ///< (query, visible key) pairs of the processed positions
};

// batch_loss_sum (train_lora's inner step, a tensor) is declared in finetune/train-step.h: this
// header stays free of libtorch.

// ---- the recipe over the store -----------------------------------------------------------------

struct finetune_options {
    int64_t cluster_id = 0;          ///< clusters.id
    std::string base;                ///< base model path ("": SmolLM2-135M-Instruct from the model cache)
    std::string out;                 ///< adapter output dir ("": <db dir>/adapters/cluster-<id>)
    std::string format = "peft";     ///< peft, gguf, both
    std::string merge_dir;           ///< also write the merged model here ("" = no)
    std::string dtype = "auto";      ///< frozen base weights: auto, fp32, bf16
    std::string device = "cpu";
    int64_t max_tokens = 1024;       ///< per example (prompt + response); longer ones are cut or skipped
    int64_t split_seed = 0;
    int min_calls = 20;              ///< a smaller cluster is refused
    int max_train = 0;               ///< at most this many training examples (0: all)
    train_options train;
};

struct finetune_report {
    int64_t run_id = 0, adapter_id = 0;
    std::string out;                 ///< adapter directory
    std::string gguf;                ///< GGUF adapter file ("" when not written)
    std::string merged;              ///< merged model dir ("" when not written)
    std::string base, base_sha256;
    int64_t n_train = 0, n_val = 0, n_test = 0;
    int64_t skipped_too_long = 0, cut_examples = 0, cut_turns = 0;
    train_result result;
    nlohmann::json to_json() const;
};

/// clusters.id of cluster `idx` of clustering run `run` (0: the latest 'ok' one); user_error saying
/// which clusters exist otherwise.
int64_t resolve_cluster(store::db& d, int64_t run, int idx);

/// Fine-tunes a LoRA adapter on cluster `o.cluster_id`'s train split, recorded as a `finetune` run.
finetune_report finetune_cluster(store::db& d, const finetune_options& o);

/// sha256 of a file, hex (the base model's identity in `adapters`).
std::string file_sha256(const std::string& path);

}  // namespace slm::finetune
