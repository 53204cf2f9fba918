#!/usr/bin/env python3
"""Reference fixtures for tests/model/test-llama.cpp, written by HF transformers (an independent
implementation). Dev-time only: needs PyPI torch, transformers, safetensors, gguf, numpy
(python3 -m venv /work/venv-ref && /work/venv-ref/bin/pip install torch transformers safetensors gguf numpy).

Writes under tests/data/ref/ (committed, well under 2 MB):
  tiny-llama/       LlamaForCausalLM, untied, F32, sharded safetensors (exercises the index file)
  tiny-qwen2/       Qwen2ForCausalLM, tied embeddings, qkv bias, BF16 safetensors
  tiny-llama.gguf   the same tiny Llama as GGUF F32, q/k permuted the llama.cpp way
  tiny-qwen2.gguf   the same tiny Qwen2 as GGUF F16 (no permutation: qwen2 uses NEOX RoPE)
  logits.json       version, input ids, logits (T, V) per model, and HF greedy continuations

Run: /work/venv-ref/bin/python tests/ref/make_fixtures.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

VERSION = 1
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "ref")
INPUT_IDS = [1, 17, 200, 3, 45, 45, 99, 128, 7, 255, 0, 64, 31, 190, 2, 77]
GREEDY_PROMPT = [1, 42, 43, 44]
GREEDY_NEW = 24


def randomize(model, seed):
    # transformers' default init (std 0.02) gives near-uniform logits; larger weights make the
    # comparison sensitive to every op (norm weights around 1, biases non-zero)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / (p.shape[-1] ** 0.5))


def ref_outputs(model):
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([INPUT_IDS])).logits[0].float()  # (T, V)
        gen = model.generate(torch.tensor([GREEDY_PROMPT]), attention_mask=torch.ones(1, len(GREEDY_PROMPT), dtype=torch.long),
                             do_sample=False, max_new_tokens=GREEDY_NEW, min_new_tokens=GREEDY_NEW,
                             eos_token_id=None, pad_token_id=0)
    return {
        "logits_shape": list(logits.shape),
        "logits": [float(f"{x:.7g}") for x in logits.flatten().tolist()],
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_ids": gen[0, len(GREEDY_PROMPT):].tolist(),
    }


def gguf_permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute: rotate-half rows -> interleaved pairs
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(hf):
    if hf in GGUF_NAMES:
        return GGUF_NAMES[hf]
    parts = hf.split(".")  # model.layers.{i}.rest
    return f"blk.{parts[2]}." + GGUF_NAMES[".".join(parts[3:])]


def write_gguf(model, cfg, arch, path, dtype, permute):
    import gguf

    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"slmctl test {arch}")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else cfg.rope_parameters["rope_theta"])
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0 if dtype == np.float32 else 1)
    for name, p in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        t = p.float().numpy()
        if permute and name.endswith("q_proj.weight"):
            t = gguf_permute(t, cfg.num_attention_heads)
        if permute and name.endswith("k_proj.weight"):
            t = gguf_permute(t, cfg.num_key_value_heads)
        # norms stay F32 as llama.cpp writes them
        w.add_tensor(gguf_name(name), t.astype(dtype if t.ndim == 2 else np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    os.makedirs(OUT, exist_ok=True)
    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    result = {"version": VERSION, "generator": "tests/ref/make_fixtures.py",
              "transformers": __import__("transformers").__version__, "torch": torch.__version__,
              "input_ids": INPUT_IDS, "models": {}}

    # tiny Llama: untied, F32, sharded
    cfg = LlamaConfig(**common, tie_word_embeddings=False, rope_theta=10000.0)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(cfg).float()
    randomize(llama, 1)
    d = os.path.join(OUT, "tiny-llama")
    shutil.rmtree(d, ignore_errors=True)
    llama.save_pretrained(d, safe_serialization=True, max_shard_size="200KB")
    result["models"]["tiny-llama"] = ref_outputs(llama)
    write_gguf(llama, cfg, "llama", os.path.join(OUT, "tiny-llama.gguf"), np.float32, permute=True)

    # tiny Qwen2: tied embeddings, qkv bias, stored in BF16; reference computed in F32 from the
    # BF16-rounded weights, i.e. exactly what a loader that upcasts sees
    cfg = Qwen2Config(**common, tie_word_embeddings=True, rope_theta=1000000.0)
    torch.manual_seed(0)
    qwen = Qwen2ForCausalLM(cfg).float()
    randomize(qwen, 2)
    qwen = qwen.to(torch.bfloat16)
    d = os.path.join(OUT, "tiny-qwen2")
    shutil.rmtree(d, ignore_errors=True)
    qwen.save_pretrained(d, safe_serialization=True)
    # a fresh float32 model: .to(bfloat16) also rounded the RoPE inv_freq buffer, .float() would
    # not restore it
    qwen32 = Qwen2ForCausalLM(cfg).float()
    qwen32.load_state_dict({k: v.float() for k, v in qwen.state_dict().items()})
    qwen = qwen32
    result["models"]["tiny-qwen2"] = ref_outputs(qwen)
    write_gguf(qwen, cfg, "qwen2", os.path.join(OUT, "tiny-qwen2.gguf"), np.float16, permute=False)

    for d in ("tiny-llama", "tiny-qwen2"):
        gc = os.path.join(OUT, d, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)
    with open(os.path.join(OUT, "logits.json"), "w") as f:
        json.dump(result, f)
        f.write("\n")
    total = 0
    for dp, _, fs in os.walk(OUT):
        for fn in fs:
            total += os.path.getsize(os.path.join(dp, fn))
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    sys.exit(main())
