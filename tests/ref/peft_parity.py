#!/usr/bin/env python3
"""Dev-time parity of slmctl's LoRA adapters with HF PEFT and llama.cpp (independent implementations).

1. PEFT loads OUR adapter (tests/data/ref/adapter/ours-peft, written by
   `SLMCTL_WRITE_FIXTURES=1 build/test-model -tc='adapter fixtures*'`) on the tiny HF Llama and must
   give our logits (ours-logits.json): max abs diff <= 1e-4 (fp32).
2. PEFT makes and saves ITS OWN adapter (random B) on the same base: peft-made/ + peft-made-logits.json,
   committed; the C++ test checks that slmctl loads it to PEFT's logits (runs in CI, no Python).
3. llama.cpp (libllama from llama-cpp-python) loads tiny-llama.gguf + OUR ours.gguf adapter and its
   greedy tokens must equal ours (ours-logits.json greedy_tokens). tiny-llama.gguf has no vocabulary,
   which llama.cpp requires: the script runs on a temporary copy with a 256-token byte-level one added
   (ids are fed directly, so the vocabulary never tokenizes anything). Skipped without llama_cpp.
4. transformers loads OUR merged checkpoints (save_merged_hf of the HF base + ours-peft and of the GGUF
   base + ours.gguf) and must give our adapted logits (max abs diff <= 1e-4).
5. transformers' AutoTokenizer loads OUR tokenizer.json rebuilt from GGUF vocabularies (gpt-2,
   llama-spm, SmolLM2) and must encode llama.cpp's tokenizer test strings as slmctl does.
   Also SmolLM2 (its GGUF, when fetched) with an adapter, merged: same prompt ids, logits, argmax.
4 and 5 read $SLMCTL_PARITY_OUT (default build/adapter-parity) and are skipped, saying so, without it.

Run (from the repository root):
   SLMCTL_PARITY_OUT=$PWD/build/adapter-parity build/test-model -tc='adapter fixtures*'
   /work/venv-ref/bin/python tests/ref/peft_parity.py
Venv: python3 -m venv /work/venv-ref; pip install torch transformers peft safetensors gguf
llama-cpp-python (builds libllama from source, ~15 min on 2 cores). Prints the measured differences;
exit 1 when a check fails.
"""
import ctypes
import json
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REF = os.path.join(ROOT, "tests", "data", "ref")
ADAPTER = os.path.join(REF, "adapter")
SCRATCH = os.environ.get("SLMCTL_PARITY_OUT") or os.path.join(ROOT, "build", "adapter-parity")
VOCAB = os.path.join(ROOT, "..", "shared", "data", "tokenizers", "llama.cpp-vocab")


