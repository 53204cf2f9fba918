#!/usr/bin/env python3
"""Dev-time parity of slmctl's LoRA adapters with HF PEFT and llama.cpp (independent implementations).

1. PEFT loads OUR adapter (tests/data/ref/adapter/ours-peft, written by
   `SLMCTL_WRITE_FIXTURES=1 build/test-model -tc='adapter fixtures*'`) on the tiny HF Llama and must
   give our logits (ours-logits.json): max abs diff <= 1e-4 (fp32).
2. PEFT makes and saves ITS OWN adapter (random B) on the same base: peft-made/ + peft-made-logits.json,
   committed; the C++ test checks that slmctl loads it to PEFT's logits (runs in CI, no Python).
3. llama.cpp (libllama from llama-cpp-python) loads tiny-llama.gguf + OUR ours.gguf adapter and its
   greedy tokens must equal ours (ours-logits.json greedy_tokens). Skipped, saying so, without llama_cpp.

Run: /work/venv-ref/bin/python tests/ref/peft_parity.py   (venv: pip install torch transformers peft
safetensors llama-cpp-python). Prints the measured differences; exit 1 when a check fails.
"""
import ctypes
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "tests", "data", "ref")
ADAPTER = os.path.join(REF, "adapter")


def main():
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    ours = json.load(open(os.path.join(ADAPTER, "ours-logits.json")))
    ids = torch.tensor([ours["input_ids"]])
    ok = True

    base = AutoModelForCausalLM.from_pretrained(os.path.join(REF, "tiny-llama"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, os.path.join(ADAPTER, "ours-peft"))
    model.eval()
    with torch.no_grad():
        got = model(ids).logits[0]
    diff = (got - torch.tensor(ours["logits"])).abs().max().item()
    with model.disable_adapter(), torch.no_grad():
        effect = (model(ids).logits[0] - got).abs().max().item()
    print(f"   (the adapter moves the logits by up to {effect:.3g}: the comparison is not vacuous)")
    ok &= effect > 1e-2
    print(f"1. PEFT with our adapter vs our logits: max abs diff {diff:.3g} (limit 1e-4)")
    ok &= diff <= 1e-4

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(os.path.join(REF, "tiny-llama"), dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    pm = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    pm.eval()
    with torch.no_grad():
        theirs = pm(ids).logits[0]
    out = os.path.join(ADAPTER, "peft-made")
    pm.save_pretrained(out)
    json.dump({"r": 4, "input_ids": ours["input_ids"], "logits": theirs.tolist()},
              open(os.path.join(ADAPTER, "peft-made-logits.json"), "w"))
    print(f"2. wrote PEFT's own adapter to {os.path.relpath(out, ROOT)} (checked by the C++ test)")

    try:
        import llama_cpp
    except ImportError:
        print("3. llama.cpp: SKIPPED (llama_cpp is not installed in this venv)")
        return 0 if ok else 1
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    model_c = llama_cpp.llama_model_load_from_file(os.path.join(REF, "tiny-llama.gguf").encode(), mp)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = 64
    cp.n_batch = 64
    ctx = llama_cpp.llama_init_from_model(model_c, cp)
    lora = llama_cpp.llama_adapter_lora_init(model_c, os.path.join(ADAPTER, "ours.gguf").encode())
    if not lora:
        print("3. llama.cpp could not load our GGUF adapter")
        return 1
    if hasattr(llama_cpp, "llama_set_adapter_lora"):
        llama_cpp.llama_set_adapter_lora(ctx, lora, 1.0)
    else:
        adapters = (llama_cpp.llama_adapter_lora_p * 1)(lora)
        scales = (ctypes.c_float * 1)(1.0)
        llama_cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
    prompt = ours["greedy_prompt"]
    want = ours["greedy_tokens"]
    n_vocab = llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(model_c))
    toks = list(prompt)
    gen = []
    batch = llama_cpp.llama_batch_get_one((llama_cpp.llama_token * len(toks))(*toks), len(toks))
    for _ in range(len(want)):
        if llama_cpp.llama_decode(ctx, batch) != 0:
            print("3. llama_decode failed")
            return 1
        logits = llama_cpp.llama_get_logits_ith(ctx, -1)
        nxt = max(range(n_vocab), key=lambda i: logits[i])
        gen.append(nxt)
        one = (llama_cpp.llama_token * 1)(nxt)
        batch = llama_cpp.llama_batch_get_one(one, 1)
    same = gen == want
    print(f"3. llama.cpp greedy with our GGUF adapter: {'equal' if same else 'DIFFERENT'} ({len(want)} tokens)")
    if not same:
        print("   llama.cpp:", gen)
        print("   slmctl:   ", want)
    ok &= same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
