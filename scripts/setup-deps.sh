#!/usr/bin/env bash
# Installs the Debian 12 packages slmctl builds and runs with, only those missing (idempotent).
# Called by the demo and test entry points; safe to run by hand. libtorch is not a Debian package
# here: scripts/fetch-libtorch.sh installs the pinned PyPI wheel's libtorch (build.sh calls it).
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build ccache pkg-config python3 python3-pip
  libfaiss-dev libcli11-dev libfmt-dev doctest-dev libsqlite3-dev nlohmann-json3-dev
  zlib1g-dev unzip
  libtomlplusplus-dev      # the run config (TOML)
  libopenblas0-openmp      # Debian's default reference BLAS does ~3 GFLOP/s; OpenBLAS ~190
  libgoogle-perftools-dev  # tcmalloc_minimal: glibc malloc makes training ~3x slower
)
# extra packages a caller needs (e.g. benches: python3-sklearn)
pkgs+=("$@")

missing=()
for p in "${pkgs[@]}"; do
  # python3/pip may come from elsewhere (pyenv): only require the Debian package if the tool is absent
  case "$p" in
    python3) command -v python3 >/dev/null && continue ;;
    python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
  esac
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# OpenBLAS must be the active BLAS (faiss and libtorch's fp32 paths go through it)
blas=$(update-alternatives --query libblas.so.3-x86_64-linux-gnu 2>/dev/null | awk '/^Value:/{print $2}')
if [[ -n "$blas" && "$blas" != *openblas* ]]; then
  echo "warning: the active BLAS is $blas, not OpenBLAS; run: update-alternatives --config libblas.so.3-x86_64-linux-gnu" >&2
fi
