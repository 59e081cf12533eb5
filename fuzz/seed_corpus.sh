#!/usr/bin/env bash
# Fills corpus/<target>/ with small real files from fixtures/ and tools/tests/data/
# (corpora are not committed). Needs python3 for extracting pickles from zips.
set -euo pipefail
cd "$(dirname "$0")"
root=..
mkdir -p corpus/pickle corpus/pth corpus/npy corpus/model
# Small seeds keep executions fast; big fixtures add little coverage.
for f in "$root"/tools/tests/data/*.pth "$root"/fixtures/bad/evil_*.pth; do
  [ -e "$f" ] && cp "$f" corpus/pth/
done
for f in "$root"/tools/tests/data/*.npy; do
  [ -e "$f" ] && cp "$f" corpus/npy/
done
python3 - "$root" <<'PY'
import glob, os, sys, zipfile
root = sys.argv[1]
files = glob.glob(os.path.join(root, "tools/tests/data/*.pth")) + glob.glob(os.path.join(root, "fixtures/bad/*.pth"))
for path in files:
    name = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith("data.pkl"):
                    open(f"corpus/pickle/{name}.data.pkl", "wb").write(z.read(n))
    except zipfile.BadZipFile:
        # Legacy files are pickles back to back; the whole file is a fine seed.
        open(f"corpus/pickle/{name}", "wb").write(open(path, "rb").read()[:4096])
# A tiny safetensors file (F16 + F32 tensors).
import json, struct
header = json.dumps({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]},
                     "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}).encode()
header += b" " * (-len(header) % 8)
data = struct.pack("<2e", 1.0, -2.0) + struct.pack("<f", 0.5)
open("corpus/pth/tiny.safetensors", "wb").write(struct.pack("<Q", len(header)) + header + data)
PY
# Model files: the smallest fixtures, converted (needs a built `shortcut`); cifar_resnet8_optA's
# channels (16/32/64) fit the blocked NCHW16c layout, the others' run NCHW.
shortcut="$root/target/release/shortcut"
[ -x "$shortcut" ] || (cd "$root" && cargo build --release -q -p shortcut-tools)
for f in cifar_resnet8_optA cifar_resnet8_optB kuangliu_preact_bottleneck tv_resnext_groups4_dataparallel; do
  "$shortcut" convert "$root/fixtures/models/$f.pth" -o "corpus/model/$f.safetensors" >/dev/null
done
ls corpus/*
