#!/usr/bin/env python3
"""The peer side of the GPU benches (scripts/gpu-check.sh), HF transformers (+ PEFT) on the same
device, model directory and inputs as slmctl. Each mode prints one JSON line.

  peak      bf16 (and fp32) matmul TFLOP/s: the peak MFU is measured against
  finetune  LoRA training on slmctl's own micro-batches (`slmctl finetune --dump-batches FILE`): same
            ids, loss mask (response only), batch composition, rank, alpha, targets (all seven linear
            layers), AdamW lr, clip 1.0; bf16 base (PEFT keeps the adapters in fp32), standard HF recipe
            (right padding + attention mask, full logits, shifted cross-entropy)
  decode    greedy `generate` of N new tokens for a batch of B copies of a prompt (ids from slmctl's
            tokenizer), EOS ignored as `slmctl model generate --ignore-eos` does; decode time is the
            N-token run minus a 1-token run (the prefill)

Needs torch, transformers (and peft for finetune), as the GPU machine has them.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from peer_batches import load_steps, loss_tokens, pad_right  # noqa: E402


def sync(dev):
    import torch
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def peak(a):
    import torch
    out = {"mode": "peak", "device": a.device, "torch": torch.__version__}
    if a.device.startswith("cuda"):
        out["gpu"] = torch.cuda.get_device_name(0)
    for name, dt in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        n = a.size
        x = torch.randn(n, n, device=a.device, dtype=dt)
        y = torch.randn(n, n, device=a.device, dtype=dt)
        for _ in range(3):
            x @ y
        sync(a.device)
        best = float("inf")
        for _ in range(a.repeat):
            t = time.perf_counter()
            for _ in range(a.inner):
                x @ y
            sync(a.device)
            best = min(best, (time.perf_counter() - t) / a.inner)
        out[f"{name}_tflops"] = 2 * n ** 3 / best / 1e12
    out["size"] = a.size
    print(json.dumps(out))


def load_model(a, dtype):
    import transformers
    from transformers import AutoModelForCausalLM
    t = time.time()
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    kw = {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}  # renamed in 4.56
    m = AutoModelForCausalLM.from_pretrained(a.model, **kw)
    assert next(m.parameters()).dtype == dtype, f"loaded as {next(m.parameters()).dtype}, not {dtype}"
    return m.to(a.device), time.time() - t


def finetune(a):
    import torch
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model, load_s = load_model(a, dtype)
    cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)
    steps = load_steps(a.batches)
    losses, tokens, pad, train_s = [], 0, 0, 0.0
    timed_tokens, timed_s = 0, 0.0  # without the first step (CUDA/cuBLAS warm-up), as slmctl reports both
    for si, (_, micro) in enumerate(steps):
        n_loss = loss_tokens(micro)
        sync(a.device)
        t = time.perf_counter()
        opt.zero_grad()
        step_loss = torch.zeros((), device=a.device, dtype=torch.float64)
        step_tokens = 0
        for b in micro:
            ids, att, labels, real, padded = pad_right(b)
            step_tokens += real
            pad += padded
            ids, att, labels = ids.to(a.device), att.to(a.device), labels.to(a.device)
            out = model(input_ids=ids, attention_mask=att)
            logits = out.logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                                                     ignore_index=-100, reduction="sum") / n_loss
            loss.backward()
            step_loss += loss.detach().double()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(step_loss.item())  # one host read per step, as slmctl
        sync(a.device)
        dt = time.perf_counter() - t
        train_s += dt
        tokens += step_tokens
        if si > 0:
            timed_s += dt
            timed_tokens += step_tokens
    out = {"mode": "finetune", "engine": "transformers+peft", "device": a.device, "dtype": a.dtype,
           "steps": len(steps), "tokens": tokens, "pad_tokens": pad, "train_s": train_s,
           "tokens_per_s": tokens / train_s if train_s else 0,
           "tokens_per_s_after_first": timed_tokens / timed_s if timed_s else 0,
           "losses": losses, "load_s": load_s, "torch": torch.__version__}
    if a.device.startswith("cuda"):
        out["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2 ** 30
    print(json.dumps(out))


def decode(a):
    import torch
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    model, load_s = load_model(a, dtype)
    model.eval()
    prompt = [int(t) for t in a.prompt_ids.split(",")]
    ids = torch.tensor([prompt] * a.batch, device=a.device)
    att = torch.ones_like(ids)
    kw = dict(do_sample=False, attention_mask=att, pad_token_id=0, eos_token_id=None)

    def run(n):
        sync(a.device)
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)
        sync(a.device)
        return time.perf_counter() - t, out

    run(2)  # warm-up: kernels, allocator
    t1, _ = run(1)
    tn, out = run(a.tokens)
    decode_s = max(1e-9, tn - t1)
    gen = out[:, len(prompt):]
    print(json.dumps({"mode": "decode", "engine": "transformers.generate", "device": a.device, "dtype": a.dtype,
                      "batch": a.batch, "new_tokens": a.tokens, "prefill_s": t1, "decode_s": decode_s,
                      "tokens_per_s": a.batch * (a.tokens - 1) / decode_s, "ids0": gen[0].tolist(),
                      "load_s": load_s, "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["peak", "finetune", "decode"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", help="HF model directory")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--batches", help="finetune: slmctl --dump-batches file")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=1, help="decode: sequences")
    ap.add_argument("--tokens", type=int, default=64, help="decode: new tokens per sequence")
    ap.add_argument("--prompt-ids", help="decode: comma-separated prompt ids")
    ap.add_argument("--size", type=int, default=8192, help="peak: square matmul size")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--inner", type=int, default=10)
    a = ap.parse_args()
    {"peak": peak, "finetune": finetune, "decode": decode}[a.mode](a)


if __name__ == "__main__":
    sys.exit(main())
