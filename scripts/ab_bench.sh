#!/usr/bin/env bash
# Interleaved A/B timing of shortcut binaries on one network: on a shared, noisy machine a
# change is only judged against the previous binary timed in the same minutes, in turns.
#
#   scripts/ab_bench.sh ROUNDS ARCH BINARY...      e.g. scripts/ab_bench.sh 8 resnet50 /tmp/old /tmp/new
#
# Each round runs `BINARY bench ARCH --threads 1 --iters 20 --json` for every binary in turn;
# prints per binary the median of the rounds' medians and the best of their minimums.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 ROUNDS ARCH BINARY..." >&2
    exit 2
fi
rounds=$1
arch=$2
shift 2
for _ in $(seq "$rounds"); do
    for bin in "$@"; do
        "$bin" bench "$arch" --threads 1 --iters 20 --json |
            python3 -c "import json, sys; d = json.load(sys.stdin); print(sys.argv[1], d['median_ms'], d['min_ms'])" "$bin"
    done
done | python3 -c "
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    name, median, best = line.split()
    runs[name].append((float(median), float(best)))
for name, xs in runs.items():
    print(f'{name}: median of medians {statistics.median(m for m, _ in xs):.2f} ms, '
          f'best {min(b for _, b in xs):.2f} ms, {len(xs)} rounds')
"
