#!/usr/bin/env bash
# Installs the libtorch slmctl builds against: the C++ library inside the PyPI `torch` wheel (one
# pinned version, sha256-checked), unpacked into ${SLMCTL_CACHE:-~/.cache/slmctl}/libtorch-VERSION.
# Prints that prefix (lib/, include/, share/cmake/) on stdout; does nothing when it is already there.
#
#   scripts/fetch-libtorch.sh          CPU build: libtorch_cpu + libc10 (+ libcudart/libcupti, which
#                                      libtorch_cpu.so needs at load time, from their PyPI packages)
#   scripts/fetch-libtorch.sh --cuda   also libtorch_cuda, libc10_cuda (the CUDA build) and the three
#                                      libraries libtorch_cuda.so links that the CUDA 13 toolkit lacks:
#                                      cuSPARSELt, NVSHMEM (host) and cuFile, from their pinned PyPI
#                                      packages (cuBLAS, cuDNN, NCCL, cuFFT... come from the toolkit)
#
# The wheel's bundled fmt headers (12.x) are removed from include/: every slmctl translation unit
# uses Debian's libfmt 9.1 (headers and library), whether it includes torch or not.
set -euo pipefail

version=2.11.0
layout=2       # bump when what is unpacked changes
cuda_layout=3  # the same for what --cuda adds (separate: the CPU build keeps its unpacked tree)
# wheel file | sha256. cp311 is the only thing python-specific in it; libtorch itself is the same.
wheel="torch-${version}-cp311-cp311-manylinux_2_28_x86_64.whl|7aa2f9bbc6d4595ba72138026b2074be1233186150e9292865e04b7a63b8c67a"
cudart="nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548|nvidia-cuda-runtime==13.0.96|nvidia/cu13/lib/libcudart.so.13"
cupti="nvidia_cuda_cupti-13.0.85-py3-none-manylinux_2_25_x86_64.whl|4eb01c08e859bf924d222250d2e8f8b8ff6d3db4721288cf35d14252a4d933c8|nvidia-cuda-cupti==13.0.85|nvidia/cu13/lib/libcupti.so.13"
# --cuda: libtorch_cuda.so's DT_NEEDED entries that the CUDA 13.0 toolkit does not ship (the versions torch 2.11.0 pins)
cusparselt="nvidia_cusparselt_cu13-0.8.0-py3-none-manylinux2014_x86_64.whl|25e30a8a7323935d4ad0340b95a0b69926eee755767e8e0b1cf8dd85b197d3fd|nvidia-cusparselt-cu13==0.8.0|nvidia/cusparselt/lib/libcusparseLt.so.0"
nvshmem="nvidia_nvshmem_cu13-3.4.5-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|290f0a2ee94c9f3687a02502f3b9299a9f9fe826e6d0287ee18482e78d495b80|nvidia-nvshmem-cu13==3.4.5|nvidia/nvshmem/lib/libnvshmem_host.so.3"
cufile="nvidia_cufile-1.15.1.6-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl|08a3ecefae5a01c7f5117351c64f17c7c62efa5fffdbe24fc7d298da19cd0b44|nvidia-cufile==1.15.1.6|nvidia/cu13/lib/libcufile.so.0"

want_cuda=0
[[ "${1:-}" == "--cuda" ]] && want_cuda=1

cache=${SLMCTL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/slmctl}
prefix="$cache/libtorch-$version"
stamp_cpu="$prefix/.complete-cpu-$layout"
stamp_cuda="$prefix/.complete-cuda-$cuda_layout"
if [[ -f "$stamp_cpu" && ( $want_cuda -eq 0 || -f "$stamp_cuda" ) ]]; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.fetch-libtorch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

