#!/usr/bin/env bash
# Gathers what scripts/gpu-check.sh needs on a GPU machine that can neither install packages nor
# download: into .cache/gpu-carry/ (git-ignored), which travels with the working tree as a carried
# path. Prints the total size with the source tree (the limit is 64 MiB). Idempotent.
#
#   debs/       the Debian 12 .debs of the build's libraries (apt-get download: no root, no install)
#   cmake.tar.xz  bin/cmake + share/cmake-X.Y from the PyPI cmake wheel (a static build that runs on
#               any x86-64 Linux; used only when the machine has no CMake >= 3.25)
#   tokenizer/  SmolLM's tokenizer.json (../shared/data) for the random-weight models made there
#
# Usage: scripts/gather-gpu-carry.sh [DIR]      (default .cache/gpu-carry)
set -euo pipefail
cd "$(dirname "$0")/.."
dst=${1:-.cache/gpu-carry}
mkdir -p "$dst/debs" "$dst/tokenizer"

# the build's libraries (CMakeLists.txt's find_package list) and their runtime libraries that a
# CUDA machine may lack; libc, libstdc++, libgcc, zlib and the compiler's OpenMP are assumed there
# (libgomp1 is carried but used only when the machine has no libgomp.so.1)
debs=(
  libfaiss-dev                      # static libfaiss.a + headers + CMake config
  libopenblas0-openmp libgfortran5  # the BLAS/LAPACK faiss calls (as setup-deps.sh installs)
  libgomp1
  libcli11-dev libfmt-dev libfmt9 doctest-dev nlohmann-json3-dev
  libsqlite3-dev libsqlite3-0
  libtomlplusplus-dev libtomlplusplus3
  libgoogle-perftools-dev libtcmalloc-minimal4
  zlib1g-dev zlib1g
  ninja-build
)
missing=()
for p in "${debs[@]}"; do
  ls "$dst/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "gather: apt-get download ${missing[*]}" >&2
  (cd "$dst/debs" && apt-get download "${missing[@]}" >&2 2>/dev/null) || {
    echo "error: apt-get download failed (run 'apt-get update' first?)" >&2
    exit 1
  }
fi
for f in "$dst"/debs/*%3a*.deb; do  # epoch "1:" is written %3a: plain names travel better
  [[ -e $f ]] && mv "$f" "${f//%3a/_}"
done

# CMake from its PyPI wheel: only the binary and its modules, recompressed
cmake_ver=3.31.6
cmake_whl="cmake-${cmake_ver}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
if [[ ! -f "$dst/cmake.tar.xz" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "gather: pip download cmake==$cmake_ver" >&2
  python3 -m pip download --quiet --no-deps --only-binary :all: --platform manylinux_2_17_x86_64 \
    --python-version 3.11 --implementation cp "cmake==$cmake_ver" -d "$tmp" >&2
  python3 - "$tmp/$cmake_whl" "$tmp/cmake" <<'EOF'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for m in z.infolist():
        n = m.filename
        if n.endswith("/") or not (n.startswith("cmake/data/bin/cmake") or n.startswith("cmake/data/share/cmake-")):
            continue
        if n.startswith("cmake/data/bin/") and os.path.basename(n) != "cmake":
            continue
        if "/Help/" in n or "/doc/" in n:
            continue
        dst = os.path.join(out, n[len("cmake/data/"):])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(m) as s, open(dst, "wb") as f:
            f.write(s.read())
        os.chmod(dst, 0o755 if "/bin/" in n else 0o644)
EOF
  tar -C "$tmp/cmake" -cJf "$dst/cmake.tar.xz.part" bin share
  mv "$dst/cmake.tar.xz.part" "$dst/cmake.tar.xz"
fi

tok=../shared/data/tokenizers/smollm-135m
[[ -d $tok ]] || tok=/work/shared/data/tokenizers/smollm-135m
cp -n "$tok/tokenizer.json" "$dst/tokenizer/tokenizer.json"
cp -n "$tok/LICENSE.repo" "$dst/tokenizer/LICENSE.repo" 2>/dev/null || true

tree=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carry=$(du -sb "$dst" | cut -f1)
total=$((tree + carry))
printf 'gather: %s: debs %.1f MiB, cmake %.1f MiB, tokenizer %.1f MiB; source tree %.1f MiB; total %.1f MiB of 64\n' \
  "$dst" "$(du -sb "$dst/debs" | awk '{print $1/1048576}')" "$(du -sb "$dst/cmake.tar.xz" | awk '{print $1/1048576}')" \
  "$(du -sb "$dst/tokenizer" | awk '{print $1/1048576}')" "$(awk -v t="$tree" 'BEGIN{print t/1048576}')" \
  "$(awk -v t="$total" 'BEGIN{print t/1048576}')"
if ((total > 64 * 1048576)); then
  echo "error: more than 64 MiB would travel" >&2
  exit 1
fi
