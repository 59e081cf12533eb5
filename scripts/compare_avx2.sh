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
[ -x "$bin" ] || { echo "$0: no $bin; run cargo build --release -p shortcut-tools" >&2; exit 1; }
preload="$shim${LD_PRELOAD:+:$LD_PRELOAD}"
# Under the mask, the shortcut binary's own detection must pick AVX2, or the mask did not work.
isa=$(env -u SHORTCUT_ISA LD_PRELOAD="$preload" "$bin" bench "$arch" --threads 1 --iters 1 \
    --warmup 0 --json | python3 -c "import json, sys; print(json.load(sys.stdin)['isa'])")
if [ "$isa" != avx2 ]; then
    echo "$0: under the mask shortcut still detects $isa, not avx2" >&2
    exit 1
fi
LD_PRELOAD="$preload" SHORTCUT_ISA=avx2 python3 "$root/../shared/bench/compare.py" \
    --arch "$arch" --threads 1 --shortcut "$bin" --no-torch "$@"