sha_ok() { [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

# fetch FILE SHA REQUIREMENT [pip flags...]: the wheel into $cache/wheels, checked
fetch() {
  local file=$1 sha=$2 req=$3
  shift 3
  local dst="$cache/wheels/$file"
  if sha_ok "$dst" "$sha"; then return; fi
  mkdir -p "$cache/wheels"
  echo "fetch-libtorch: downloading $req" >&2
  python3 -m pip download --quiet --no-deps --only-binary :all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 "$req" -d "$tmp/dl" "$@" >&2
  if ! sha_ok "$tmp/dl/$file" "$sha"; then
    echo "error: $req: expected $file with sha256 $sha, got: $(ls "$tmp/dl")" >&2
    exit 1
  fi
  mv "$tmp/dl/$file" "$dst.part" && mv "$dst.part" "$dst"
}

IFS='|' read -r wfile wsha <<<"$wheel"
fetch "$wfile" "$wsha" "torch==$version"

stage="$tmp/stage"
mkdir -p "$stage"
if [[ ! -f "$stamp_cpu" ]]; then
  echo "fetch-libtorch: unpacking libtorch $version into $prefix" >&2
  python3 - "$cache/wheels/$wfile" "$stage" <<'EOF'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
# libgomp: one OpenMP runtime per process, Debian's (faiss and OpenBLAS use it; libtorch needs only
# GOMP_4.0, which it has), so the wheel's copy is not installed
skip_libs = ("libtorch_cuda", "libc10_cuda", "libtorch_python", "libtorch_nvshmem", "libcaffe2_nvrtc", "libgomp")
with zipfile.ZipFile(whl) as z:
    for m in z.infolist():
        n = m.filename
        if not n.startswith(("torch/lib/", "torch/include/", "torch/share/cmake/")) or n.endswith("/"):
            continue
        if n.startswith("torch/lib/") and os.path.basename(n).startswith(skip_libs):
            continue
        if n.startswith("torch/include/fmt/"):   # one fmt in the build: Debian's
            continue
        dst = os.path.join(out, n[len("torch/"):])
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with z.open(m) as src, open(dst, "wb") as f:
            while chunk := src.read(1 << 20):
                f.write(chunk)
        os.chmod(dst, 0o755 if n.startswith("torch/lib/") else 0o644)
EOF
  # libtorch_cpu.so needs libcudart/libcupti to load, even on a machine without a GPU
  for spec in "$cudart" "$cupti"; do
    IFS='|' read -r f s req member <<<"$spec"
    fetch "$f" "$s" "$req"
    python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[3],"wb").write(z.read(sys.argv[2]))' \
      "$cache/wheels/$f" "$member" "$stage/lib/$(basename "$member")"
    chmod 755 "$stage/lib/$(basename "$member")"
  done
  echo "$version" >"$stage/VERSION"
  rm -rf "$prefix"
  mv "$stage" "$prefix"
  touch "$stamp_cpu"
fi

if [[ $want_cuda -eq 1 && ! -f "$stamp_cuda" ]]; then
  echo "fetch-libtorch: unpacking the CUDA libraries of libtorch $version" >&2
  python3 - "$cache/wheels/$wfile" "$prefix" <<'EOF'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
want = ("libtorch_cuda", "libc10_cuda", "libcaffe2_nvrtc", "libtorch_nvshmem")  # libtorch_cuda* takes libtorch_cuda_linalg (dlopened)
with zipfile.ZipFile(whl) as z:
    for m in z.infolist():
        n = m.filename
        if n.startswith("torch/lib/") and os.path.basename(n).startswith(want):
            dst = os.path.join(out, "lib", os.path.basename(n))
            with z.open(m) as src, open(dst + ".part", "wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            os.chmod(dst + ".part", 0o755)
            os.replace(dst + ".part", dst)
EOF
  for spec in "$cusparselt" "$nvshmem" "$cufile"; do
    IFS='|' read -r f s req member <<<"$spec"
    fetch "$f" "$s" "$req"
    python3 -c 'import sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); open(sys.argv[3],"wb").write(z.read(sys.argv[2]))' \
      "$cache/wheels/$f" "$member" "$prefix/lib/$(basename "$member").part"
    chmod 755 "$prefix/lib/$(basename "$member").part"
    mv "$prefix/lib/$(basename "$member").part" "$prefix/lib/$(basename "$member")"
  done
  touch "$stamp_cuda"
fi
echo "$prefix"
