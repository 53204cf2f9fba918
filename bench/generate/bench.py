#!/usr/bin/env python3
"""Batched greedy decode throughput of SmolLM2-135M-Instruct (Q4_1 GGUF): slmctl (fp32, bf16)
side by side with llama.cpp (the libllama that PyPI llama-cpp-python builds, driven by
llama-cpp-batched.c through its C API, same GGUF) and HF transformers `generate`
(the same GGUF dequantized by transformers). Prints tokens/s per batch size and the ratios.

Dev-time only: pip install llama-cpp-python transformers torch gguf (a venv such as /work/venv-ref);
missing packages are reported and skipped. Usage:
  /work/venv-ref/bin/python bench/generate/bench.py [--slmctl build/slmctl] [--batches 1,8,32]
      [--tokens 64] [--threads 2] [--json out.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

PROMPT = "Once upon a time, in a land far away,"


def models_dir():
    return os.environ.get("SLMCTL_MODELS") or os.path.expanduser("~/.cache/slmctl/models")


def bench_slmctl(binary, model, batch, tokens, threads, dtype):
    cmd = [binary, "model", "generate", model, "--prompt", PROMPT, "--batch", str(batch), "--max-tokens",
           str(tokens), "--dtype", dtype, "--threads", str(threads), "--json", "-q"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    # generated_tokens can be < batch*tokens when a row hits EOS; throughput counts real tokens
    return j["generated_tokens"] / j["decode_seconds"], j["results"][0]["text"]


def llama_cpp_binary():
    """Builds llama-cpp-batched.c against the libllama that llama-cpp-python installed (once)."""
    import llama_cpp

    site = os.path.dirname(os.path.dirname(llama_cpp.__file__))
    lib = os.path.join(site, "llama_cpp", "lib")
    out_dir = os.path.join(os.path.dirname(__file__), "..", "out")
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, "llama-cpp-batched")
    src = os.path.join(os.path.dirname(__file__), "llama-cpp-batched.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", src, "-I", os.path.join(site, "include"), "-L", lib, "-lllama",
                        f"-Wl,-rpath,{lib}", "-o", exe], check=True)
    return exe


def bench_llama_cpp(model, batch, tokens, threads):
    # the C API directly: llama-cpp-python's high-level API has no multi-sequence batching
    out = subprocess.run([llama_cpp_binary(), model, str(batch), str(tokens), str(threads), PROMPT], check=True,
                         capture_output=True, text=True).stdout
    j = json.loads(out)
    return j["tokens_per_second"], f"ids {j['first_ids'][:6]}"


def bench_hf(model, batch, tokens, threads):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    d, f = os.path.split(model)
    if "m" not in bench_hf.cache:
        bench_hf.cache["t"] = AutoTokenizer.from_pretrained(d, gguf_file=f)
        bench_hf.cache["m"] = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    tok, m = bench_hf.cache["t"], bench_hf.cache["m"]
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    enc = tok([PROMPT] * batch, return_tensors="pt", padding=True)
    with torch.inference_mode():
        m.generate(**enc, max_new_tokens=1, do_sample=False)
        t0 = time.perf_counter()
        m.generate(**enc, max_new_tokens=1, do_sample=False)
        t1 = time.perf_counter()
        out = m.generate(**enc, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
        t2 = time.perf_counter()
    text = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return batch * (tokens - 1) / max((t2 - t1) - (t1 - t0), 1e-9), text


bench_hf.cache = {}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slmctl", default=os.path.join(os.path.dirname(__file__), "..", "..", "build", "slmctl"))
    ap.add_argument("--model", default=os.path.join(models_dir(), "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip", default="", help="comma list of engines to skip: llama.cpp,hf")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    batches = [int(x) for x in a.batches.split(",")]
    skip = set(filter(None, a.skip.split(",")))
    engines = [("slmctl fp32", lambda b: bench_slmctl(a.slmctl, a.model, b, a.tokens, a.threads, "fp32")),
               ("slmctl bf16", lambda b: bench_slmctl(a.slmctl, a.model, b, a.tokens, a.threads, "bf16"))]
    if "llama.cpp" not in skip:
        engines.append(("llama.cpp (Q4_1)", lambda b: bench_llama_cpp(a.model, b, a.tokens, a.threads)))
    if "hf" not in skip:
        engines.append(("HF transformers fp32", lambda b: bench_hf(a.model, b, a.tokens, a.threads)))
    results = {}
    for name, fn in engines:
        for b in batches:
            try:
                tps, text = fn(b)
                results[(name, b)] = tps
                print(f"{name:22s} batch {b:3d}: {tps:8.1f} tokens/s   {text[:50]!r}", flush=True)
            except Exception as e:  # a missing package or API change: report, go on
                print(f"{name:22s} batch {b:3d}: n/a ({type(e).__name__}: {str(e)[:120]})", flush=True)
    print("\nratios (slmctl / other, tokens/s):")
    for b in batches:
        for ours in ("slmctl fp32", "slmctl bf16"):
            for other in ("llama.cpp (Q4_1)", "HF transformers fp32"):
                if (ours, b) in results and (other, b) in results:
                    print(f"  batch {b:3d}: {ours} / {other} = {results[(ours, b)] / results[(other, b)]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"threads": a.threads, "tokens": a.tokens, "model": a.model,
                       "results": [{"engine": k[0], "batch": k[1], "tokens_per_s": v} for k, v in results.items()]},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
