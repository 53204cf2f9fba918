"""llama.cpp (llama-cpp-python) against slmctl on the same prompts: greedy answers of SmolLM2's GGUF
with and without an slmctl GGUF LoRA adapter, through the Python API and through llama.cpp's server.

  python llama_cpp_check.py BASE.gguf ADAPTER.gguf PROMPTS.jsonl TOOL [SLMCTL_OUTPUTS.json]

PROMPTS.jsonl is what `slmctl eval --dump-prompts` wrote (token ids per prompt); TOOL the function
name the cluster's logged answers call. Prints, per engine, how many answers are a <tool_call> naming
TOOL; exits 1 when llama.cpp with the adapter does not beat it without, or the server does not answer.
"""
import json
import subprocess
import sys
import time
import urllib.request

from llama_cpp import Llama


def greedy(llm, ids, eos, n=64):
    out = []
    for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        if tok in eos or len(out) >= n:
            break
        out.append(tok)
    return llm.detokenize(out).decode("utf-8", "replace")


def hits(texts, tool):
    return sum(1 for t in texts if "<tool_call>" in t and f'"{tool}"' in t)


def main():
    base, adapter, prompts_file, tool = sys.argv[1:5]
    ours = json.load(open(sys.argv[5])) if len(sys.argv) > 5 else None
    prompts, eos = [], set()
    for line in open(prompts_file):
        j = json.loads(line)
        prompts += j["prompts"]
        eos |= set(j["eos_ids"])
    res = {}
    for name, lora in (("llama.cpp + adapter", adapter), ("llama.cpp base", None)):
        llm = Llama(model_path=base, lora_path=lora, n_ctx=4096, n_threads=2, verbose=False)
        t = time.time()
        res[name] = [greedy(llm, p, eos) for p in prompts]
        print(f"{name}: {hits(res[name], tool)}/{len(prompts)} answers call {tool} ({time.time() - t:.1f} s)")
        print(f"   first answer: {res[name][0][:160]!r}")
        del llm
    if ours is not None:
        print(f"slmctl customized (eval_results): {hits(ours, tool)}/{len(ours)} answers call {tool}")
    ok = hits(res["llama.cpp + adapter"], tool) > hits(res["llama.cpp base"], tool)

    # the server: --lora_path loads the adapter; a completion on the first prompt's text
    llm = Llama(model_path=base, vocab_only=True, verbose=False)
    text = llm.detokenize(prompts[0]).decode("utf-8", "replace")
    port = 8765
    srv = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", base, "--lora_path", adapter,
                            "--n_ctx", "4096", "--port", str(port)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except Exception:
                time.sleep(1)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions",
                                     data=json.dumps({"prompt": text, "max_tokens": 64, "temperature": 0}).encode(),
                                     headers={"Content-Type": "application/json"})
        answer = json.load(urllib.request.urlopen(req, timeout=300))["choices"][0]["text"]
        print(f"llama.cpp server with --lora_path: {answer[:160]!r}")
        ok = ok and len(answer) > 0
    finally:
        srv.terminate()
        srv.wait()
    print("OK" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
