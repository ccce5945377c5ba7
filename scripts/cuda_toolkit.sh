#!/usr/bin/env bash
# Sets up a CUDA 13.0 toolkit from PyPI wheels, enough to *build* multiad
# with `--features cuda` on a machine without a GPU or a CUDA install
# (CI does; docs/gpu.md). Running the result needs a real driver.
#
#   source scripts/cuda_toolkit.sh [PREFIX]    # default ~/.cache/multiad-ci/cuda
#
# It exports CUDA_HOME/CUDA_PATH/CUDA_ROOT, PATH (nvcc) and CUDA_COMPUTE_CAP
# (90: the H200 of the lent machine). The wheels are pinned to CUDA 13.0.x:
# the lent machine's driver is 580 (CUDA 13.0), and PTX from a newer nvcc
# does not load on it.
#
# No wheel ships the driver library (libcuda.so), so a link-only stub is
# built from cudarc's own list of driver functions, each returning
# CUDA_ERROR_UNKNOWN. It lives in $PREFIX/stub, which is only ever on the
# *link* path (LIBRARY_PATH), never on LD_LIBRARY_PATH: a binary built here
# loads the real libcuda.so.1 wherever it runs, and fails to start where
# there is none.
set -euo pipefail
prefix="${1:-$HOME/.cache/multiad-ci/cuda}"
site="$prefix/site"
toolkit="$prefix/toolkit"
stub="$prefix/stub"
wheels=(
  nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
)
if [ ! -x "$site/nvidia/cu13/bin/nvcc" ]; then
  python3 -m pip install --quiet --disable-pip-version-check --target "$site" "${wheels[@]}"
fi
cu="$site/nvidia/cu13"
mkdir -p "$toolkit/lib" "$stub"
for d in bin include nvvm; do ln -sfn "$cu/$d" "$toolkit/$d"; done
# The wheels ship only versioned libraries (libcublas.so.13); the linker
# wants lib*.so.
for f in "$cu"/lib/lib*.so.*; do
  base=$(basename "$f"); ln -sfn "$f" "$toolkit/lib/${base%%.so.*}.so"
done
ln -sfn "$toolkit/lib" "$toolkit/lib64"
if [ ! -f "$stub/libcuda.so" ]; then
  # `|| true`: on a new machine nothing has unpacked cudarc yet, and under
  # pipefail the failing ls would end the script here without a word.
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$cudarc" ]; then
    cargo fetch --locked >/dev/null
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -n1)
  fi
  grep -oE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" | sort -u \
    | awk '{print "int " $4 "(void) { return 999; }"}' > "$stub/cuda_stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub/libcuda.so" "$stub/cuda_stub.c"
fi
export CUDA_HOME="$toolkit" CUDA_PATH="$toolkit" CUDA_ROOT="$toolkit"
export PATH="$toolkit/bin:$PATH"
export LIBRARY_PATH="$stub:$toolkit/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
