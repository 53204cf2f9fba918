#!/usr/bin/env python3
"""A Llama checkpoint of a real model's shapes with random weights, as an HF directory that both
slmctl and transformers load: config.json, model.safetensors (bf16, seeded normal(0, 0.02), norms 1),
tokenizer.json (the SmolLM tokenizer, its appended [PAD] removed: SmolLM2's vocabulary is 49152) and
tokenizer_config.json with a ChatML chat template. For the GPU benches (scripts/gpu-check.sh): the
SmolLM2 GGUF is too large to carry, and speed does not depend on the weights' values.

  python3 bench/gpu/make_random_model.py --shape 135m|1.7b|tiny --tokenizer TOKENIZER.json --out DIR [--device cuda]
"""
import argparse
import json
import os
import sys
import time

# SmolLM2's published configs (HuggingFaceTB/SmolLM2-135M-Instruct, -1.7B-Instruct); tiny: the dry run
SHAPES = {
    "135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                 num_key_value_heads=3, rope_theta=100000.0),
    "1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                 num_key_value_heads=32, rope_theta=130000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, rope_theta=10000.0),
}
VOCAB = 49152

# ChatML as SmolLM2 uses it (system turn added when the chat has none)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def clean_tokenizer(src, dst):
    """Copies tokenizer.json without ids >= VOCAB (the [PAD] a copying repo appended)."""
    with open(src, encoding="utf-8") as f:
        tj = json.load(f)
    tj["added_tokens"] = [t for t in tj.get("added_tokens", []) if t["id"] < VOCAB]
    vocab = tj.get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        tj["model"]["vocab"] = {k: v for k, v in vocab.items() if v < VOCAB}
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)


def write_tokenizer(a):
    clean_tokenizer(a.tokenizer, os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"chat_template": CHAT_TEMPLATE, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                   "pad_token": "<|im_end|>", "model_max_length": 8192, "tokenizer_class": "GPT2Tokenizer"}, f)


def save_pure(shapes, path, seed):
    """The same file without torch (the CPU dry run of scripts/gpu-check.sh): bf16 normal(0, 0.02) (other
    numbers than torch's generator draws), ones for the norms, in the safetensors layout."""
    import random
    import struct
    from array import array
    rng = random.Random(seed)
    header, blobs, off = {}, [], 0
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        if name.endswith("norm.weight"):
            f = array("f", [1.0] * n)
        else:
            f = array("f", (rng.gauss(0.0, 0.02) for _ in range(n)))
        u = array("I")
        u.frombytes(f.tobytes())
        b = array("H", (x >> 16 for x in u)).tobytes()  # bf16: the upper half of the fp32 bits
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    return off // 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--tokenizer", required=True, help="a SmolLM tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu", help="where the random numbers are drawn (cuda: fast)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        torch = None
        if a.shape != "tiny":
            sys.exit("torch and safetensors are needed for the real shapes")

    t0 = time.time()
    s = SHAPES[a.shape]
    C, F, L = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    H, K = s["num_attention_heads"], s["num_key_value_heads"]
    D = C // H
    os.makedirs(a.out, exist_ok=True)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB,
        "hidden_size": C, "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": K, "head_dim": D, "hidden_act": "silu", "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5, "rope_theta": s["rope_theta"], "tie_word_embeddings": True,
        "rope_parameters": {"rope_theta": s["rope_theta"], "rope_type": "default"},  # transformers >= 5
        "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2,
        "torch_dtype": "bfloat16", "use_cache": True,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    names = [("model.embed_tokens.weight", (VOCAB, C)), ("model.norm.weight", (C,))]
    for i in range(L):
        p = f"model.layers.{i}."
        names += [(p + "self_attn.q_proj.weight", (H * D, C)), (p + "self_attn.k_proj.weight", (K * D, C)),
                  (p + "self_attn.v_proj.weight", (K * D, C)), (p + "self_attn.o_proj.weight", (C, H * D)),
                  (p + "mlp.gate_proj.weight", (F, C)), (p + "mlp.up_proj.weight", (F, C)),
                  (p + "mlp.down_proj.weight", (C, F)), (p + "input_layernorm.weight", (C,)),
                  (p + "post_attention_layernorm.weight", (C,))]
    if torch is None:
        n = save_pure(names, os.path.join(a.out, "model.safetensors"), a.seed)
        write_tokenizer(a)
        print(json.dumps({"shape": a.shape, "params": n, "dir": a.out, "seconds": round(time.time() - t0, 2),
                          "writer": "pure python"}))
        return
    g = torch.Generator(device=a.device).manual_seed(a.seed)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g, device=a.device, dtype=torch.float32) * 0.02).to(torch.bfloat16).cpu()

    ones = lambda n: torch.ones(n, dtype=torch.bfloat16)
    w = {name: ones(shape[0]) if name.endswith("norm.weight") else rnd(*shape) for name, shape in names}
    save_file(w, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    write_tokenizer(a)
    n = sum(t.numel() for t in w.values())
    print(json.dumps({"shape": a.shape, "params": n, "dir": a.out, "seconds": round(time.time() - t0, 2)}))


if __name__ == "__main__":
    sys.exit(main())
