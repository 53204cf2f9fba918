// `slmctl finetune --cluster N`: LoRA fine-tune the base model on a cluster's calls (S5). Parses,
// shows progress, prints the summary; the recipe is finetune/.
#include <csignal>
#include <cstdio>

#include "cli/cli.h"
#include "common/common.h"
#include "finetune/finetune.h"
#include "select/select.h"
#include "store/stages.h"

namespace slm::cli {

namespace {

struct finetune_args {
    finetune::finetune_options o;
    int cluster = -1;        ///< --cluster: idx in the clustering run
    int64_t run = 0;         ///< --run: the clustering run (default: the latest ok one)
    std::string targets = "all";
    double time_budget_min = 0;
};
finetune_args& args() {
    static finetune_args a;
    return a;
}

std::string fmt_eta(double s) {
    if (s < 60) return fmt::format("{:.0f}s", s);
    if (s < 3600) return fmt::format("{}m{:02}s", int(s) / 60, int(s) % 60);
    return fmt::format("{}h{:02}m", int(s) / 3600, (int(s) % 3600) / 60);
}

void finetune_main() {
    apply_globals();
    auto& a = args();
    auto& o = a.o;
    const auto& g = globals();
    o.device = g.device;
    o.train.lora.targets = model::lora_config::parse_targets(a.targets);
    o.train.time_budget_s = a.time_budget_min * 60;
    auto d = store::db::open(g.db_path, store::open_mode::read_write);
    o.cluster_id = finetune::resolve_cluster(d, a.run, a.cluster);
    if (o.base.empty() && !(o.base = select::top_local_pick(d, o.cluster_id)).empty())
        log_info("base: {} (the top loadable local pick of `slmctl select` for cluster {})", o.base, a.cluster);
    const bool tty = stderr_is_tty() && get_verbosity() >= verbosity::normal && !g.json;
    o.train.on_progress = [tty](const finetune::train_progress& p) {
        if (p.step == 0) {
            if (p.val_loss) log_info("step 0: val loss {:.4f}", *p.val_loss);
            return;
        }
        if (p.val_loss) {
            if (tty) fmt::print(stderr, "\r\033[K");
            log_info("step {}/{}: loss {:.4f}, val loss {:.4f}, {:.0f} tok/s", p.step, p.total_steps, p.loss,
                     *p.val_loss, p.tokens_per_s);
        } else if (tty) {
            fmt::print(stderr, "\r\033[Kstep {}/{}  loss {:.4f}  lr {:.2e}  {:.0f} tok/s  ETA {}", p.step,
                       p.total_steps, p.loss, p.lr, p.tokens_per_s, fmt_eta(p.eta_s));
            std::fflush(stderr);
        }
    };
    auto rep = finetune::finetune_cluster(d, o);
    if (tty) fmt::print(stderr, "\r\033[K");
    const auto& r = rep.result;
    if (g.json) {
        print_json(rep.to_json());
    } else if (r.stop_reason != "interrupted") {
        fmt::print("finetune run {}: cluster {} -> adapter {} ({})\n", rep.run_id, a.cluster, rep.adapter_id, rep.out);
        if (!rep.gguf.empty()) fmt::print("  gguf adapter   {}\n", rep.gguf);
        if (!rep.merged.empty()) fmt::print("  merged model   {}\n", rep.merged);
        fmt::print("  base           {} (sha256 {})\n", rep.base, rep.base_sha256.substr(0, 16));
        fmt::print("  data           {} train, {} val, {} test calls; {} cut ({} turns), {} too long\n", rep.n_train,
                   rep.n_val, rep.n_test, rep.cut_examples, rep.cut_turns, rep.skipped_too_long);
        fmt::print("  steps          {}/{} ({}){}\n", r.steps, r.total_steps, r.stop_reason,
                   r.resumed_from ? fmt::format(", resumed from step {}", r.resumed_from) : "");
        if (r.val_first && r.val_best)
            fmt::print("  val loss       {:.4f} -> {:.4f} (best at step {}, {:.0f}% lower)\n", *r.val_first, *r.val_best,
                       r.best_step, 100 * (1 - *r.val_best / *r.val_first));
        fmt::print("  speed          {:.0f} tokens/s ({} tokens, {:.1f}% padding, {:.0f} s training)\n", r.tokens_per_s(),
                   r.tokens, 100 * r.padding_share(), r.train_s);
        fmt::print("  processed      {} of the {} tokens a per-call engine would run ({:.2f}x: shared prefixes)\n",
                   r.tokens, r.per_call_tokens, r.processed_share());
    }
    if (r.stop_reason == "interrupted") {
        const int sig = store::stop_signal() ? store::stop_signal() : SIGINT;
        std::fflush(stdout);
        fmt::print(stderr, "error: finetune interrupted at step {} of {} (run {} marked 'interrupted')\n", r.steps,
                   r.total_steps, rep.run_id);
        fmt::print(stderr, "hint: continue with the same command plus --resume (checkpoint: {}.checkpoint)\n", rep.out);
        std::fflush(stderr);
        std::exit(128 + sig);
    }
}

}  // namespace

void set_finetune_command(CLI::App& sub) {
    auto& a = args();
    auto& o = a.o;
    auto& t = o.train;
    sub.add_option("--cluster", a.cluster, "Cluster to train on (the id column of `slmctl cluster`)")->required();
    sub.add_option("--run", a.run, "Clustering run the cluster belongs to (default: the latest ok one)");
    sub.add_option("--base", o.base, "Base model: GGUF file or HF directory (default: select's top local pick for the cluster, else SmolLM2-135M-Instruct)");
    sub.add_option("--out", o.out, "Adapter directory (default: adapters/cluster-<id> beside the database)");
    sub.add_option("--format", o.format, "peft (adapter_config.json + safetensors), gguf (llama.cpp), or both")
        ->capture_default_str();
    sub.add_option("--merge", o.merge_dir, "Also write the merged model (HF safetensors) to this directory");
    sub.add_option("--targets", a.targets, "LoRA targets: q,k,v,o,gate,up,down or all")->capture_default_str();
    sub.add_option("--rank", t.lora.rank, "LoRA rank r")->capture_default_str();
    sub.add_option("--alpha", t.lora.alpha, "LoRA alpha (scale alpha/r)")->capture_default_str();
    sub.add_option("--dropout", t.lora.dropout, "Dropout on the adapter path")->capture_default_str();
    sub.add_flag("--rslora", t.lora.rslora, "Rank-stabilised scale alpha/sqrt(r)");
    sub.add_option("--lr", t.lr, "Peak learning rate (AdamW)")->capture_default_str();
    sub.add_option("--weight-decay", t.weight_decay, "AdamW decoupled weight decay")->capture_default_str();
    sub.add_option("--warmup", t.warmup_steps, "Warmup steps (-1: 5% of the steps)")->capture_default_str();
    sub.add_option("--batch-size", t.batch_size, "Examples per micro-batch")->capture_default_str();
    sub.add_option("--grad-accum", t.grad_accum, "Micro-batches per optimizer step")->capture_default_str();
    sub.add_option("--clip", t.clip, "Gradient norm clip (0: off)")->capture_default_str();
    sub.add_option("--max-steps", t.max_steps, "Optimizer steps (0: from --epochs)")->capture_default_str();
    sub.add_option("--epochs", t.epochs, "Passes over the training split")->capture_default_str();
    sub.add_option("--eval-every", t.eval_every, "Validation loss every N steps")->capture_default_str();
    sub.add_option("--val-max", t.val_max, "At most this many validation calls per validation")->capture_default_str();
    sub.add_option("--patience", t.patience, "Early stop after N validations without improvement (0: off)")
        ->capture_default_str();
    sub.add_option("--checkpoint-every", t.checkpoint_every, "Checkpoint every N steps (0: only at the end or on stop)")
        ->capture_default_str();
    sub.add_flag("--resume", t.resume, "Continue an interrupted run from its checkpoint (<out>.checkpoint)");
    sub.add_option("--time-budget", a.time_budget_min, "Stop cleanly after this many minutes, save and report");
    sub.add_option("--seed", t.seed, "Seed for adapter init, data order and dropout")->capture_default_str();
    sub.add_option("--split-seed", o.split_seed, "Seed of the train/val/test split (one split per clustering run and seed)")
        ->capture_default_str();
    sub.add_option("--max-tokens", o.max_tokens, "Tokens per example; longer calls lose their oldest history turns")
        ->capture_default_str();
    sub.add_option("--max-train", o.max_train, "At most this many training calls (0: all)")->capture_default_str();
    sub.add_option("--min-calls", o.min_calls, "Refuse clusters with fewer calls")->capture_default_str();
    sub.add_flag("!--no-share-prefixes", t.prefix.enabled,
                 "Run every example whole (default: a prompt prefix the examples of a micro-batch share runs once)");
    sub.add_option("--min-shared-tokens", t.prefix.min_tokens, "Shortest prompt prefix worth running once for a group")
        ->capture_default_str();
    sub.add_option("--dump-batches", t.dump_batches,
                   "Write each step's micro-batches (token ids, prompt length) as JSON lines (bench/finetune)");
    sub.add_option("--dtype", o.dtype, "Frozen base weights: auto, fp32, bf16")->capture_default_str();
    sub.callback(finetune_main);
}

}  // namespace slm::cli
