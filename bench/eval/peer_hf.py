#!/usr/bin/env python3
"""The HF transformers side of bench/eval: runs each batch slmctl eval dumped (--dump-prompts)
through `generate` (greedy, left padding, the batch's max_new_tokens, stop at the model's EOS ids),
on the GGUF dequantized to fp32 by transformers. Prints JSON: seconds (generation wall time),
generated_tokens (up to the first EOS per row), first_match (rows whose first new token equals
slmctl's, a sanity check that both run the same prompts)."""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, f = os.path.split(a.gguf)
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    batches = [json.loads(l) for l in open(a.prompts)]
    pad = 0
    total_s, gen_tokens, first_match, rows = 0.0, 0, 0, 0
    with torch.inference_mode():
        # warm-up on the first batch (allocations, kernels): not timed
        b = batches[0]
        x = torch.tensor([b["prompts"][0]])
        m.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=2, do_sample=False)
        for b in batches:
            ps = b["prompts"]
            L = max(len(p) for p in ps)
            ids = torch.tensor([[pad] * (L - len(p)) + p for p in ps])
            mask = torch.tensor([[0] * (L - len(p)) + [1] * len(p) for p in ps])
            eos = b["eos_ids"]
            t0 = time.perf_counter()
            out = m.generate(input_ids=ids, attention_mask=mask, max_new_tokens=b["max_new_tokens"], do_sample=False,
                             eos_token_id=eos, pad_token_id=eos[0])
            total_s += time.perf_counter() - t0
            for j, row in enumerate(out[:, L:].tolist()):
                n = next((i for i, t in enumerate(row) if t in eos), len(row))
                first = row[0] if n > 0 else -1
                first_match += first == b["first_tokens"][j]
                gen_tokens += n
                rows += 1
    print(json.dumps({"seconds": total_s, "generated_tokens": gen_tokens, "rows": rows, "first_match": first_match}))


if __name__ == "__main__":
    main()