def bytes_to_unicode():
    """GPT-2's printable stand-ins for the 256 byte values (byte-level BPE token texts)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def gguf_with_vocab(src, dst):
    """A copy of a GGUF without vocabulary, plus a 256-token byte-level one (llama.cpp needs one)."""
    import gguf
    import numpy as np
    r = gguf.GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(dst, arch)
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k in ("general.architecture", "general.alignment"):
            continue
        vt = gguf.GGUFValueType(f.types[0])
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_array(k, f.contents())
        else:
            w.add_key_value(k, f.contents(), vt)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(bytes_to_unicode())
    w.add_token_types([1] * 256)
    w.add_token_merges(["\u0120 \u0120"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for t in r.tensors:
        assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        w.add_tensor(t.name, np.array(t.data, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


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
    cfg_path = os.path.join(out, "adapter_config.json")  # PEFT writes a set: sort it, keep the fixture stable
    saved = json.load(open(cfg_path))
    saved["target_modules"] = sorted(saved["target_modules"])
    with open(cfg_path, "w") as f:
        f.write(json.dumps(saved, indent=2, sort_keys=True))
    json.dump({"r": 4, "input_ids": ours["input_ids"], "logits": theirs.tolist()},
              open(os.path.join(ADAPTER, "peft-made-logits.json"), "w"))
    print(f"2. wrote PEFT's own adapter to {os.path.relpath(out, ROOT)} (checked by the C++ test)")

    try:
        import llama_cpp
    except ImportError:
        print("3. llama.cpp: SKIPPED (llama_cpp is not installed in this venv)")
        return 0 if ok else 1
    import tempfile
    tmp = tempfile.mkdtemp(prefix="slmctl-parity-")
    base_gguf = os.path.join(tmp, "tiny-llama-vocab.gguf")
    gguf_with_vocab(os.path.join(REF, "tiny-llama.gguf"), base_gguf)
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    model_c = llama_cpp.llama_model_load_from_file(base_gguf.encode(), mp)
    if not model_c:
        print("3. llama.cpp could not load the base GGUF")
        return 1
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = 64
    cp.n_batch = 64
    cp.type_k = 0  # GGML_TYPE_F32: the default f16 KV cache alone moves logits by ~1e-3
    cp.type_v = 0
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
    toks_c = (llama_cpp.llama_token * len(toks))(*toks)  # kept alive: the batch only points at it
    batch = llama_cpp.llama_batch_get_one(toks_c, len(toks))
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
    # and the last-position logits of input_ids, in a fresh context, against ours
    ctx2 = llama_cpp.llama_init_from_model(model_c, cp)
    if hasattr(llama_cpp, "llama_set_adapter_lora"):
        llama_cpp.llama_set_adapter_lora(ctx2, lora, 1.0)
    else:
        llama_cpp.llama_set_adapters_lora(ctx2, adapters, 1, scales)
    ids_c = list(ours["input_ids"])
    arr = (llama_cpp.llama_token * len(ids_c))(*ids_c)  # kept alive: the batch only points at it
    if llama_cpp.llama_decode(ctx2, llama_cpp.llama_batch_get_one(arr, len(ids_c))) != 0:
        print("3. llama_decode failed")
        return 1
    lg = llama_cpp.llama_get_logits_ith(ctx2, -1)
    ldiff = max(abs(lg[i] - ours["logits"][-1][i]) for i in range(n_vocab))
    print(f"3. llama.cpp last-position logits with our GGUF adapter vs ours: max abs diff {ldiff:.3g} (limit 1e-4)")
    ok &= ldiff <= 1e-4
    print(f"3. llama.cpp greedy with our GGUF adapter: {'equal' if same else 'DIFFERENT'} ({len(want)} tokens)")
    if not same:
        print("   llama.cpp:", gen)
        print("   slmctl:   ", want)
    ok &= same
    ok &= merged_and_tokenizers(ours, ids)
    return 0 if ok else 1


def merged_and_tokenizers(ours, ids):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ok = True
    if not os.path.isdir(SCRATCH):
        print(f"4./5. SKIPPED: no {SCRATCH} (see the header: SLMCTL_PARITY_OUT=... build/test-model)")
        return True
    want = torch.tensor(ours["logits"])
    for name in ("merged-from-hf", "merged-from-gguf"):
        m = AutoModelForCausalLM.from_pretrained(os.path.join(SCRATCH, name), dtype=torch.float32)
        m.eval()
        with torch.no_grad():
            diff = (m(ids).logits[0] - want).abs().max().item()
        print(f"4. transformers on our {name} vs our adapted logits: max abs diff {diff:.3g} (limit 1e-4)")
        ok &= diff <= 1e-4
    for name in ("merged-tiny-qwen2", "merged-tiny-qwen2-gguf"):
        d = os.path.join(SCRATCH, name)
        ref = json.load(open(os.path.join(d, "slmctl-logits.json")))
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        m.eval()
        with torch.no_grad():
            diff = (m(torch.tensor([ref["input_ids"]])).logits[0] - torch.tensor(ref["logits"])).abs().max().item()
        print(f"4. transformers on our {name} (Qwen2, q/k/v biases) vs our adapted logits: max abs diff {diff:.3g} (limit 1e-4)")
        ok &= diff <= 1e-4
    d = os.path.join(SCRATCH, "merged-smollm2")
    if os.path.isdir(d):
        ref = json.load(open(os.path.join(d, "slmctl-logits.json")))
        tok = AutoTokenizer.from_pretrained(d)
        got_ids = tok.encode(ref["text"], add_special_tokens=False)
        m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32)
        m.eval()
        with torch.no_grad():
            lg = m(torch.tensor([ref["input_ids"]])).logits[0]
        diff = (lg[-1] - torch.tensor(ref["last_logits"])).abs().max().item()
        same_argmax = lg.argmax(-1).tolist() == ref["argmax"]
        print(f"4. transformers on our merged SmolLM2 (GGUF base + adapter): prompt ids "
              f"{'equal' if got_ids == ref['input_ids'] else 'DIFFERENT'}, last-position logits max abs diff "
              f"{diff:.3g} (limit 1e-3), argmax at every position {'equal' if same_argmax else 'DIFFERENT'}")
        ok &= got_ids == ref["input_ids"] and diff <= 1e-3 and same_argmax
    else:
        print("4. merged SmolLM2: SKIPPED (not written: no SmolLM2 GGUF)")
    for name in ("gpt-2", "llama-spm", "smollm2"):
        d = os.path.join(SCRATCH, "tokenizer-" + name)
        if not os.path.isdir(d):
            print(f"5. tokenizer {name}: SKIPPED (not written)")
            continue
        tok = AutoTokenizer.from_pretrained(d)
        cases = json.load(open(os.path.join(d, "slmctl-encodings.json")))
        enc = [tok.encode(c["text"], add_special_tokens=False) for c in cases]
        bad = [(c, e) for c, e in zip(cases, enc) if e != c["ids"]]
        print(f"5. transformers on our {name} tokenizer.json: {len(cases) - len(bad)}/{len(cases)} test strings "
              f"encode as slmctl does")
        for c, e in bad[:3]:
            print("   differs:", repr(c["text"]), e, c["ids"])
        ok &= not bad
        ref = {"gpt-2": "ggml-vocab-gpt-2.gguf.out", "llama-spm": "ggml-vocab-llama-spm.gguf.out"}.get(name)
        if ref:  # llama.cpp's reference tokens for the same strings (gpt-2's .out is for its own .inp)
            inp = open(os.path.join(VOCAB, ref[:-4] + ".inp"), encoding="utf-8").read().split("\n__ggml_vocab_test__\n")
            outs = open(os.path.join(VOCAB, ref), encoding="utf-8").read().split("\n")[:-1]  # one line a case
            match = sum(1 for t, o in zip(inp, outs) if [int(x) for x in o.split()] == tok.encode(t, add_special_tokens=False))
            print(f"   and {match}/{len(outs)} of llama.cpp's {ref} reference encodings")
            ok &= match == len(outs) and len(outs) > 0
        if name == "smollm2" and tok.chat_template:
            text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
            print("   chat template renders:", repr(text[:90]))
            ok &= "<|im_start|>user\nhi<|im_end|>" in text
    return ok


if __name__ == "__main__":
    sys.exit(main())
