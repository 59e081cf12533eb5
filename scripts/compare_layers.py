#!/usr/bin/env python3
"""Per-layer times of ONNX Runtime beside `shortcut bench --profile`, on the same machine in one run.

Needs: pip install torch torchvision onnx onnxruntime   (a venv outside the repo is best)
Usage: python scripts/compare_layers.py --arch resnet50 [--threads 1] [--iters 20]
                                        [--shortcut target/release/shortcut]

Weights are random (speed does not depend on them). ONNX Runtime runs with all graph
optimisations and its node profiler; each of its fused Conv nodes is matched to our layer name
(`stem.conv`, `blocks.N.conv1|conv2|conv3|shortcut`, `head.fc`, ...) by its torchvision module
path. Medians over the timed runs; the ratio column is ours / ORT's. Whole-pass latency
comparisons belong to ../shared/bench/compare.py; this script says where the time differs.
"""
import argparse, collections, json, os, re, statistics, subprocess, sys, tempfile


def ort_layer_times(arch, threads, iters):
    import numpy as np, onnxruntime as ort, torch, torchvision
    model = getattr(torchvision.models, arch)(weights=None).eval()
    blocks_before, n = {}, 0
    for layer in range(1, 5):
        blocks_before[layer] = n
        n += len(getattr(model, f"layer{layer}"))
    workdir = tempfile.mkdtemp(prefix="shortcut-layers-")
    path = os.path.join(workdir, f"{arch}.onnx")
    torch.onnx.export(model, torch.randn(1, 3, 224, 224), path, input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(workdir, "ort")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    for _ in range(3 + iters):
        sess.run(None, {"input": x})
    events = json.load(open(sess.end_profiling()))
    times = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["name"][: -len("_kernel_time")]].append((e["dur"], e["args"].get("op_name")))
    # Map node names to ours; convs of one block in execution order are conv1, conv2, conv3.
    seen = collections.Counter()
    out = collections.OrderedDict()
    for name, runs in times.items():
        op = runs[0][1]
        ms = statistics.median(d for d, _ in runs[-iters:]) / 1000
        m = re.search(r"/layer(\d)/layer\d\.(\d+)/", name)
        if op == "Conv" and m:
            block = blocks_before[int(m.group(1))] + int(m.group(2))
            if "downsample" in name:
                ours = f"blocks.{block}.shortcut"
            else:
                seen[block] += 1
                ours = f"blocks.{block}.conv{seen[block]}"
        elif op == "Conv":
            ours = "stem.conv"
        elif op == "MaxPool":
            ours = "stem.pool"
        elif op in ("GlobalAveragePool", "AveragePool"):
            ours = "head.pool"
        elif op in ("Gemm", "MatMul"):
            ours = "head.fc"
        else:
            ours = f"({op})"
        out[ours] = out.get(ours, 0.0) + ms
    return out


def shortcut_layer_times(binary, arch, threads, iters):
    text = subprocess.run([binary, "bench", arch, "--threads", str(threads), "--iters", str(iters),
                           "--profile"], check=True, capture_output=True, text=True).stdout
    rows = collections.OrderedDict()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.match(r"^(stem|blocks|head)\.", parts[0]):
            rows[parts[0]] = (parts[1] + " " + parts[2] if parts[1].startswith("conv") else parts[1],
                              float(parts[-3]))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--shortcut", default="target/release/shortcut")
    a = ap.parse_args()
    ort_ms = ort_layer_times(a.arch, a.threads, a.iters)
    ours = shortcut_layer_times(a.shortcut, a.arch, a.threads, a.iters)
    print(f"{a.arch}, batch 1, {a.threads} thread(s): per-layer medians, ms")
    print(f"{'layer':22} {'op (ours)':28} {'ours':>8} {'ORT':>8} {'ratio':>6}")
    total = [0.0, 0.0]
    for name, (op, ms) in ours.items():
        o = ort_ms.get(name)
        total[0] += ms
        total[1] += o or 0.0
        ratio = f"{ms / o:6.2f}" if o else "     -"
        print(f"{name:22} {op:28} {ms:8.3f} {o if o else float('nan'):8.3f} {ratio}")
    for name, o in ort_ms.items():
        if name not in ours:
            total[1] += o
            print(f"{name:22} {'(ORT only)':28} {'-':>8} {o:8.3f}")
    print(f"{'sum':22} {'':28} {total[0]:8.3f} {total[1]:8.3f} {total[0] / total[1]:6.2f}")


if __name__ == "__main__":
    sys.exit(main())
