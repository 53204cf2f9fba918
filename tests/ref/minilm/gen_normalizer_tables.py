#!/usr/bin/env python3
"""Regenerates the Unicode tables of model/wordpiece-tokenizer.cpp (the block between the BEGIN/END
GENERATED markers) by probing HF tokenizers' own BertNormalizer and BertPreTokenizer codepoint by
codepoint. Probing rather than reading unicodedata matters: tokenizers mixes Unicode versions
(its category tables are old: marks and punctuation added since are plain letters to it, and
unassigned codepoints are kept), and parity with it is the goal. Dev-time only, in the venv of
make_fixture.py:

  /work/venv-minilm/bin/python tests/ref/minilm/gen_normalizer_tables.py

BertNormalizer works codepoint by codepoint (tokenizers/src/normalizers/bert.rs):
  clean_text      drop "control" codepoints, whitespace -> ' '
  chinese_chars   ' ' + CJK ideograph + ' '   (fixed ranges, in code)
  strip_accents   NFD, then drop nonspacing marks
  lowercase       lower-case mapping of each codepoint
Tables: k_control (ranges clean_text drops), k_nonspacing (ranges that strip_accents + lowercase
drop), k_fold1 / k_foldn (cp -> lowercase(strip(NFD(cp))) where that differs: one codepoint /
several), k_space and k_punct (ranges BertPreTokenizer splits on: removed / kept as a word).
Hangul syllables (NFD by formula) are decomposed in code; this script checks the formula.
"""
import os
import re

import tokenizers
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TARGET = os.path.join(ROOT, "model", "wordpiece-tokenizer.cpp")


def ranges(cps):
    out = []
    for cp in cps:
        if out and out[-1][1] == cp:
            out[-1][1] = cp + 1
        else:
            out.append([cp, cp + 1])
    return out


def emit(name, ctype, rows, per_line):
    lines = [f"constexpr {ctype} {name}[] = {{"]
    for i in range(0, len(rows), per_line):
        lines.append("".join(rows[i:i + per_line]))
    lines.append("};")
    return "\n".join(lines)


def emit_ranges(name, cps):
    return emit(name, "cpt_range", [f"{{0x{a:X},0x{b:X}}}," for a, b in ranges(cps)], 8)


def hangul_nfd(cp):
    s = cp - 0xAC00
    out = [0x1100 + s // 588, 0x1161 + (s % 588) // 28]
    if s % 28:
        out.append(0x11A7 + s % 28)
    return "".join(map(chr, out))


def main():
    folded = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=True, lowercase=True)
    cleaned = BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    pre = BertPreTokenizer()
    control, nonspacing, fold1, foldn, space, punct = [], [], [], [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue  # surrogates: not in UTF-8 text
        c = chr(cp)
        split = [w for w, _ in pre.pre_tokenize_str("a" + c + "a")]
        if split == ["a", "a"]:
            space.append(cp)
        elif split == ["a", c, "a"]:
            punct.append(cp)
        else:
            assert split == ["a" + c + "a"], (hex(cp), split)
        r0 = cleaned.normalize_str(c)
        if r0 == "":
            control.append(cp)
            continue
        if r0 == " " and c != " ":
            assert cp in space, hex(cp)  # clean_text's whitespace is the pre-tokenizer's
            continue
        assert r0 == c, (hex(cp), r0)
        r1 = folded.normalize_str(c)
        if 0xAC00 <= cp <= 0xD7A3:
            assert r1 == hangul_nfd(cp), hex(cp)
        elif r1 == "":
            nonspacing.append(cp)
        elif r1 != c:
            (fold1 if len(r1) == 1 else foldn).append((cp, r1))

    parts = [f"// probed from HF tokenizers {tokenizers.__version__} by tests/ref/minilm/gen_normalizer_tables.py"]
    parts.append(emit_ranges("k_control", control))
    parts.append(emit_ranges("k_nonspacing", nonspacing))
    parts.append(emit_ranges("k_space", space))
    parts.append(emit_ranges("k_punct", punct))
    parts.append(emit("k_fold1", "cpt_fold1", [f"{{0x{a:X},0x{ord(b):X}}}," for a, b in fold1], 9))
    rows = []
    for cp, s in foldn:
        esc = "".join(f"\\x{b:02X}" for b in s.encode("utf-8"))
        rows.append(f'{{0x{cp:X},"{esc}"}},')
    parts.append(emit("k_foldn", "cpt_foldn", rows, 3))
    block = "\n".join(parts)

    src = open(TARGET, encoding="utf-8").read()
    pat = re.compile(r"(// BEGIN GENERATED[^\n]*\n).*?(^// END GENERATED)", re.S | re.M)
    if not pat.search(src):
        raise SystemExit(f"{TARGET}: no BEGIN/END GENERATED block")
    src = pat.sub(lambda m: m.group(1) + block + "\n" + m.group(2), src, count=1)
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(src)
    print(f"{TARGET}: {len(control)} control, {len(nonspacing)} nonspacing, {len(space)} space, "
          f"{len(punct)} punct, {len(fold1)}+{len(foldn)} folds")


if __name__ == "__main__":
    main()
