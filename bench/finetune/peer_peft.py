#!/usr/bin/env python3
"""The peer side of bench/finetune: HF transformers + PEFT LoRA training on the exact micro-batches
slmctl trained on (`slmctl finetune --dump-batches FILE`): same token ids, same loss mask (response
tokens only), same batch composition, rank, alpha, targets, learning rate, AdamW. Right-padded to the
longest row with an attention mask, labels -100 on prompt and padding, the standard HF recipe (full
logits). Prints one JSON line: tokens/s over non-pad tokens, the losses, peak RSS.

Dev-time only (PyPI torch, transformers, peft, gguf): /work/venv-ref/bin/python bench/finetune/peer_peft.py ...
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

from peer_batches import load_steps, loss_tokens, pad_right


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True, help="base model GGUF (transformers dequantizes it)")
    ap.add_argument("--batches", required=True)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--dropout", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=0, help="0: every step in --batches")
    ap.add_argument("--rows-per-forward", type=int, default=0,
                    help="run each micro-batch N rows at a time (gradients accumulated: the same step); "
                         "0: the whole micro-batch in one forward. Long prompts need it: 4 rows of 2450 "
                         "tokens with full fp32 logits ran a 24 GB machine out of memory")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM
    from peft import LoraConfig, get_peft_model

    dtype = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    t = time.time()
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(a.gguf)),
                                                 gguf_file=os.path.basename(a.gguf), torch_dtype=dtype)
    load_s = time.time() - t
    cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=a.lr, weight_decay=0.0)

    steps = load_steps(a.batches)
    if a.steps:
        steps = steps[: a.steps]
    losses, tokens, pad = [], 0, 0
    train_s = 0.0
    for _, micro in steps:
        n_loss = loss_tokens(micro)
        t = time.time()
        opt.zero_grad()
        step_loss = 0.0
        if a.rows_per_forward > 0:
            micro = [b[i:i + a.rows_per_forward] for b in micro for i in range(0, len(b), a.rows_per_forward)]
        for b in micro:
            ids, att, labels, real, padded = pad_right(b)
            tokens += real
            pad += padded
            out = model(input_ids=ids, attention_mask=att)
            # HF's shifted cross-entropy, summed and divided by the step's loss tokens (as slmctl does)
            logits = out.logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                     ignore_index=-100, reduction="sum") / n_loss
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        train_s += time.time() - t
        losses.append(step_loss)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"engine": "transformers+peft", "dtype": a.dtype, "steps": len(steps), "tokens": tokens,
                      "pad_tokens": pad, "train_s": train_s, "tokens_per_s": tokens / train_s, "losses": losses,
                      "load_s": load_s, "peak_rss_mb": rss_mb, "threads": a.threads,
                      "rows_per_forward": a.rows_per_forward,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    sys.exit(main())
