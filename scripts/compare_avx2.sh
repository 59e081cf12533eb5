#!/usr/bin/env bash
# shortcut's AVX2 kernels against ONNX Runtime's AVX2 kernels on an AVX-512 machine: both run
# with AVX-512 hidden from CPUID by scripts/cpuid_mask.c (LD_PRELOAD), so ONNX Runtime picks its
# AVX2/FMA kernels and shortcut detects AVX2 (also forced with SHORTCUT_ISA=avx2), then
# ../shared/bench/compare.py times them interleaved, as for the AVX-512 comparison.
#
#   scripts/compare_avx2.sh ARCH [compare.py options...]   e.g. scripts/compare_avx2.sh resnet50 --rounds 3
#
# Needs a C compiler, Linux with the `cpuid_fault` CPU flag, the venv of the README's
# comparison, and `cargo build --release -p shortcut-tools`.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 ARCH [compare.py options...]" >&2
    exit 2
fi
arch=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
grep -qw cpuid_fault /proc/cpuinfo || { echo "$0: this CPU/kernel has no cpuid_fault" >&2; exit 1; }
shim="$root/target/cpuid_mask.so"
mkdir -p "$root/target"
cc -O2 -shared -fPIC -o "$shim" "$root/scripts/cpuid_mask.c"
bin="$root/target/release/shortcut"
# The shortcut binary must see AVX2 as its best ISA under the mask, or the mask did not work.
isa=$(LD_PRELOAD="$shim" "$bin" bench "$arch" --threads 1 --iters 1 --warmup 0 | head -1)
case "$isa" in
*", avx2,"*) ;;
*) echo "$0: AVX-512 still visible under the mask: $isa" >&2; exit 1 ;;
esac
LD_PRELOAD="$shim" SHORTCUT_ISA=avx2 python "$root/../shared/bench/compare.py" \
    --arch "$arch" --threads 1 --shortcut "$bin" --no-torch "$@"
